"""Cloud pathways: the Open Inference Protocol (client + `openmind serve`) and the language model.

Submodules: `http` (one call with timeouts, retries and per-endpoint cooldown), `tensors` (OIP v2
typed tensors), `oip` (client), `serve` (server + CLI), `llm` (chat client, planner, zero-shot).
"""
