"""`sense_or_simulate`: read a signal from the ESP32 when one offers it, else simulate it from what
muscle memory learned of it (or a built-in prior), and say which.

Every real capture refits the signal's pattern and records, in the journal, how far the previous
simulation was from reality (ebb and flow: simulation gets better with each real capture).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from openmind.errors import BadInput, PathwayUnavailable
from openmind.flow.executor import Served, execute
from openmind.flow.policy import add_arguments as add_policy_arguments
from openmind.flow.policy import split_policy
from openmind.flow.router import Candidate, Intent, route
from openmind.intents.present import html_of
from openmind.memory.blobs import key_for, put
from openmind.pathways.pattern import (
    PRIOR_SIGNALS,
    Pattern,
    blend,
    distance,
    fit,
    from_description,
    load,
    prior,
    save,
)
from openmind.units import human_duration, parse_duration, parse_rate, plural
from openmind.vocab import Decision, Pathway, Route, check_name

MAX_SAMPLES = 10_000_000
# captures at least this long show a progress bar
PROGRESS_AFTER_S = 2.0
# buckets in a signal's preview (the sparkline on its card and in the journal)
PREVIEW_POINTS = 48


@dataclass
class Signal:
    """A sensed or simulated signal: times (s since the epoch), values, unit, where they came from.

    source: "hardware", "hardware+simulated" (device died mid-capture), "pattern", "prior", "llm".
    real:   per-sample True where the value came from the device.
    """

    name: str
    times: np.ndarray
    values: np.ndarray
    unit: str
    source: str
    rate_hz: float
    real: np.ndarray
    synthetic: bool = False
    lost: int = 0
    skipped_lines: int = 0
    note: str = ""
    calibration: dict[str, Any] = field(default_factory=dict)
    route: Route | None = None

    def __len__(self) -> int:
        return len(self.values)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.values, dtype=dtype)

    @property
    def real_count(self) -> int:
        return int(self.real.sum())

    def summary(self) -> dict[str, Any]:
        """What the journal keeps about this signal (not the samples)."""
        vals = self.values[np.isfinite(self.values)]
        out = {
            "signal": self.name, "unit": self.unit, "source": self.source, "samples": len(self),
            "real_samples": self.real_count, "simulated_samples": len(self) - self.real_count,
            "rate_hz": self.rate_hz, "synthetic": self.synthetic, "lost": self.lost,
            "skipped_lines": self.skipped_lines,
            "mean": float(vals.mean()) if len(vals) else None,
            "std": float(vals.std()) if len(vals) else None,
        }
        if self.note:
            out["note"] = self.note
        if self.calibration:
            out["calibration"] = self.calibration
        out["preview"] = self.preview()
        return out

    def _real_mask(self) -> np.ndarray:
        """Per sample, True where the device measured it (from `real`, else from `source`)."""
        real = getattr(self, "real", None)
        if real is not None and len(real) == len(self.values):
            return np.asarray(real, bool)
        return np.full(len(self.values), self.source.startswith("hardware"), bool)

    def preview(self, points: int = PREVIEW_POINTS) -> dict[str, list]:
        """At most `points` bucket means and, per bucket, whether most of it was real: enough for
        a sparkline on a card or in the sidebar, small enough for the journal."""
        n = len(self.values)
        if n == 0:
            return {"values": [], "real": []}
        edges = np.linspace(0, n, min(points, n) + 1).astype(int)
        real = self._real_mask()
        vals, flags = [], []
        for a, b in zip(edges[:-1], edges[1:], strict=False):
            chunk = self.values[a:b]
            chunk = chunk[np.isfinite(chunk)]
            vals.append(float(f"{chunk.mean():.4g}") if len(chunk) else None)
            flags.append(int(real[a:b].mean() >= 0.5))
        return {"values": vals, "real": flags}

    def to_pandas(self) -> Any:
        """The samples as a DataFrame indexed by time (UTC): value and whether it was real."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Signal.to_pandas needs pandas: pip install 'openmind-cells[plot]'") from None
        index = pd.to_datetime(np.asarray(self.times, float), unit="s", utc=True)
        index.name = "time"
        return pd.DataFrame({"value": np.asarray(self.values, float), "real": self._real_mask()},
                            index=index).rename(columns={"value": self.name})

    def plot(self, ax: Any = None, **kwargs: Any) -> Any:
        """Plot the values over time with matplotlib (`pip install 'openmind-cells[plot]'`): real
        stretches solid, simulated ones dashed. Returns the axes."""
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("Signal.plot needs matplotlib: pip install 'openmind-cells[plot]' "
                              "(the values are in Signal.values and Signal.times)") from None
        if ax is None:
            _, ax = plt.subplots(figsize=kwargs.pop("figsize", (8, 2.5)))
        t = np.asarray(self.times, float) - (float(self.times[0]) if len(self.times) else 0.0)
        real = self._real_mask()
        for flag, label, style in ((True, "real (device)", "-"), (False, "simulated", "--")):
            if (real == flag).any():
                ax.plot(t, np.where(real == flag, self.values, np.nan), style, label=label, **kwargs)
        ax.set_xlabel("seconds")
        ax.set_ylabel(f"{self.name} [{self.unit}]" if self.unit else self.name)
        ax.set_title(f"{self.name}: {self.source}")
        ax.legend(loc="best", fontsize="small")
        return ax

    def _repr_html_(self) -> str | None:
        return html_of("signal", self)  # the face draws it (openmind.jupyter.plots)

    def __repr__(self) -> str:
        how = f"{self.route.pathway.value}/{self.route.decision.value}" if self.route else self.source
        extra = f", note={self.note!r}" if self.note else ""
        return (f"Signal({self.name!r}, {plural(len(self), 'sample')} at {self.rate_hz:g} Hz [{self.unit}], "
                f"source={self.source!r}, via {how}{extra})")


def sense_or_simulate(signal: str, duration: str | float = "1h", rate: str | float = "1Hz",
                      source: str | None = None, timeout: str | float | None = None, *,
                      progress: bool | None = None, seed: int | None = None, **options: Any) -> Signal:
    """Sense `signal` for `duration` at `rate` from the device if it offers it; otherwise simulate
    it from its fitted pattern, else a built-in prior (synthetic). `source`: auto | device | simulate.
    `source` and `timeout` left as None take the cell's policy. A `timeout` bounds how long the
    device may take: each command, and the capture itself: a longer capture is cut there, what it
    read is kept (a capture in memory, the signal's pattern refitted) and the rest simulated from
    it, marked degraded. Without one a command may take 5 s and the capture its duration.

    Policy keywords (fallback, strategy, prefer, ...) pass through to the router.
    """
    check_name(signal, "signal")
    seconds = parse_duration(duration, "duration")
    if seconds is None:
        raise BadInput("duration must be finite, e.g. '90s' or '1h'")
    hz = parse_rate(rate, "rate")
    count = int(round(seconds * hz))
    if count < 1:
        raise BadInput(f"duration {duration!r} at rate {rate!r} is less than one sample; "
                       f"lengthen the duration or raise the rate")
    if count > MAX_SAMPLES:
        raise BadInput(f"{count} samples ({duration!r} at {rate!r}) is more than {MAX_SAMPLES}; "
                       f"shorten the duration or lower the rate")
    pol, rest = split_policy({"source": source, "timeout": timeout, **options})
    if rest:
        raise BadInput(f"unknown option {', '.join(map(repr, sorted(rest)))} for sense_or_simulate")
    wait = pol.timeout or 5.0
    fitted = load(signal)

    from openmind.flow.resources import probe

    resources = probe()
    plan = route(Intent.of("sense", name=signal, pattern=fitted is not None,
                           prior=signal in PRIOR_SIGNALS),
                 resources=resources, policy=pol)
    job = _Sensing(signal, hz, count, wait, progress, seed, limit=pol.timeout)

    def simulate(cand: Candidate) -> Signal:
        kind = cand.params.get("source")
        pat = load(signal) if kind == "pattern" else prior(signal)
        if pat is None:
            raise PathwayUnavailable(f"no {'fitted pattern' if kind == 'pattern' else 'prior'} for '{signal}'")
        sig = job.simulated(pat, kind)
        return Served(sig, degraded="synthetic: built-in prior, no real capture yet") \
            if kind == "prior" else sig

    handlers = {
        (Pathway.HARDWARE_IN_LOOP, Decision.HARDCODE): job.hardware,
        (Pathway.MUSCLE_MEMORY, Decision.HYBRID): simulate,
        (Pathway.CLOUD_INFERENCE, Decision.MODEL): job.described,
    }
    result, _ = execute(plan, handlers, resources=resources, summarize=Signal.summary)
    return result


@dataclass
class _Sensing:
    signal: str
    hz: float
    count: int
    timeout: float
    progress: bool | None
    seed: int | None
    limit: float | None = None  # the call's timeout: a capture longer than this is cut

    def capturable(self) -> tuple[int, str | None]:
        """How many samples to ask the device for, and why not all: the capture fits the timeout."""
        if self.limit is None or self.count / self.hz <= self.limit:
            return self.count, None
        n = max(1, min(self.count, int(self.limit * self.hz)))
        return n, (f"cut at the {human_duration(self.limit)} timeout: {human_duration(self.count / self.hz)} "
                   f"asked, {plural(n, 'sample')} requested from the device")

    def times(self, start: float) -> np.ndarray:
        return start + np.arange(self.count) / self.hz

    def simulated(self, pat: Pattern, kind: str) -> Signal:
        t = self.times(time.time())
        return Signal(self.signal, t, pat.simulate(t, self.seed), pat.unit, kind, self.hz,
                      np.zeros(self.count, bool), synthetic=pat.synthetic,
                      note="synthetic: built-in prior, no real capture yet" if pat.synthetic and kind == "prior" else "")

    def described(self, cand: Candidate) -> Signal:
        # request_signal raises LLMError with the reason, which the journal keeps
        from openmind.intents.ask import request_signal

        pat = from_description(self.signal, request_signal(self.signal))
        return Served(self.simulated(pat, "llm"),
                      degraded="synthetic: simulated from the language model's description")

    def hardware(self, cand: Candidate) -> Signal:
        from openmind.flow.resources import invalidate
        from openmind.pathways.device import Link

        port = cand.params.get("port")
        top = cand.params.get("max_rate_hz")
        if top and self.hz > float(top):
            raise PathwayUnavailable(f"the device streams '{self.signal}' at most at {top} Hz; "
                                     f"{self.hz:g} Hz was asked")
        asked, cut = self.capturable()
        bar = self._bar(asked)
        unit, start = "", time.time()
        try:
            with Link(port) as link:
                info = link.hello(self.timeout)
                unit = next((s.get("unit", "") for s in info.get("signals", [])
                             if isinstance(s, dict) and s.get("name") == self.signal), "")
                start = time.time()
                step = max(1, int(self.hz / 10))
                cap = link.capture(self.signal, self.hz, asked, self.timeout,
                                   on_sample=(lambda k: bar.update(k - bar.n) if k % step == 0 else None)
                                   if bar else None)
        except KeyboardInterrupt as exc:
            cut = getattr(exc, "capture", None)
            if cut is None or cut.received == 0:
                raise
            kept = self.keep_capture(cut, unit, start)  # the samples read are not lost
            raise KeyboardInterrupt(f"{cut.error}; the {cut.received} samples read are kept "
                                    f"(capture {kept})") from exc
        finally:
            if bar:
                bar.close()
        if cap.error:
            invalidate("serial")
        if cap.received == 0:
            raise PathwayUnavailable(cap.error or "the device sent no sample")
        n, real_values = cap.n, cap.values
        calibration = calibrate(self.signal, unit, start + n / self.hz, real_values)
        if cut:  # what the cut capture read is kept, as a Ctrl-C'd one is
            calibration["capture"] = self.keep_capture(cap, unit, start, refit=False)
        sig = self.gaps_filled(cap, start, unit, calibration, cut)
        if sig.source == "hardware+simulated":  # not all of what was asked is real
            missing = int((~sig.real).sum())
            return Served(sig, degraded=f"partial: {missing} of {self.count} samples simulated "
                                        f"({cut or cap.error or 'lost in transit'})")
        return sig

    def gaps_filled(self, cap: Any, start: float, unit: str, calibration: dict[str, Any],
                    cut: str | None = None) -> Signal:
        """The asked number of samples whatever the device did: real ones where it sent them
        (`real` True), the gaps (lost in transit, or after the device died) simulated from the
        pattern just fitted to the real part and marked `real` False, so len(values) is always
        what was asked and the caller sees which values are real."""
        t = self.times(start)
        values = np.full(self.count, np.nan)
        real = np.zeros(self.count, bool)
        values[cap.n] = cap.values
        real[cap.n] = True
        missing = int((~real).sum())
        if not missing:
            return Signal(self.signal, t, values, unit, "hardware", self.hz, real,
                          skipped_lines=cap.skipped, calibration=calibration)
        pat = load(self.signal) or prior(self.signal)
        if pat is not None:
            values[~real] = pat.simulate(t[~real], self.seed)
        how = ("pattern just fitted to the real samples" if pat is not None and not pat.synthetic
               else "prior" if pat is not None else "nothing (NaN)")
        why = "; ".join(x for x in (cut, cap.error, f"{cap.lost} samples lost in transit" if cap.lost else "")
                        if x)
        note = (f"{why}; the {missing} missing of {self.count} samples are simulated from the {how} "
                f"(Signal.real marks the {self.count - missing} real ones)")
        return Signal(self.signal, t, values, unit, "hardware+simulated", self.hz, real,
                      lost=cap.lost, skipped_lines=cap.skipped, note=note, calibration=calibration)

    def keep_capture(self, cap: Any, unit: str, start: float, *, refit: bool = True) -> str | None:
        """Store a capture's real samples (kind "capture") and fit the signal's pattern to them
        (unless done already); returns the capture's key (None when the store could not keep it)."""
        t, v = start + cap.n / self.hz, cap.values
        if refit:
            calibrate(self.signal, unit, t, v)
        key = key_for("capture", self.signal, start, int(cap.received))
        entry = put("capture", self.signal, key, {"times": t, "values": v},
                    {"unit": unit, "rate_hz": self.hz, "requested": self.count,
                     "received": int(cap.received), "error": cap.error})
        return key if entry is not None else None

    def _bar(self, count: int):
        seconds = count / self.hz
        show = self.progress if self.progress is not None else seconds >= PROGRESS_AFTER_S
        if not show:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=count, desc=f"sensing {self.signal}", unit="sample", leave=False)


def calibrate(signal: str, unit: str, times: np.ndarray, values: np.ndarray) -> dict[str, Any]:
    """Ebb and flow: measure how far the current simulation of `signal` is from a real capture
    (Wasserstein-1 of the value distributions), then refit the pattern and keep it."""
    ok = np.isfinite(values)
    if ok.sum() < 3:
        return {"skipped": f"only {int(ok.sum())} finite samples: pattern not updated"}
    old = load(signal)
    baseline = old if old is not None else prior(signal)
    out: dict[str, Any] = {"samples": int(ok.sum())}
    if baseline is not None:
        before = distance(values[ok], baseline.simulate(times[ok], 0))
        out.update(baseline=baseline.source, distance_before=round(before, 6),
                   relative_before=_rel(before, values[ok]))
    else:
        out.update(baseline=None, distance_before=None)
    new = blend(old, fit(signal, times[ok], values[ok], unit))
    out["distance_after"] = round(distance(values[ok], new.simulate(times[ok], 0)), 6)
    out["pattern"] = {k: new.to_dict()[k] for k in ("level", "trend", "period", "sigma", "phi", "captures")}
    out["key"] = save(new)
    return out


def _rel(d: float, values: np.ndarray) -> float | None:
    s = float(np.std(values))
    return round(d / s, 6) if s > 0 and math.isfinite(d) else None


def register(sub: Any) -> None:
    """`openmind sense SIGNAL [--duration D] [--rate R] [--source S] [--json]`."""
    p = sub.add_parser("sense", help="sense a signal from the ESP32, or simulate it")
    p.add_argument("signal")
    p.add_argument("--duration", default="10s", help="e.g. 500ms, 90s, 1h (default 10s)")
    p.add_argument("--rate", default="1Hz", help="e.g. 1Hz, 10/s, 1kHz (default 1Hz)")
    add_policy_arguments(p, ("source", "timeout"), source="auto")  # no timeout: the whole capture
    p.add_argument("--json", action="store_true", help="times and values as JSON")
    p.set_defaults(func=_cmd_sense)


def _cmd_sense(args: Any) -> int:
    import json

    sig = sense_or_simulate(args.signal, args.duration, args.rate, source=args.source,
                            timeout=args.timeout)
    if args.json:
        print(json.dumps({**sig.summary(), "route": sig.route.to_dict() if sig.route else None,
                          "times": sig.times.tolist(),
                          "values": [v if math.isfinite(v) else None for v in sig.values.tolist()]}))
    else:
        print(sig)
        print(sig.route)
    return 0
