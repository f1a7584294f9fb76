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
    ports, why = candidate_ports()
    if not ports:
        return Resource.absent("serial", f"no ESP32: {why}")
    from openmind.pathways.device import DeviceError, hello_on

    failures = []
    for entry in ports:
        try:
            info = hello_on(entry["port"], timeout=probe_timeout())
        except DeviceError as exc:
            failures.append(f"{entry['port']}: {exc}")
            continue
        signals = info.get("signals") or []
        names = [s.get("name") for s in signals if isinstance(s, dict)]
        return Resource.present(
            "serial",
            f"ESP32 on {entry['port']} ({info.get('board', '?')}, fw {info.get('fw', '?')}): "
            + (", ".join(n for n in names if n) or "no signals"),
            "online",
            port=entry["port"],
            bridge=entry.get("bridge"),
            board=info.get("board"),
            fw=info.get("fw"),
            proto=info.get("proto"),
            signals=signals,
            skipped_lines=info.get("skipped", 0),
        )
    return Resource.absent("serial", "no openmind device answered: " + "; ".join(failures), "silent")


