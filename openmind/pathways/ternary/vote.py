"""Colony voting: several ternary models of one task decide together by a ternary vote.

Each member votes per class: +1 for the class it predicts when it is confident, -1 for the
classes it all but rules out, 0 otherwise (a member that is not confident abstains on the row).
The colony predicts the class with the most votes and abstains on a row where fewer than a quorum
of members stand behind it: the rows it answers are the ones it is sure of.

A colony is kept in muscle memory like a model (`Colony.keep(name)`: kind "model", format
"openmind-colony", every member's packed bytes), so `infer_adaptive`, `openmind serve` and
`deploy` take it by name. `vote(X, exact=True)` is the vote the firmware's `om_colony_vote`
computes bit for bit: the exact kernel's scores and a softmax built from + - * / alone
(`portable_exp`), which C and numpy round identically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from openmind.errors import BadInput, PathwayUnavailable
from openmind.pathways.ternary.packed import VERSION, TernaryModel, encode_classes

FORMAT = "openmind-colony"  # the stored format's name (meta "format" of a kept colony)

# portable_exp's constants; firmware/core/om_model.c holds the same literals (om_colony_vote)
_INV_LN2 = 1.4426950408889634
_LN2_HI = 0.6931471803691238   # fdlibm's split of ln 2: n * _LN2_HI is exact for |n| < 2**11
_LN2_LO = 1.9082149292705877e-10
_TAYLOR = (2.08767569878681e-09, 2.505210838544172e-08, 2.755731922398589e-07,
           2.7557319223985893e-06, 2.48015873015873e-05, 0.0001984126984126984,
           0.001388888888888889, 0.008333333333333333, 0.041666666666666664,
           0.16666666666666666, 0.5, 1.0, 1.0)  # 1/12! ... 1/0!, Horner order


def portable_exp(x: np.ndarray) -> np.ndarray:
    """exp(x) for x <= 0 (float64; 0 below -700) from + - * / floor and a power of two only, each
    rounded once, so numpy and C99 built with -ffp-contract=off give the same bits (libm's and
    numpy's own exp do not promise that). Within an ulp or so of exp: all a vote threshold needs."""
    x = np.asarray(x, dtype=np.float64)
    n = np.floor(x * _INV_LN2 + 0.5)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    p = np.full_like(r, _TAYLOR[0])
    for c in _TAYLOR[1:]:
        p = p * r + c
    out = np.ldexp(p, np.clip(n, -1022, 0).astype(np.int32))  # exact: the result stays normal
    return np.where(x < -700.0, 0.0, out)


def softmax_exact(scores: np.ndarray) -> np.ndarray:
    """Softmax of float32 scores as om_colony_vote computes it: max, portable_exp of the
    differences in float64, a left-to-right sum, one division per class."""
    s = np.asarray(scores, dtype=np.float64)
    e = portable_exp(s - s.max(axis=1, keepdims=True))
    z = np.zeros(len(s))
    for j in range(s.shape[1]):
        z = z + e[:, j]
    return e / z[:, None]


@dataclass
class Vote:
    """A colony's decision on some rows."""

    labels: np.ndarray        # the class with the most votes, per row
    abstained: np.ndarray     # bool per row: the colony is not sure (fewer than a quorum behind it)
    scores: np.ndarray        # [rows, classes] summed member trits
    member_abstentions: np.ndarray  # per row: how many members abstained
    probabilities: np.ndarray | None = None  # [rows, classes] the members' mean probabilities


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
        # a valid memory name by default (keep, serve and deploy use it): colony-<member names>
        self.name = name or ("colony-" + "-".join(sorted({m.name or "model" for m in members})))[:100]
        self.key: str | None = None  # its muscle-memory key once kept
        self.route = None

    @property
    def classes_(self) -> np.ndarray:
        return self.members[0].classes_

    @property
    def n_features_in_(self) -> int:
        return self.members[0].n_features_in_

    def member_probabilities(self, X: Any, exact: bool = False) -> list[np.ndarray]:
        """Each member's class probabilities; exact=True: the device's arithmetic (softmax_exact
        of the bit-exact scores)."""
        if exact:
            return [softmax_exact(m.scores(X, exact=True)) for m in self.members]
        return [np.asarray(m.predict_proba(X), dtype=np.float64) for m in self.members]

    def member_trits(self, X: Any, exact: bool = False,
                     probabilities: list[np.ndarray] | None = None) -> np.ndarray:
        """[members, rows, classes] in {-1, 0, +1}: each member's vote per class."""
        out = []
        for p in probabilities if probabilities is not None else self.member_probabilities(X, exact):
            k = p.shape[1]
            sure = p.max(axis=1) >= self.confidence
            t = np.zeros(p.shape, dtype=np.int8)
            t[np.arange(len(p)), p.argmax(axis=1)] = 1
            t[p < 0.1 / k] = -1
            t[~sure] = 0  # not confident: abstain on the whole row
            out.append(t)
        return np.stack(out)

    def vote(self, X: Any, exact: bool = False) -> Vote:
        """The colony's decision per row. exact=True is what `om_colony_vote` returns on the
        device, bit for bit (labels, abstentions, scores); the default takes the fast kernels."""
        probs = self.member_probabilities(X, exact)
        trits = self.member_trits(X, probabilities=probs)
        scores = trits.sum(axis=0, dtype=np.int32)
        proba = self._mean(probs, exact)
        idx = np.argmax(scores + 0.5 * proba, axis=1)  # most votes; ties by mean probability
        top = scores[np.arange(len(scores)), idx]
        abstained = top < self.quorum
        silent = (trits == 0).all(axis=2).sum(axis=0)
        return Vote(self.classes_[idx], abstained, scores, silent, proba)

    @staticmethod
    def _mean(probs: list[np.ndarray], exact: bool) -> np.ndarray:
        if not exact:
            return np.mean(probs, axis=0)
        acc = np.zeros_like(probs[0])
        for p in probs:  # member order, one add each, as the C loop does
            acc = acc + p
        return acc / len(probs)

    def predict(self, X: Any, exact: bool = False) -> np.ndarray:
        """Labels by vote (every row answered; `vote(X).abstained` says which are unsure)."""
        return self.vote(X, exact).labels

    def predict_proba(self, X: Any, exact: bool = False) -> np.ndarray:
        """The members' mean class probabilities (what a plain model's caller expects)."""
        return self._mean(self.member_probabilities(X, exact), exact)

    # ---- storage: kept in muscle memory like a model
    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(tensors, meta) for a muscle-memory blob: member i's arrays under "m{i}.", their metas
        and the vote's settings in the JSON meta (never pickled)."""
        arrays: dict[str, np.ndarray] = {}
        metas = []
        for i, m in enumerate(self.members):
            a, meta = m.to_arrays()
            arrays.update({f"m{i}.{k}": v for k, v in a.items()})
            metas.append(meta)
        meta = {"format": FORMAT, "version": VERSION, "name": self.name,
                "members": [m.name for m in self.members], "member_meta": metas,
                "confidence": self.confidence, "quorum": self.quorum,
                "classes": encode_classes(self.classes_), "n_inputs": self.n_features_in_,
                "packed_bytes": sum(m.nbytes for m in self.members)}
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Colony:
        """The colony `to_arrays` stored; BadInput when a member's arrays are missing."""
        metas = meta.get("member_meta")
        if meta.get("format") != FORMAT or not isinstance(metas, list):
            raise BadInput(f"not a stored openmind colony (format {meta.get('format')!r})")
        members = []
        for i, m in enumerate(metas):
            part = {k[len(f"m{i}."):]: v for k, v in arrays.items() if k.startswith(f"m{i}.")}
            if "packed" not in part:
                raise BadInput(f"stored colony {meta.get('name')!r} lacks member {i}'s packed bytes")
            members.append(TernaryModel.from_arrays(part, m))
        col = cls(members, confidence=meta["confidence"], quorum=meta["quorum"], name=meta.get("name"))
        col.key = meta.get("key")
        return col

    def content_key(self, name: str | None = None) -> str:
        """The muscle-memory key of this colony under `name`: its members' packed bytes and the
        vote's settings, so keeping the same colony twice is one entry."""
        from openmind.memory.blobs import fingerprint, key_for

        packed = [np.frombuffer(m.pack(), np.uint8) for m in self.members]
        return key_for("colony", name or self.name, fingerprint(*packed), self.confidence, self.quorum)

    def keep(self, name: str | None = None) -> Colony:
        """Store the colony in muscle memory under `name` (default: its own), as a model: then
        `infer_adaptive(name, X)`, `openmind serve` and `deploy(name, ...)` take it by name, and
        `colony(name)` brings it back. Returns the colony (named, with its `key`)."""
        from openmind.memory.blobs import put
        from openmind.vocab import check_name

        self.name = check_name(self.name if name is None else name, "colony name")
        key = self.content_key()
        arrays, meta = self.to_arrays()
        meta["key"] = key
        if put("model", self.name, key, arrays, meta) is None:  # a store problem, not the caller's
            raise PathwayUnavailable(f"muscle memory could not keep colony {self.name!r}; check "
                                     f"that OPENMIND_HOME is writable")
        self.key = key
        return self

    def summary(self) -> dict[str, Any]:
        return {"members": [m.name for m in self.members], "size": len(self.members),
                "quorum": self.quorum, "confidence": self.confidence,
                "packed_bytes": sum(m.nbytes for m in self.members)}

    def __repr__(self) -> str:
        return (f"Colony({self.name!r}: {len(self.members)} members, quorum {self.quorum}, "
                f"confidence {self.confidence:g})")


def colony(names_or_models: Any, *, versions: bool = False, keep: str | bool | None = None,
           **options: Any) -> Colony:
    """A colony from models, or from names in muscle memory (the latest model of each name; with
    `versions=True`, every version kept of one name). A name that holds a kept colony gives its
    members; one such name alone gives that colony back (its name, confidence and quorum unless
    `options` say otherwise). `options`: confidence, quorum, name. `keep`: a name (or True for the
    colony's own) to store it under in muscle memory, as `Colony.keep` does."""
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
        for arrays, entry in hits:
            if entry.meta.get("format") == FORMAT:
                kept = Colony.from_arrays(arrays, entry.meta)
                members.extend(kept.members)
                if len(items) == 1 and not versions:  # the stored colony itself
                    options = {"confidence": kept.confidence, "quorum": kept.quorum,
                               "name": kept.name, **options}
            else:
                members.append(TernaryModel.from_arrays(arrays, entry.meta))
    col = Colony(members, **options)
    if keep:
        col.keep(keep if isinstance(keep, str) else None)
    return col
