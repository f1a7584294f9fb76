"""Colony voting: several ternary models of one task decide together by a ternary vote.

Each member votes per class: +1 for the class it predicts when it is confident, -1 for the
classes it all but rules out, 0 otherwise (a member that is not confident abstains on the row).
The colony predicts the class with the most votes and abstains on a row where fewer than a quorum
of members stand behind it: the rows it answers are the ones it is sure of.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from openmind.errors import BadInput
from openmind.pathways.ternary.packed import TernaryModel


@dataclass
class Vote:
    """A colony's decision on some rows."""

    labels: np.ndarray        # the class with the most votes, per row
    abstained: np.ndarray     # bool per row: the colony is not sure (fewer than a quorum behind it)
    scores: np.ndarray        # [rows, classes] summed member trits
    member_abstentions: np.ndarray  # per row: how many members abstained


class Colony:
    """A colony of ternary models of one task (same features and classes), predicting by vote."""

    def __init__(self, members: Sequence[TernaryModel], *, confidence: float = 0.5,
                 quorum: int | None = None, name: str | None = None) -> None:
        members = list(members)
        if len(members) < 2:
            raise BadInput(f"a colony needs at least two members, got {len(members)}")
        first = members[0]
        for m in members[1:]:
            if m.n_features_in_ != first.n_features_in_ or \
                    list(m.classes_.tolist()) != list(first.classes_.tolist()):
                raise BadInput("colony members must share features and classes: "
                               f"{first.name!r} has {first.n_features_in_} features and classes "
                               f"{first.classes_.tolist()[:10]}, {m.name!r} has {m.n_features_in_} and "
                               f"{m.classes_.tolist()[:10]}")
        if not 0.0 < confidence < 1.0:
            raise BadInput(f"confidence must be between 0 and 1, got {confidence}")
        self.members = members
        self.confidence = float(confidence)
        self.quorum = int(quorum) if quorum is not None else math.ceil(len(members) / 2)
        self.name = name or "+".join(sorted({m.name or "?" for m in members}))
        self.route = None

    @property
    def classes_(self) -> np.ndarray:
        return self.members[0].classes_

    @property
    def n_features_in_(self) -> int:
        return self.members[0].n_features_in_

    def member_trits(self, X: Any) -> np.ndarray:
        """[members, rows, classes] in {-1, 0, +1}: each member's vote per class."""
        out = []
        for m in self.members:
            p = np.asarray(m.predict_proba(X), dtype=np.float64)
            k = p.shape[1]
            sure = p.max(axis=1) >= self.confidence
            t = np.zeros(p.shape, dtype=np.int8)
            t[np.arange(len(p)), p.argmax(axis=1)] = 1
            t[p < 0.1 / k] = -1
            t[~sure] = 0  # not confident: abstain on the whole row
            out.append(t)
        return np.stack(out)

    def vote(self, X: Any) -> Vote:
        trits = self.member_trits(X)
        scores = trits.sum(axis=0, dtype=np.int32)
        proba = self.predict_proba(X)
        idx = np.argmax(scores + 0.5 * proba, axis=1)  # most votes; ties by mean probability
        top = scores[np.arange(len(scores)), idx]
        abstained = top < self.quorum
        silent = (trits == 0).all(axis=2).sum(axis=0)
        return Vote(self.classes_[idx], abstained, scores, silent)

    def predict(self, X: Any) -> np.ndarray:
        """Labels by vote (every row answered; `vote(X).abstained` says which are unsure)."""
        return self.vote(X).labels

    def predict_proba(self, X: Any) -> np.ndarray:
        """The members' mean class probabilities (what a plain model's caller expects)."""
        return np.mean([np.asarray(m.predict_proba(X), dtype=np.float64) for m in self.members],
                       axis=0)

    def summary(self) -> dict[str, Any]:
        return {"members": [m.name for m in self.members], "size": len(self.members),
                "quorum": self.quorum, "confidence": self.confidence,
                "packed_bytes": sum(m.nbytes for m in self.members)}

    def __repr__(self) -> str:
        return (f"Colony({self.name!r}: {len(self.members)} members, quorum {self.quorum}, "
                f"confidence {self.confidence:g})")


def colony(names_or_models: Any, *, versions: bool = False, **options: Any) -> Colony:
    """A colony from models, or from names in muscle memory (the latest model of each name; with
    `versions=True`, every version kept of one name). `options`: confidence, quorum."""
    from openmind.memory.blobs import entries, get, latest

    items = [names_or_models] if isinstance(names_or_models, (str, TernaryModel)) else list(names_or_models)
    members: list[TernaryModel] = []
    for item in items:
        if isinstance(item, TernaryModel):
            members.append(item)
            continue
        if not isinstance(item, str):
            raise BadInput(f"a colony member is a TernaryModel or a model name, got {type(item).__name__}")
        hits = [get("model", e.key) for e in entries("model", item)] if versions else [latest("model", item)]
        hits = [h for h in hits if h is not None]
        if not hits:
            raise BadInput(f"no model named {item!r} in muscle memory; train it first "
                           f"(openmind.train_or_load({item!r}, X, y))")
        members.extend(TernaryModel.from_arrays(arrays, entry.meta) for arrays, entry in hits)
    return Colony(members, **options)
