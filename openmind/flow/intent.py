"""What the router reads and what it proposes: `Intent` (a cell's want plus the facts its caller
looked up) and `Candidate` (one way to satisfy it). Plain data, shared by the router and its rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from openmind.vocab import Decision, IntentKind, Pathway


@dataclass(frozen=True)
class Intent:
    """What a cell wants, plus the facts about it the caller looked up (the router does no I/O).

    name:         model name (train, infer) or signal name (sense)
    rows, shape:  the data's size; data_kind: tabular | text | image | unknown
    exact:        train: a model with the same name, data fingerprint and config is cached;
                  infer: predictions for this model and data are cached
    ancestor:     train: a model of this name is cached (other data). None = ask resources.memory
    local_model:  infer: the model can be loaded from local memory. None = ask resources.memory
    remote_model: infer: an inference endpoint is known to serve the model
    pattern:      sense: a fitted pattern of the signal is cached. None = ask resources.memory
    prior:        sense: the signal has a built-in prior (the sense intent looks it up in the
                  pattern pathway's table; the router imports no pathway)
    est_seconds:  train: estimated CPU seconds of a full train (None = unknown, assume it fits)
    partial:      train: a run of this very request was cut short; how far it got ("1 of 60
                  epochs"), so it is resumed rather than restarted
    joined:       train: the size of the torchrun process group this call runs in (None = none)
    ancestors:    train: names of the models a new network's first weights are sampled from
    uncacheable:  cell pathway: why the cell cannot be kept (a value that cannot be fingerprinted)
    kept_bytes:   cell pathway: the size of the exact hit's kept outputs (est_seconds: its run time)
    restore_s:    cell pathway: how long restoring them is expected to take on this machine
    shed:         train/infer: versions of this name the validator shed, and why (not picked)
    misfit:       deploy: why the model does not fit the device's limits (None = it fits)
    work:         infer: multiply-adds of the prediction (rows x weights; None = unknown)
    age_s:        ingest: how old the last good copy of the source is (seconds since the source
                  last answered for it; None = no copy). ingest also reads `name` (the source
                  as shown, secrets out), `data_kind` (file | url | sql) and `ancestor` (a copy
                  of this source is in memory)
    """

    kind: IntentKind
    name: str | None = None
    rows: int | None = None
    shape: tuple[int, ...] | None = None
    data_kind: str = "tabular"
    exact: bool = False
    ancestor: bool | None = None
    local_model: bool | None = None
    remote_model: bool = False
    pattern: bool | None = None
    prior: bool = False
    est_seconds: float | None = None
    partial: str | None = None
    joined: int | None = None
    ancestors: tuple[str, ...] = ()
    uncacheable: str | None = None
    kept_bytes: int | None = None
    restore_s: float | None = None
    shed: str | None = None
    misfit: str | None = None
    work: int | None = None
    age_s: float | None = None

    @classmethod
    def of(cls, value: Intent | str, **facts: Any) -> Intent:
        if isinstance(value, Intent):
            return replace(value, **facts) if facts else value
        return cls(IntentKind.parse(value, "intent"), **facts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value, "name": self.name, "rows": self.rows,
            "shape": list(self.shape) if self.shape else None, "data_kind": self.data_kind,
            "exact": self.exact, "ancestor": self.ancestor, "local_model": self.local_model,
            "remote_model": self.remote_model, "pattern": self.pattern, "prior": self.prior,
            "est_seconds": self.est_seconds, "partial": self.partial, "ancestors": list(self.ancestors),
            "uncacheable": self.uncacheable, "kept_bytes": self.kept_bytes,
            "restore_s": self.restore_s,
            "joined": self.joined,
            "shed": self.shed, "misfit": self.misfit, "work": self.work, "age_s": self.age_s,
        }


@dataclass(frozen=True)
class Candidate:
    """One way to satisfy the intent; `params` tell the executor's handler how (e.g. device)."""

    pathway: Pathway
    decision: Decision
    reason: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"pathway": self.pathway.value, "decision": self.decision.value,
                "reason": self.reason, "params": self.params}
