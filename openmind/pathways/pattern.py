"""Signal patterns: what a signal looks like, fitted from real captures, so simulation can stand in
for the device and improves with every capture ("ebb and flow").

A pattern is level + bounded trend + one periodic part + AR(1) noise (autocorrelated, as real
sensor noise is). Patterns live in muscle memory as kind "pattern", named by the signal.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

KIND = "pattern"
_NUMERIC = ("level", "trend", "period", "amp_sin", "amp_cos", "sigma", "phi", "dt", "span",
            "t_ref", "n", "lo", "hi")
DAY = 86400.0


@dataclass(frozen=True)
class Pattern:
    """level [unit], trend [unit/s] (only within the span it was seen), period [s] (0 = none) with
    amplitudes on absolute time, sigma/phi: noise std and lag-1 autocorrelation at spacing dt [s]."""

    signal: str
    unit: str = ""
    level: float = 0.0
    trend: float = 0.0
    period: float = 0.0
    amp_sin: float = 0.0
    amp_cos: float = 0.0
    sigma: float = 0.0
    phi: float = 0.0
    dt: float = 1.0
    span: float = 0.0
    t_ref: float = 0.0
    n: float = 0.0           # real samples behind this pattern (0 for a prior)
    lo: float = -math.inf    # physical bounds (humidity 0..100, light >= 0)
    hi: float = math.inf
    source: str = "fit"      # fit | prior | llm
    synthetic: bool = False
    captures: int = 0

    def simulate(self, times: np.ndarray, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Values at `times` (seconds since the epoch)."""
        rng = np.random.default_rng(rng)
        t = np.asarray(times, dtype=np.float64)
        y = self.level + self.trend * np.clip(t - self.t_ref, -self.span / 2, self.span / 2)
        if self.period > 0:
            w = 2 * math.pi / self.period
            y = y + self.amp_sin * np.sin(w * t) + self.amp_cos * np.cos(w * t)
        if self.sigma > 0 and len(t):
            step = float(np.median(np.diff(t))) if len(t) > 1 else self.dt
            y = y + ar1(len(t), self.sigma, self.phi_at(step), rng)
        return np.clip(y, self.lo, self.hi)

    def phi_at(self, step: float) -> float:
        """The lag-1 autocorrelation at another sample spacing (AR(1) is exponential in lag)."""
        if self.phi <= 0 or self.dt <= 0:
            return self.phi if math.isclose(step, self.dt, rel_tol=1e-3) else 0.0
        return float(self.phi ** (step / self.dt))

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        params = np.array([getattr(self, k) for k in _NUMERIC], dtype=np.float64)
        meta = {"unit": self.unit, "source": self.source, "synthetic": self.synthetic,
                "captures": self.captures, "fields": list(_NUMERIC), "signal": self.signal}
        return {"params": params}, meta

    @classmethod
    def from_arrays(cls, signal: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Pattern:
        values = dict(zip(meta.get("fields", _NUMERIC), arrays["params"].tolist(), strict=False))
        return cls(signal=signal, unit=meta.get("unit", ""), source=meta.get("source", "fit"),
                   synthetic=bool(meta.get("synthetic", False)), captures=int(meta.get("captures", 0)),
                   **{k: float(v) for k, v in values.items() if k in _NUMERIC})

    def to_dict(self) -> dict[str, Any]:
        return {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                for k, v in asdict(self).items()}


def ar1(n: int, sigma: float, phi: float, rng: np.random.Generator) -> np.ndarray:
    """Stationary AR(1) noise with standard deviation sigma and lag-1 correlation phi."""
    phi = float(np.clip(phi, -0.999, 0.999))
    e = rng.normal(0.0, sigma * math.sqrt(1 - phi * phi), n)
    if phi == 0.0:
        return e
    out = np.empty(n)
    out[0] = rng.normal(0.0, sigma)
    # blocks of 256: within a block x_j = phi^j (x_0 + sum_k<=j e_k phi^-k), a cumulative sum
    pw = phi ** np.arange(257, dtype=np.float64)
    prev, i = out[0], 1
    while i < n:
        m = min(256, n - i)
        blk = e[i:i + m]
        if abs(phi) ** m < 1e-280:           # tiny phi: the powers underflow, recurse plainly
            for j in range(m):
                prev = phi * prev + blk[j]
                out[i + j] = prev
        else:
            out[i:i + m] = pw[1:m + 1] * (prev + np.cumsum(blk / pw[1:m + 1]))
            prev = out[i + m - 1]
        i += m
    return out


def fit(signal: str, times: np.ndarray, values: np.ndarray, unit: str = "") -> Pattern:
    """Fit level, trend, the strongest periodic part and AR(1) noise to one capture."""
    t = np.asarray(times, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(y)
    t, y = t[ok], y[ok]
    if len(y) < 3:
        raise ValueError(f"need at least 3 finite samples to fit a pattern, got {len(y)}")
    dt = float(np.median(np.diff(t))) or 1.0
    span = float(t[-1] - t[0])
    t_ref = float(t.mean())
    x = t - t_ref
    cols = [np.ones_like(x), x]
    period = 0.0
    base = np.linalg.lstsq(np.stack(cols, 1), y, rcond=None)[0]
    resid = y - np.stack(cols, 1) @ base
    if len(y) >= 16 and span > 4 * dt:
        periods = np.geomspace(4 * dt, span, 240)
        w = 2 * np.pi / periods[:, None]
        s, c = np.sin(w * x), np.cos(w * x)
        # explained sum of squares of a sin/cos pair per candidate (normal equations, 2x2)
        ss, cc, sc = (s * s).sum(1), (c * c).sum(1), (s * c).sum(1)
        rs, rc = s @ resid, c @ resid
        det = ss * cc - sc * sc
        with np.errstate(divide="ignore", invalid="ignore"):
            a = (cc * rs - sc * rc) / det
            b = (ss * rc - sc * rs) / det
        explained = np.nan_to_num(a * rs + b * rc)
        best = int(np.argmax(explained))
        if explained[best] > 0.2 * float(resid @ resid):
            period = float(periods[best])
    if period:
        w = 2 * math.pi / period
        cols += [np.sin(w * t), np.cos(w * t)]       # phase on absolute time: simulations line up
    coef = np.linalg.lstsq(np.stack(cols, 1), y, rcond=None)[0]
    e = y - np.stack(cols, 1) @ coef
    sigma = float(e.std())
    phi = float(np.corrcoef(e[:-1], e[1:])[0, 1]) if sigma > 0 and len(e) > 3 else 0.0
    return Pattern(signal, unit, level=float(coef[0]), trend=float(coef[1]), period=period,
                   amp_sin=float(coef[2]) if period else 0.0, amp_cos=float(coef[3]) if period else 0.0,
                   sigma=sigma, phi=float(np.clip(np.nan_to_num(phi), -0.99, 0.99)), dt=dt, span=span,
                   t_ref=t_ref, n=float(len(y)), source="fit", captures=1)


def blend(old: Pattern | None, new: Pattern) -> Pattern:
    """Update an earlier fitted pattern with a new capture's fit (priors are simply replaced).

    The old pattern weighs at most 3x the new capture, so the pattern keeps following reality."""
    if old is None or old.synthetic or old.n <= 0:
        return new
    wo = min(old.n, 3 * new.n)
    a = wo / (wo + new.n)

    def mix(x: float, y: float) -> float:
        return a * x + (1 - a) * y

    period, amp_sin, amp_cos = new.period, new.amp_sin, new.amp_cos
    if old.period and new.period and abs(old.period - new.period) < 0.1 * new.period:
        period, amp_sin, amp_cos = (mix(old.period, new.period), mix(old.amp_sin, new.amp_sin),
                                    mix(old.amp_cos, new.amp_cos))
    elif old.period and not new.period and new.span < old.period:
        period, amp_sin, amp_cos = old.period, old.amp_sin, old.amp_cos  # too short to see it
    return replace(new, level=mix(old.level, new.level), trend=mix(old.trend, new.trend),
                   sigma=math.sqrt(mix(old.sigma ** 2, new.sigma ** 2)), phi=mix(old.phi, new.phi),
                   period=period, amp_sin=amp_sin, amp_cos=amp_cos, n=old.n + new.n,
                   captures=old.captures + 1, lo=old.lo, hi=old.hi)


def distance(real: np.ndarray, simulated: np.ndarray) -> float:
    """Wasserstein-1 distance between the two value distributions (in the signal's unit)."""
    a = np.sort(np.asarray(real, dtype=np.float64)[np.isfinite(real)])
    b = np.sort(np.asarray(simulated, dtype=np.float64)[np.isfinite(simulated)])
    if not len(a) or not len(b):
        return math.nan
    q = (np.arange(1000) + 0.5) / 1000
    return float(np.mean(np.abs(np.quantile(a, q) - np.quantile(b, q))))


# Built-in priors: typical indoor values, a daily cycle (peak mid-afternoon UTC), sensor noise.
_PRIORS: dict[str, dict[str, Any]] = {
    "temperature": dict(unit="C", level=21.0, period=DAY, amp=2.0, sigma=0.2, phi=0.95),
    "humidity": dict(unit="%RH", level=45.0, period=DAY, amp=-6.0, sigma=1.0, phi=0.95, lo=0.0, hi=100.0),
    "light": dict(unit="lux", level=250.0, period=DAY, amp=230.0, sigma=15.0, phi=0.9, lo=0.0),
    "acceleration": dict(unit="m/s^2", level=9.81, period=0.0, amp=0.0, sigma=0.05, phi=0.3),
}
PRIOR_SIGNALS = tuple(_PRIORS)


def prior(signal: str) -> Pattern | None:
    """The built-in prior for a common signal (marked synthetic), or None."""
    p = _PRIORS.get(signal)
    if p is None:
        return None
    w = 2 * math.pi / DAY if p["period"] else 0.0
    peak = 15 * 3600.0  # amp * cos(w (t - peak)) = amp cos(w peak) cos(wt) + amp sin(w peak) sin(wt)
    return Pattern(signal, p["unit"], level=p["level"], period=p["period"],
                   amp_sin=p["amp"] * math.sin(w * peak), amp_cos=p["amp"] * math.cos(w * peak),
                   sigma=p["sigma"], phi=p["phi"], dt=1.0, lo=p.get("lo", -math.inf),
                   hi=p.get("hi", math.inf), source="prior", synthetic=True)


def from_description(signal: str, d: dict[str, Any]) -> Pattern:
    """A synthetic pattern from a language model's description (level, unit, amplitude, period, noise)."""
    names = {f.name for f in fields(Pattern)}
    num = {k: float(v) for k, v in d.items() if k in names and k not in ("signal", "unit", "source")
           and isinstance(v, (int, float)) and math.isfinite(v)}
    amp = float(d.get("amplitude", 0) or 0)
    return Pattern(signal, str(d.get("unit", "")), **{"amp_cos": amp, **num},
                   source="llm", synthetic=True)


def load(signal: str) -> Pattern | None:
    """The latest fitted pattern of `signal` in muscle memory, or None."""
    from openmind.memory.blobs import latest

    hit = latest(KIND, signal)
    if hit is None:
        return None
    arrays, entry = hit
    try:
        return Pattern.from_arrays(signal, arrays, entry.meta)
    except (KeyError, TypeError, ValueError):
        return None


def save(p: Pattern) -> str | None:
    """Keep a pattern in muscle memory; returns its key (None if the store is unwritable)."""
    from openmind.memory.blobs import fingerprint, key_for, put

    arrays, meta = p.to_arrays()
    key = key_for(KIND, p.signal, fingerprint(arrays["params"]))
    entry = put(KIND, p.signal, key, arrays, meta)
    return entry.key if entry else None
