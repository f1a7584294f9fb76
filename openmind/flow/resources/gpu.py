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
                    return gpu_from_driver(devices, source="nvml")
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


# How to get a torch that can use the GPU, for the reason a CPU build gives.
CUDA_TORCH_HINT = ("install a CUDA build of torch, e.g. `pip install torch --index-url "
                   "https://download.pytorch.org/whl/cu124`")


def torch_cuda_build() -> tuple[str | None, str]:
    """(CUDA version torch was built with or None, torch version), without importing torch when
    it is not imported yet (its version.py says; importing torch costs seconds)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        built = torch.backends.cuda.is_built() if hasattr(torch, "backends") else False
        return (torch.version.cuda if built else None), str(torch.__version__)
    import importlib.util
    import re
    from pathlib import Path

    try:
        spec = importlib.util.find_spec("torch")
        text = (Path(spec.origin).parent / "version.py").read_text() if spec and spec.origin else ""
    except (ImportError, OSError, ValueError):
        text = ""
    if not text:
        return None, "not installed"
    version = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text)
    cuda = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
    return (cuda.group(1) if cuda else None), (version.group(1) if version else "unknown")


def gpu_from_driver(devices: list[dict[str, Any]], source: str = "nvml",
                    build: tuple[str | None, str] | None = None) -> Resource:
    """The GPUs the driver reports, usable only when torch was built with CUDA; otherwise absent,
    with a reason saying which part is missing and how to fix it. `build` injects
    `torch_cuda_build()`'s answer (tests); by default this torch is asked."""
    cuda, version = build if build is not None else torch_cuda_build()
    if cuda:
        return gpu_present(devices, source=source)
    names = ", ".join(str(d.get("name", "GPU")) for d in devices)
    what = "torch is not installed" if version == "not installed" else \
        f"torch {version} was built without CUDA"
    return Resource.absent("gpu", f"the driver sees {names} but {what}: {CUDA_TORCH_HINT}",
                           devices=devices, source=source, torch=version)


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


