"""`deploy`: put a packed ternary model where it runs without Python — a C header the firmware
compiles in, or an ESP32 on a serial port (MODEL BEGIN/DATA/END, CRC-checked by the device).

The bytes are exactly docs/packed-format.md: what `TernaryModel.pack()` returns.
"""

from __future__ import annotations

import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openmind.errors import BadInput, PathwayUnavailable
from openmind.memory.blobs import atomic_write
from openmind.pathways.ternary.packed import describe
from openmind.units import parse_duration

DEVICE_TARGETS = ("esp32", "device", "serial")


@dataclass(frozen=True)
class Deployment:
    """Where a model went: a header path or a device port, its size, CRC-32 and shape."""

    target: str
    where: str
    bytes: int
    crc32: str
    inputs: int
    outputs: int
    layers: int

    def __repr__(self) -> str:
        return (f"Deployment({self.target} {self.where}: {self.layers}-layer model "
                f"{self.inputs}->{self.outputs}, {self.bytes} bytes, crc32 {self.crc32})")


def packed_bytes(model: Any) -> bytes:
    """The packed bytes of a model: `model.pack()`, or the bytes themselves."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    pack = getattr(model, "pack", None)
    if callable(pack):
        blob = pack()
        if isinstance(blob, (bytes, bytearray, memoryview)):
            return bytes(blob)
    raise BadInput(f"deploy needs a TernaryModel (anything with .pack() -> bytes) or packed bytes, "
                   f"got {type(model).__name__}")


def c_header(blob: bytes, name: str = "om_model") -> str:
    """C99 header text embedding the packed bytes (the firmware's OM_MODEL_HEADER)."""
    info = describe(blob)
    crc = zlib.crc32(blob) & 0xFFFFFFFF
    rows = [", ".join(f"0x{b:02x}" for b in blob[i:i + 16]) for i in range(0, len(blob), 16)]
    guard = re.sub(r"\W", "_", name).upper() + "_H"
    return (
        f"/* Packed ternary model written by openmind.deploy: {info['layers']} layers, "
        f"{info['inputs']} inputs, {info['outputs']} outputs, {len(blob)} bytes, crc32 {crc:08x}.\n"
        f" * Format: docs/packed-format.md. Build the firmware with -DOM_MODEL_HEADER='\"this file\"'. */\n"
        f"#ifndef {guard}\n#define {guard}\n\n"
        f"#define OM_MODEL_BYTES {len(blob)}u\n#define OM_MODEL_CRC32 0x{crc:08x}u\n"
        f"#define OM_MODEL_INPUTS {info['inputs']}\n#define OM_MODEL_OUTPUTS {info['outputs']}\n\n"
        f"static const unsigned char {name}_blob[{len(blob)}] = {{\n    "
        + ",\n    ".join(rows) + f"\n}};\n\n#endif /* {guard} */\n"
    )


def deploy(model: Any, target: str, *, port: str | None = None, timeout: str | float = "5s",
           name: str = "om_model") -> Deployment:
    """Write `model` as a C header (`target` ends in .h) or upload it to the ESP32
    (`target="esp32"`, the probed port or `port=`; or `target="serial:/dev/ttyUSB0"`)."""
    blob = packed_bytes(model)
    info = describe(blob)
    crc = f"{zlib.crc32(blob) & 0xFFFFFFFF:08x}"
    if not isinstance(target, str) or not target.strip():
        raise BadInput(f"target must be a path ending in .h or 'esp32', got {target!r}")
    if target.endswith(".h"):
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise BadInput(f"name must be a C identifier, got {name!r}")
        path = Path(target).expanduser()
        if not path.parent.is_dir():
            raise BadInput(f"folder {str(path.parent)!r} does not exist; create it or choose another path")
        atomic_write(path, c_header(blob, name).encode())
        result = Deployment("header", str(path), len(blob), crc, info["inputs"], info["outputs"], info["layers"])
        _journal(result, model, "wrote the C header")
        return result
    if target.startswith("serial:"):
        port = target[len("serial:"):]
    elif target.lower() not in DEVICE_TARGETS:
        raise BadInput(f"unknown deploy target {target!r}; use a path ending in .h, 'esp32', or 'serial:<port>'")
    port = port or _find_port()
    wait = parse_duration(timeout, "timeout") or 5.0
    from openmind.pathways.device import DeviceError, Link

    with Link(port) as link:
        link.hello(wait)
        check_fits(blob, link.limits, f"the device on {port}")
        answer = link.upload_model(blob, wait)
    if (answer.get("inputs"), answer.get("outputs")) != (info["inputs"], info["outputs"]):
        raise DeviceError(f"device loaded a {answer.get('inputs')}->{answer.get('outputs')} model, "
                          f"expected {info['inputs']}->{info['outputs']}")
    result = Deployment("device", port, len(blob), crc, info["inputs"], info["outputs"], info["layers"])
    _journal(result, model, "uploaded over serial, CRC-32 checked by the device")
    return result


def check_fits(blob: bytes, limits: dict[str, int], where: str) -> None:
    """BadInput when packed bytes exceed a device's limits (its protocol-2 HELLO, else the
    firmware defaults), saying which hidden widths would fit."""
    from openmind.pathways.ternary.fit import fit_hidden, fits
    from openmind.pathways.ternary.packed import size_for, unpack

    layers, mean, _ = unpack(blob)
    widths = [int(mean.shape[0]), *[a.shape[0] for a in layers]]
    per_row = any(a.scale_mode for a in layers)
    if len(blob) <= limits["model_max"] and fits(widths, per_row, limits) is None:
        return
    why = fits(widths, per_row, limits) or f"{len(blob)} bytes, over {limits['model_max']}"
    best = fit_hidden(widths[0], widths[-1], widths[1:-1], per_row, limits)
    hint = (f"train it with train_or_load(..., fit_device=True): hidden {best} fits "
            f"({size_for([widths[0], *best, widths[-1]], per_row)} bytes)" if best is not None
            else "no hidden widths fit: reduce the features (e.g. PCA) first")
    raise BadInput(f"the model (hidden {widths[1:-1]}) {why} ({where}); {hint}; or deploy to a .h "
                   f"file and build the firmware with a larger OM_MODEL_MAX")


def _find_port() -> str:
    from openmind.config import serial_port
    from openmind.flow.resources import probe

    explicit = serial_port()
    if explicit:
        return explicit
    res = probe().serial
    if res.available and res.details.get("port"):
        return str(res.details["port"])
    raise PathwayUnavailable(f"no ESP32 to deploy to ({res.reason}); plug one in, set "
                             f"OPENMIND_SERIAL_PORT, or pass port=")


def _journal(d: Deployment, model: Any, how: str) -> None:
    import warnings

    try:
        from openmind.flow.journal import write

        write({"intent": "deploy", "name": getattr(model, "name", None), "ok": True,
               "pathway": "hardware_in_loop" if d.target == "device" else None,
               "decision": "HARDCODE", "reason": f"{how}: {d!r}", "duration_ms": 0.0,
               "summary": {"target": d.target, "where": d.where, "bytes": d.bytes, "crc32": d.crc32,
                           "inputs": d.inputs, "outputs": d.outputs, "ts": time.time()}})
    except Exception as exc:  # an unwritable journal must not undo a deployment
        warnings.warn(f"openmind: could not journal the deployment ({exc})", RuntimeWarning, stacklevel=3)


def register(sub: Any) -> None:
    """`openmind deploy MODEL.bin TARGET [--port P]`: packed bytes to a header or the device."""
    p = sub.add_parser("deploy", help="write a packed model as a C header or upload it to the ESP32")
    p.add_argument("model", help="a file of packed model bytes (TernaryModel.pack())")
    p.add_argument("target", help="path ending in .h, 'esp32', or serial:<port>")
    p.add_argument("--port", default=None)
    p.set_defaults(func=_cmd_deploy)


def _cmd_deploy(args: Any) -> int:
    try:
        blob = Path(args.model).read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read the model file {args.model!r}: {exc.strerror}") from None
    print(deploy(blob, args.target, port=args.port))
    return 0
