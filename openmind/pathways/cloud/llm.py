"""The language model behind MODEL decisions, over an OpenAI-compatible `/v1/chat/completions`.

openmind describes the situation (intent, data shape, dtypes, label set, resources: never the data
or a secret), asks for a JSON answer, and validates it against a schema before use. Anything that
goes wrong (no key, 401, 429, 5xx, timeout, invalid JSON, a plan outside the schema) is an
`LLMError` whose message is the reason.

This module is the transport and the validation only: it never probes, routes or executes. The
intents ask it through `openmind.intents.ask`, which checks the probe first (a masked or refused
API is never called) and routes a plan like any other decision.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

from openmind.config import api_base, api_key, api_url, public_url, redact
from openmind.errors import PathwayUnavailable
from openmind.pathways.cloud.http import EndpointError, request

log = logging.getLogger("openmind.llm")

DEFAULT_BASE = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"
TIMEOUT_S = 20.0
ZERO_SHOT_BATCH = 25  # texts per request
MAX_TEXT = 2000  # characters of one text sent for zero-shot

PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["pathway", "architecture", "epochs"],
    "additionalProperties": False,
    "properties": {
        "pathway": {"enum": ["full_train", "fine_tune"]},
        "architecture": {
            "type": "object",
            "required": ["hidden"],
            "additionalProperties": False,
            "properties": {
                "hidden": {"type": "array", "maxItems": 4,
                           "items": {"type": "integer", "minimum": 1, "maximum": 4096}},
                "activation": {"enum": ["relu"]},
            },
        },
        "epochs": {"type": "integer", "minimum": 1, "maximum": 1000},
        "learning_rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 65536},
        "reason": {"type": "string", "maxLength": 500},
    },
}

SIGNAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["unit", "typical", "variation"],
    "additionalProperties": False,
    "properties": {
        "unit": {"type": "string", "maxLength": 40},
        "typical": {"type": "number"},
        "variation": {"type": "number", "minimum": 0},
        "minimum": {"type": "number"},
        "maximum": {"type": "number"},
        "period_s": {"type": "number", "exclusiveMinimum": 0},
        "cycle_amplitude": {"type": "number", "minimum": 0},
        "reason": {"type": "string", "maxLength": 500},
    },
}
# description field -> openmind.pattern.Pattern field (sense builds a pattern from these)
PATTERN_FIELDS = {"typical": "level", "variation": "sigma", "minimum": "lo", "maximum": "hi",
                  "period_s": "period", "cycle_amplitude": "amplitude"}

# what a situation may say; anything else is dropped before it leaves the machine
SITUATION_KEYS = ("intent", "name", "rows", "shape", "dtypes", "data_kind", "labels", "n_classes",
                  "resources", "budget_s", "ancestor")


class LLMError(PathwayUnavailable):
    """The language model gave no usable answer; the message says why (never the key)."""


def _config(base: str | None = None) -> tuple[str, str | None, str]:
    base = base or api_base() or DEFAULT_BASE
    key = api_key()
    model = os.environ.get("OPENMIND_LLM_MODEL", "").strip() or DEFAULT_MODEL
    return base, key, model


def timeout_s() -> float:
    """Seconds one chat call may take (OPENMIND_LLM_TIMEOUT, default 20)."""
    try:
        return max(0.05, float(os.environ.get("OPENMIND_LLM_TIMEOUT", TIMEOUT_S)))
    except ValueError:
        return TIMEOUT_S


def chat(messages: list[dict[str, str]], *, base: str | None = None, timeout: float | None = None,
         retries: int = 2, json_mode: bool = True) -> str:
    """The assistant's text for `messages`; raises LLMError with the reason on any failure."""
    base, key, model = _config(base)
    timeout = timeout if timeout is not None else timeout_s()
    if key is None and api_base() is None:
        raise LLMError("no language model configured (set OPENMIND_API_BASE and OPENMIND_API_KEY)")
    body: dict[str, Any] = {"model": model, "messages": messages, "temperature": 0}
    if json_mode:
        body["response_format"] = {"type": "json_object"}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    secrets = (key,) if key else ()
    try:
        resp = request("POST", api_url(base, "chat/completions"), headers=headers, json=body,
                       timeout=timeout, retries=retries, secrets=secrets)
    except EndpointError as exc:
        if exc.status in (401, 403):
            raise LLMError(f"{public_url(base)} refused the API key (HTTP {exc.status}); "
                           "check OPENMIND_API_KEY") from None
        raise LLMError(str(exc)) from None
    try:
        content = resp.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise LLMError(f"{public_url(base)} answered without choices[0].message.content") from None
    if not isinstance(content, str):
        raise LLMError(f"{public_url(base)} answered a non-text message")
    return content


def parse_json(text: str) -> Any:
    """The JSON object in a reply (tolerates ```json fences); LLMError if there is none."""
    cleaned = re.sub(r"^\s*```(?:json)?\s*|\s*```\s*$", "", text.strip())
    try:
        return json.loads(cleaned)
    except ValueError:
        pass
    start, end = cleaned.find("{"), cleaned.rfind("}")
    if 0 <= start < end:
        try:
            return json.loads(cleaned[start:end + 1])
        except ValueError:
            pass
    raise LLMError(f"the language model's answer is not valid JSON: {redact(text[:80])!r}…")


def validate(obj: Any, schema: dict[str, Any], what: str) -> dict[str, Any]:
    """`obj` if it satisfies `schema`, else LLMError naming the first violation."""
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.path) or "(top level)"
        raise LLMError(f"the language model's {what} violates the schema at {where}: {redact(e.message[:200])}")
    return obj


def _ask(system: str, user: Any, schema: dict[str, Any], what: str) -> dict[str, Any]:
    content = chat([{"role": "system", "content": system},
                    {"role": "user", "content": json.dumps(user, sort_keys=True)}])
    return validate(parse_json(content), schema, what)


# --------------------------------------------------------------------------- training plans


def describe(situation: dict[str, Any]) -> dict[str, Any]:
    """Only the allowed facts about a situation, small and secret-free (what leaves the machine)."""
    out: dict[str, Any] = {}
    for k in SITUATION_KEYS:
        if k not in situation or situation[k] is None:
            continue
        v = situation[k]
        if k == "labels":
            v = [str(x)[:40] for x in list(v)[:100]]
        elif k == "shape":
            v = [int(d) for d in v]
        elif k == "dtypes":
            v = [str(d)[:20] for d in (v if isinstance(v, (list, tuple)) else [v])][:50]
        elif k == "resources" and isinstance(v, dict):
            v = {str(a)[:40]: (b if isinstance(b, (bool, int, float)) else str(b)[:80]) for a, b in list(v.items())[:20]}
        elif isinstance(v, str):
            v = v[:200]
        elif not isinstance(v, (bool, int, float)):
            v = str(v)[:200]
        out[k] = v
    return redact(out)


PLAN_SYSTEM = (
    "You plan how to train a small ternary-weight MLP classifier. Answer with one JSON object only: "
    '{"pathway": "full_train" | "fine_tune", "architecture": {"hidden": [layer widths, at most 4], '
    '"activation": "relu"}, "epochs": integer, "learning_rate": number (optional), "batch_size": '
    'integer (optional), "reason": short text (optional)}. Fit the plan to the data size and resources.'
)


def request_plan(situation: dict[str, Any]) -> dict[str, Any]:
    """A validated plan from the language model; raises LLMError with the reason otherwise."""
    plan = _ask(PLAN_SYSTEM, describe(situation), PLAN_SCHEMA, "plan")
    log.info("language-model plan accepted: %s", redact(json.dumps(plan, sort_keys=True)))
    return plan


def heuristic_plan(situation: dict[str, Any]) -> dict[str, Any]:
    """The plan openmind uses without a language model: width from the input size, epochs from rows."""
    shape = situation.get("shape") or [situation.get("rows") or 1000, 64]
    n_in = int(shape[-1]) if len(shape) > 1 else 1
    rows = int(situation.get("rows") or shape[0] or 1000)
    hidden = min(256, max(16, 1 << (max(n_in, 2) - 1).bit_length()))  # next power of two
    epochs = int(min(200, max(10, 60_000 // max(rows, 1))))
    return {"pathway": "full_train", "architecture": {"hidden": [hidden], "activation": "relu"},
            "epochs": epochs, "reason": "heuristic: width from the input size, epochs from the rows"}


# --------------------------------------------------------------------------- signals


SIGNAL_SYSTEM = (
    "You describe a physical or software signal so it can be simulated. Answer with one JSON object "
    'only: {"unit": text, "typical": number, "variation": number >= 0 (standard deviation), '
    '"minimum": number (optional), "maximum": number (optional), "period_s": seconds of a daily or '
    'other cycle (optional), "cycle_amplitude": amplitude of that cycle (optional), "reason": short '
    'text (optional)}.'
)


def request_signal(name: str) -> dict[str, Any]:
    """A validated description of an unknown signal; raises LLMError with the reason otherwise.

    The answer also carries the Pattern names (level, sigma, lo, hi, period, amplitude)."""
    desc = _ask(SIGNAL_SYSTEM, {"signal": str(name)[:100]}, SIGNAL_SCHEMA, "signal description")
    lo, hi = desc.get("minimum"), desc.get("maximum")
    if lo is not None and hi is not None and lo > hi:
        raise LLMError(f"the language model's signal description has minimum {lo} > maximum {hi}")
    return {**desc, **{PATTERN_FIELDS[k]: v for k, v in desc.items() if k in PATTERN_FIELDS}}


# --------------------------------------------------------------------------- zero-shot


ZERO_SHOT_SYSTEM = (
    "You classify each text into exactly one of three classes, given as trits: {meaning}. "
    'Answer with one JSON object only: {{"labels": [one integer per text, in order]}}.'
)


def zero_shot(texts: list[str], labels_meaning: dict[int, str] | str | None = None) -> list[int]:
    """One trit in {-1, 0, +1} per text, by the language model; raises LLMError with the reason."""
    if isinstance(texts, str):
        from openmind.errors import BadInput

        raise BadInput("texts is a single string; pass a list of texts")
    meaning = labels_meaning or {-1: "negative", 0: "neutral", 1: "positive"}
    if isinstance(meaning, dict):
        meaning = ", ".join(f"{int(k):+d} = {v}" for k, v in sorted(meaning.items()))
    system = ZERO_SHOT_SYSTEM.format(meaning=meaning)
    out: list[int] = []
    for i in range(0, len(texts), ZERO_SHOT_BATCH):
        batch = [str(t)[:MAX_TEXT] for t in texts[i:i + ZERO_SHOT_BATCH]]
        answer = parse_json(chat([{"role": "system", "content": system},
                                  {"role": "user", "content": json.dumps({"texts": batch})}]))
        schema = {"type": "object", "required": ["labels"],
                  "properties": {"labels": {"type": "array", "minItems": len(batch), "maxItems": len(batch),
                                            "items": {"enum": [-1, 0, 1]}}}}
        out.extend(int(x) for x in validate(answer, schema, "zero-shot labels")["labels"])
    return out


__all__ = ["LLMError", "PLAN_SCHEMA", "SIGNAL_SCHEMA", "chat", "describe", "heuristic_plan",
           "parse_json", "request_plan", "request_signal", "validate", "zero_shot"]
