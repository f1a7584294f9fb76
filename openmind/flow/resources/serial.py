"""The ESP32: serial ports worth a handshake, and the HELLO that tells an openmind device."""

from __future__ import annotations

from typing import Any

from openmind import config
from openmind.flow.resources.base import Resource, probe_timeout

# USB bridges found on ESP32 boards (VID, PID) -> name.
ESP32_BRIDGES = {
    (0x10C4, 0xEA60): "CP210x",
    (0x1A86, 0x7523): "CH340",
    (0x1A86, 0x55D4): "CH9102",
    (0x0403, 0x6001): "FTDI",
    (0x303A, 0x1001): "ESP32 USB-Serial/JTAG",
}


def candidate_ports() -> tuple[list[dict[str, Any]], str]:
    """Ports worth a handshake: OPENMIND_SERIAL_PORT, else USB bridges known on ESP32 boards."""
    explicit = config.serial_port()
    if explicit:
        return [{"port": explicit, "bridge": "OPENMIND_SERIAL_PORT"}], ""
    try:
        from serial.tools import list_ports
    except ImportError:
        return [], "pyserial not installed"
    found, others = [], 0
    for p in list_ports.comports():
        bridge = ESP32_BRIDGES.get((p.vid, p.pid)) if p.vid is not None else None
        if bridge:
            found.append({"port": p.device, "bridge": bridge, "vid_pid": f"{p.vid:04X}:{p.pid:04X}"})
        else:
            others += 1
    why = "" if found else (
        f"no ESP32 USB bridge among {others} serial ports" if others else "no serial ports"
    )
    return found, why


def probe_serial() -> Resource:
    """HELLO on each candidate port. A port another reader holds (a kernel streaming from it) is
    not opened: the result is the last probe any process stored for it, marked busy."""
    ports, why = candidate_ports()
    if not ports:
        return Resource.absent("serial", f"no ESP32: {why}")
    from openmind.memory.probes import remember
    from openmind.pathways.device import DeviceError, PortBusy, hello_on

    failures = []
    for entry in ports:
        try:
            info = hello_on(entry["port"], timeout=probe_timeout())
        except PortBusy:
            return _busy(entry)
        except DeviceError as exc:
            failures.append(f"{entry['port']}: {exc}")
            continue
        signals = info.get("signals") or []
        details = {"port": entry["port"], "bridge": entry.get("bridge"), "board": info.get("board"),
                   "fw": info.get("fw"), "proto": info.get("proto"), "limits": info.get("limits"),
                   "signals": signals, "skipped_lines": info.get("skipped", 0)}
        remember("serial", entry["port"], details)
        return Resource.present("serial", _describe(details), "online", **details)
    return Resource.absent("serial", "no openmind device answered: " + "; ".join(failures), "silent")


def _describe(details: dict[str, Any]) -> str:
    names = [s.get("name") for s in details.get("signals") or [] if isinstance(s, dict)]
    return (f"ESP32 on {details['port']} ({details.get('board') or '?'}, fw {details.get('fw') or '?'}): "
            + (", ".join(n for n in names if n) or "no signals"))


def _busy(entry: dict[str, Any]) -> Resource:
    """The port is in use by another openmind reader: what was last seen on it, not re-probed."""
    import time

    from openmind.memory.probes import last

    seen = last("serial", entry["port"])
    if seen is None:
        return Resource.present("serial", f"ESP32 on {entry['port']}: in use by another reader (not "
                                f"probed, so as not to disturb it)", "busy", port=entry["port"],
                                bridge=entry.get("bridge"), busy=True)
    when, details = seen
    return Resource.present("serial", f"{_describe(details)} (in use by another reader; as probed "
                            f"{time.time() - when:.0f}s ago)", "busy", **{**details, "busy": True,
                                                                          "last_probe_at": when})


