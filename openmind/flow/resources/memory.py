"""Muscle memory: what the store holds, by kind and name."""

from __future__ import annotations

from openmind import config
from openmind.flow.resources.base import Resource
from openmind.units import human_bytes, plural


def probe_memory() -> Resource:
    from openmind.memory.store import connect

    root = config.home()
    with connect(root) as con:
        rows = con.execute(
            "SELECT kind, name, COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes "
            "FROM memory GROUP BY kind, name"
        ).fetchall()
    models: dict[str, int] = {}
    signals: dict[str, int] = {}
    predictions = 0
    total = 0
    for r in rows:
        total += r["bytes"]
        if r["kind"] == "model":
            models[r["name"]] = r["n"]
        elif r["kind"] == "pattern":
            signals[r["name"]] = r["n"]
        elif r["kind"] == "predictions":
            predictions += r["n"]
    reason = (
        f"{plural(sum(models.values()), 'model')}, {plural(sum(signals.values()), 'signal pattern')}, "
        f"{plural(predictions, 'cached prediction')} ({human_bytes(total)})"
    )
    from openmind.memory import team

    shared = team.state()  # the team tier (OPENMIND_REMOTE): its url, and why it is benched
    if shared is not None:
        reason += f"; {shared['benched']}" if shared["benched"] else f"; team memory {shared['url']}"
    return Resource.present("memory", reason, "ready", models=models, signals=signals,
                            predictions=predictions, bytes=total, home=str(root), team=shared)


