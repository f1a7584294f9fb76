"""The GPU: NVML first (no CUDA context, safe before fork); torch only if already imported."""

from __future__ import annotations

import os
import sys
from typing import Any

from openmind.flow.resources.base import Resource


def probe_gpu() -> Resource:
    """NVML first (no CUDA context, safe before fork); torch only if it is already imported."""
    nvml_reason = None
    try:
        import pynvml
    except ImportError:
        pynvml = None
        nvml_reason = "nvidia-ml-py not installed"
    if pynvml is not None:
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # every NVML error means "no usable GPU"
            nvml_reason = f"no NVIDIA driver ({_nvml_error_text(exc)})"
        else:
            try:
                count = pynvml.nvmlDeviceGetCount()
                devices = []
                for i in range(count):
                    h = pynvml.nvmlDeviceGetHandleByIndex(i)
                    name = pynvml.nvmlDeviceGetName(h)
                    mem = pynvml.nvmlDeviceGetMemoryInfo(h)
                    devices.append(
                        {
                            "index": i,
                            "name": name.decode() if isinstance(name, bytes) else str(name),
                            "memory_total": int(mem.total),
                            "memory_free": int(mem.free),
                        }
                    )
                if devices:
                    return gpu_present(devices, source="nvml")
                nvml_reason = "NVIDIA driver loaded but it reports no GPU"
            except Exception as exc:
                nvml_reason = f"NVML error ({_nvml_error_text(exc)})"
            finally:
                try:
                    pynvml.nvmlShutdown()
                except Exception:
                    pass
    torch = sys.modules.get("torch")
    if torch is not None:
        os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # no CUDA init: forks stay safe
        try:
            if torch.cuda.is_available():
                n = torch.cuda.device_count()
                return gpu_present([{"index": i, "name": "CUDA device"} for i in range(n)], "torch")
        except Exception as exc:
            nvml_reason = f"{nvml_reason}; torch: {exc}"
    return Resource.absent("gpu", f"no CUDA GPU: {nvml_reason}")


def gpu_present(devices: list[dict[str, Any]], source: str = "injected") -> Resource:
    """A present GPU resource; also how tests inject one on machines without a GPU."""
    first = devices[0]
    free = first.get("memory_free")
    text = first.get("name", "CUDA device")
    if free is not None:
        text += f", {free / 2**30:.1f} of {first.get('memory_total', 0) / 2**30:.1f} GiB free"
    if len(devices) > 1:
        text += f" (+{len(devices) - 1} more)"
    return Resource.present("gpu", text, devices=devices, source=source)


def _nvml_error_text(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


