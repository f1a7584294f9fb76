"""`deploy`: put a packed ternary model where it runs without Python — a C header the firmware
compiles in, an ESP32 on a serial port (MODEL BEGIN/DATA/END, CRC-checked by the device), or the
muscle memory an OIP server (`openmind serve`) serves.

The bytes are exactly docs/packed-format.md: what `TernaryModel.pack()` returns. A colony
(`openmind.colony`) deploys as a header holding every member's bytes and its vote's settings,
voted by the firmware core's `om_colony_vote`, or to a server; the firmware holds one model, so an
upload of a colony is refused with what to do instead.
"""

from __future__ import annotations

import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openmind.errors import BadInput, PathwayUnavailable
from openmind.memory.blobs import atomic_write
from openmind.pathways.ternary.packed import describe
from openmind.units import parse_duration

if TYPE_CHECKING:
    from openmind.flow.router import Candidate

DEVICE_TARGETS = ("esp32", "device", "serial")
SERVER_TARGETS = ("oip", "server")


@dataclass
class Deployment:
    """Where a model went: a header path or a device port, its size, CRC-32 and shape."""

    target: str
    where: str
    bytes: int
    crc32: str
    inputs: int
    outputs: int
    layers: int
    route: Any = field(default=None, repr=False, compare=False)
    members: int = 1  # more than one: a colony (bytes and crc32 of its members' bytes in order)

    def __repr__(self) -> str:
        what = (f"colony of {self.members} models" if self.members > 1
                else f"{self.layers}-layer model")
        return (f"Deployment({self.target} {self.where}: {what} "
                f"{self.inputs}->{self.outputs}, {self.bytes} bytes, crc32 {self.crc32})")


def _is_colony(model: Any) -> bool:
    from openmind.pathways.ternary.vote import Colony

    return isinstance(model, Colony)


def _made(target: str, where: str, model: Any, blob: bytes) -> Deployment:
    """The Deployment record of `blob` (a colony's: its members' bytes in order) sent to `where`."""
    crc = f"{zlib.crc32(blob) & 0xFFFFFFFF:08x}"
    if _is_colony(model):
        return Deployment(target, where, len(blob), crc, model.n_features_in_, len(model.classes_),
                          max(len(m.layers) for m in model.members), members=len(model.members))
    info = describe(blob)
    return Deployment(target, where, len(blob), crc, info["inputs"], info["outputs"], info["layers"])


def colony_refusal(col: Any) -> str:
    """Why a colony cannot go onto the board, and what to do instead (the route's reason too)."""
    return (f"'{col.name}' is a colony of {len(col.members)} models and the firmware holds one model: "
            f"deploy it to a C header (target='colony.h', voted by om_colony_vote in the firmware "
            f"core), publish it to an inference server (target='oip'), or upload one member "
            f"(colony.members[i])")


def packed_bytes(model: Any) -> bytes:
    """The packed bytes of a model: `model.pack()`, or the bytes themselves; a colony's: its
    members' bytes one after another (what its header holds; for size and CRC-32)."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if _is_colony(model):
        return b"".join(m.pack() for m in model.members)
    pack = getattr(model, "pack", None)
    if callable(pack):
        blob = pack()
        if isinstance(blob, (bytes, bytearray, memoryview)):
            return bytes(blob)
    raise BadInput(f"deploy needs a TernaryModel (anything with .pack() -> bytes) or packed bytes, "
                   f"got {type(model).__name__}")


def _c_array(ident: str, blob: bytes) -> str:
    """`static const unsigned char ident[n] = {...};` with 16 bytes a line."""
    rows = [", ".join(f"0x{b:02x}" for b in blob[i:i + 16]) for i in range(0, len(blob), 16)]
    return f"static const unsigned char {ident}[{len(blob)}] = {{\n    " + ",\n    ".join(rows) + "\n};\n"


def c_header(blob: bytes, name: str = "om_model") -> str:
    """C99 header text embedding the packed bytes (the firmware's OM_MODEL_HEADER)."""
    info = describe(blob)
    crc = zlib.crc32(blob) & 0xFFFFFFFF
    guard = re.sub(r"\W", "_", name).upper() + "_H"
    return (
        f"/* Packed ternary model written by openmind.deploy: {info['layers']} layers, "
        f"{info['inputs']} inputs, {info['outputs']} outputs, {len(blob)} bytes, crc32 {crc:08x}.\n"
        f" * Format: docs/packed-format.md. Build the firmware with -DOM_MODEL_HEADER='\"this file\"'. */\n"
        f"#ifndef {guard}\n#define {guard}\n\n"
        f"#define OM_MODEL_BYTES {len(blob)}u\n#define OM_MODEL_CRC32 0x{crc:08x}u\n"
        f"#define OM_MODEL_INPUTS {info['inputs']}\n#define OM_MODEL_OUTPUTS {info['outputs']}\n\n"
        + _c_array(f"{name}_blob", blob) + f"\n#endif /* {guard} */\n"
    )


def colony_header(col: Any, name: str = "om_colony") -> str:
    """C99 header text of a colony: every member's packed bytes, their sizes, and the vote's
    settings, for `om_colony_vote` (firmware/core/om_core.h; firmware/test/colony_main.c uses it)."""
    blobs = [m.pack() for m in col.members]
    allb = b"".join(blobs)
    crc = zlib.crc32(allb) & 0xFFFFFFFF
    guard = re.sub(r"\W", "_", name).upper() + "_H"
    k, n = len(col.classes_), len(blobs)
    arrays = "\n".join(_c_array(f"{name}_m{i}", b) for i, b in enumerate(blobs))
    return (
        f"/* Colony of {n} packed ternary models written by openmind.deploy: {col.n_features_in_} inputs, "
        f"{k} outputs, {len(allb)} bytes in all, crc32 {crc:08x} (of the members' bytes in order).\n"
        f" * Vote on the device: om_model_parse(OM_COLONY_BLOBS[i], OM_COLONY_SIZES[i], &members[i]) for\n"
        f" * each member, then om_colony_vote(members, OM_COLONY_MEMBERS, OM_COLONY_CONFIDENCE,\n"
        f" * OM_COLONY_QUORUM, x, votes, &abstained): openmind's Colony.vote(X, exact=True) bit for bit. */\n"
        f"#ifndef {guard}\n#define {guard}\n\n#include <stddef.h>\n\n"
        f"#define OM_COLONY_MEMBERS {n}\n#define OM_COLONY_QUORUM {col.quorum}\n"
        f"#define OM_COLONY_CONFIDENCE {col.confidence!r}\n"
        f"#define OM_COLONY_INPUTS {col.n_features_in_}\n#define OM_COLONY_OUTPUTS {k}\n"
        f"#define OM_COLONY_BYTES {len(allb)}u\n#define OM_COLONY_CRC32 0x{crc:08x}u\n\n"
        + arrays
        + f"\nstatic const unsigned char *const {name}_blobs[{n}] = {{"
        + ", ".join(f"{name}_m{i}" for i in range(n)) + "};\n"
        + f"static const size_t {name}_sizes[{n}] = {{" + ", ".join(f"{len(b)}u" for b in blobs) + "};\n"
        + f"#define OM_COLONY_BLOBS {name}_blobs\n#define OM_COLONY_SIZES {name}_sizes\n\n"
        f"#endif /* {guard} */\n"
    )


def deploy(model: Any, target: str = "auto", *, port: str | None = None, timeout: str | float = "5s",
           name: str = "om_model", resources: Any = None, url: str | None = None,
           **policy: Any) -> Deployment:
    """Put `model` (a model object, a colony, packed bytes, or a name: its newest healthy version)
    where it runs. `target="auto"` routes: an ESP32 online whose limits fit -> upload; else an OIP
    server reachable -> publish to the muscle memory it serves; else a C header kept in muscle
    memory. Or name the target: a path ending in .h, "esp32" (the probed port or `port=`),
    "serial:<port>", "oip" (the server at `url=`, else OPENMIND_INFER_URL). A colony goes to a
    header or a server; the board holds one model, so "esp32" refuses it saying what to do."""
    if isinstance(model, str):
        model = _named(model)
    if isinstance(target, str) and target.strip().lower() == "auto":
        return _routed(model, port, parse_duration(timeout, "timeout") or 5.0, resources, policy)
    if policy:
        raise BadInput(f"policy options {sorted(policy)} apply to target='auto' only")
    colony = _is_colony(model)
    blob = packed_bytes(model)
    if not colony:
        describe(blob)  # malformed bytes: BadInput before anything is written or sent
    if not isinstance(target, str) or not target.strip():
        raise BadInput(f"target must be a path ending in .h, 'esp32' or 'oip', got {target!r}")
    if target.endswith(".h"):
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise BadInput(f"name must be a C identifier, got {name!r}")
        path = Path(target).expanduser()
        if not path.parent.is_dir():
            raise BadInput(f"folder {str(path.parent)!r} does not exist; create it or choose another path")
        text = colony_header(model, "om_colony" if name == "om_model" else name) if colony else c_header(blob, name)
        atomic_write(path, text.encode())
        result = _made("header", str(path), model, blob)
        _journal(result, model, "wrote the C header")
        return result
    if target.lower() in SERVER_TARGETS:
        result = _publish(model, blob, _model_name(model), url, parse_duration(timeout, "timeout") or 5.0)
        _journal(result, model, "published to the muscle memory the server serves")
        return result
    if target.startswith("serial:"):
        port = target[len("serial:"):]
    elif target.lower() not in DEVICE_TARGETS:
        raise BadInput(f"unknown deploy target {target!r}; use a path ending in .h, 'esp32', "
                       f"'serial:<port>' or 'oip'")
    if colony:
        raise BadInput(colony_refusal(model))
    result = _upload(blob, port or _find_port(), parse_duration(timeout, "timeout") or 5.0)
    _journal(result, model, "uploaded over serial, CRC-32 checked by the device")
    return result


def _model_name(model: Any) -> str:
    return str(getattr(model, "name", None) or "om_model")


def _upload(blob: bytes, port: str, wait: float) -> Deployment:
    from openmind.pathways.device import DeviceError, Link

    info = describe(blob)
    with Link(port) as link:
        link.hello(wait)
        check_fits(blob, link.limits, f"the device on {port}")
        answer = link.upload_model(blob, wait)
    if (answer.get("inputs"), answer.get("outputs")) != (info["inputs"], info["outputs"]):
        raise DeviceError(f"device loaded a {answer.get('inputs')}->{answer.get('outputs')} model, "
                          f"expected {info['inputs']}->{info['outputs']}")
    return Deployment("device", port, len(blob), f"{zlib.crc32(blob) & 0xFFFFFFFF:08x}",
                      info["inputs"], info["outputs"], info["layers"])


def _misfit_parts(blob: bytes, limits: dict[str, int] | None) -> tuple[str, str] | None:
    from openmind.pathways.device import DEFAULT_LIMITS
    from openmind.pathways.ternary.estimate import fit_hidden, fits
    from openmind.pathways.ternary.packed import size_for, unpack

    limits = {**DEFAULT_LIMITS, **(limits or {})}
    layers, mean, _ = unpack(blob)
    widths = [int(mean.shape[0]), *[a.shape[0] for a in layers]]
    per_row = any(a.scale_mode for a in layers)
    if len(blob) <= limits["model_max"] and fits(widths, per_row, limits) is None:
        return None
    why = fits(widths, per_row, limits) or f"{len(blob)} bytes, over {limits['model_max']}"
    best = fit_hidden(widths[0], widths[-1], widths[1:-1], per_row, limits)
    hint = (f"train it with train_or_load(..., fit_device=True): hidden {best} fits "
            f"({size_for([widths[0], *best, widths[-1]], per_row)} bytes)" if best is not None
            else "no hidden widths fit: reduce the features (e.g. PCA) first")
    return f"the model (hidden {widths[1:-1]}) {why}", hint


def misfit(blob: bytes, limits: dict[str, int] | None = None) -> str | None:
    """Why packed bytes do not fit a device's limits (its protocol-2 HELLO, else the firmware
    defaults) and which hidden widths would, or None when they fit (what the deploy route asks)."""
    parts = _misfit_parts(blob, limits)
    return None if parts is None else f"{parts[0]}; {parts[1]}"


def check_fits(blob: bytes, limits: dict[str, int], where: str) -> None:
    """BadInput when packed bytes exceed a device's limits, saying which hidden widths would fit."""
    parts = _misfit_parts(blob, limits)
    if parts is not None:
        raise BadInput(f"{parts[0]} ({where}); {parts[1]}; or deploy to a .h file and build the "
                       f"firmware with a larger OM_MODEL_MAX")


def _named(name: str) -> Any:
    from openmind.intents.infer import load_local_model, model_known

    local = load_local_model(name) if name.strip() and model_known(name) else None
    if local is None:
        raise BadInput(f"no model named {name!r} in muscle memory; train_or_load stores one, or pass "
                       f"the model object")
    return local.model


def _routed(model: Any, port: str | None, wait: float, resources: Any, policy: dict[str, Any]) -> Deployment:
    """target="auto": probe, route (ESP32 -> OIP server -> C header), execute, journal."""
    from openmind.flow.executor import execute
    from openmind.flow.policy import split_policy
    from openmind.flow.router import Intent, route
    from openmind.vocab import Decision, Pathway

    pol, rest = split_policy(policy)
    if rest:
        raise BadInput(f"unknown option {', '.join(map(repr, sorted(rest)))} for deploy")
    blob = packed_bytes(model)
    mname = _model_name(model)
    if resources is None:
        from openmind.flow.resources import probe

        resources = probe()
    limits = resources.serial.details.get("limits") if resources.serial.available else None
    unfit = colony_refusal(model) if _is_colony(model) else misfit(blob, limits)
    intent = Intent.of("deploy", name=mname, misfit=unfit)
    plan = route(intent, resources=resources, policy=pol)

    job = _Deploying(model, blob, mname, port, wait, pol.timeout)
    handlers = {(Pathway.HARDWARE_IN_LOOP, Decision.HARDCODE): job.device,
                (Pathway.CLOUD_INFERENCE, Decision.HARDCODE): job.publish,
                (Pathway.MUSCLE_MEMORY, Decision.HYBRID): job.header}
    result, _ = execute(plan, handlers, resources=resources,
                        summarize=lambda d: {"target": d.target, "where": d.where, "bytes": d.bytes,
                                             "crc32": d.crc32, "inputs": d.inputs, "outputs": d.outputs})
    return result


@dataclass
class _Deploying:
    """The handlers of one routed deploy: to the ESP32, to the OIP server's memory, or a C header
    kept in muscle memory; each takes the route's candidate and returns the Deployment."""

    model: Any
    blob: bytes
    mname: str
    port: str | None
    wait: float
    timeout: float | None

    def device(self, cand: Candidate) -> Deployment:
        return _upload(self.blob, self.port or cand.params.get("port") or _find_port(), self.wait)

    def publish(self, cand: Candidate) -> Deployment:
        return _publish(self.model, self.blob, self.mname, cand.params.get("endpoint"),
                        self.timeout or self.wait)

    def header(self, cand: Candidate) -> Deployment:
        return _kept_header(self.model, self.blob, self.mname)


def _publish(model: Any, blob: bytes, mname: str, url: str | None, wait: float) -> Deployment:
    """Publishing = the model stored in the muscle memory `openmind serve` reads; then checked: the
    server must report this very version (its memory key) for the name within a few seconds."""
    import numpy as np

    from openmind.memory.blobs import fingerprint, get, key_for, put
    from openmind.pathways.cloud.oip import OIPClient

    if _is_colony(model):
        key = model.keep(mname).key
    else:
        to_arrays = getattr(model, "to_arrays", None)
        if not callable(to_arrays):
            raise PathwayUnavailable("packed bytes alone carry no class list: publish a TernaryModel")
        key = (getattr(model, "info", None) or {}).get("key")
        hit = get("model", key) if key else None
        if hit is None or hit[0]["packed"].tobytes() != blob:
            arrays, meta = to_arrays()
            key = key_for("deploy", mname, fingerprint(np.frombuffer(blob, np.uint8)))
            if put("model", mname, key, arrays, meta) is None:
                raise PathwayUnavailable("muscle memory could not keep the model to publish")
    client = OIPClient(url, timeout=min(wait, 5.0), retries=0)
    served = None
    deadline = time.monotonic() + max(wait, 3.0)
    while time.monotonic() < deadline:
        try:
            served = (client.model_metadata(mname).get("parameters") or {}).get("key")
        except Exception:  # noqa: BLE001 - not there yet, or not ours: ask again until the deadline
            served = None
        if served == key:
            break
        time.sleep(0.25)
    where = f"{client.url}/v2/models/{mname}"
    if served != key:
        raise PathwayUnavailable(f"stored '{mname}' in muscle memory, but the server at {client.url} "
                                 f"serves {'version ' + str(served) if served else 'no such model'}: "
                                 f"it does not read this memory (or a newer version of the name wins)")
    return _made("server", where, model, blob)


def _kept_header(model: Any, blob: bytes, mname: str) -> Deployment:
    """The C header written under OPENMIND_HOME/headers and indexed in muscle memory."""
    import numpy as np

    from openmind.config import home
    from openmind.memory.blobs import key_for, put

    crc = f"{zlib.crc32(blob) & 0xFFFFFFFF:08x}"
    ident = re.sub(r"\W", "_", mname) or "om_model"
    if not re.match(r"[A-Za-z_]", ident):
        ident = "m_" + ident
    text = (colony_header(model, ident) if _is_colony(model) else c_header(blob, ident)).encode()
    path = home() / "headers" / f"{ident}-{crc}.h"
    atomic_write(path, text)
    put("header", mname, key_for("header", mname, crc), {"header": np.frombuffer(text, np.uint8)},
        {"path": str(path), "crc32": crc, "bytes": len(blob)})
    return _made("header", str(path), model, blob)


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
    """`openmind deploy MODEL TARGET [--port P]`: a model from memory or a file of packed bytes to
    a header, the device or a server."""
    p = sub.add_parser("deploy", help="write a model as a C header, upload it to the ESP32 or "
                                      "publish it to an OIP server")
    p.add_argument("model", help="a model name in muscle memory (its newest version; `openmind memory "
                                 "ls` lists them), or a file of packed model bytes (TernaryModel.pack())")
    p.add_argument("target", help="path ending in .h, 'esp32', serial:<port>, 'oip', or 'auto' (routed)")
    p.add_argument("--port", default=None)
    p.set_defaults(func=_cmd_deploy)


def _cmd_deploy(args: Any) -> int:
    from openmind.intents.infer import model_known

    path = Path(args.model).expanduser()
    if path.is_file():
        try:
            model: Any = path.read_bytes()
        except OSError as exc:
            raise BadInput(f"cannot read the model file {args.model!r}: {exc.strerror}") from None
    elif args.model.strip() and model_known(args.model):
        model = args.model  # deploy() takes the name's newest healthy version
    else:
        raise BadInput(f"{args.model!r} is neither a file of packed model bytes nor a model name in "
                       f"muscle memory; `openmind memory ls --kind model` lists the names")
    print(deploy(model, args.target, port=args.port))
    return 0
