"""Presentation-attack detection metrics as ISO/IEC 30107-3 defines them, and a DET plot.

Scores are "liveness" scores: higher means more likely bona fide, and a presentation is accepted as
bona fide when its score is at or above the threshold. A presentation with no score (no face
found, not enough frames: ``None`` or NaN) is never accepted, so it counts against BPCER when it is
bona fide and is a correct refusal when it is an attack; the counts report how many there were.

* APCER (per attack type, the "PAI species"): the share of attack presentations accepted.
* BPCER: the share of bona-fide presentations refused.
* ACER: (highest APCER + BPCER) / 2, as the OULU-NPU protocol averages them.
* BPCER at APCER = 5% (BPCER20): the BPCER at the lowest threshold that keeps every attack type's
  APCER at or below 5%.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

#: The folder (label) name of bona-fide presentations.
BONA_FIDE = "real"


@dataclass(frozen=True)
class PadMetrics:
    """The ISO/IEC 30107-3 rates at one threshold, with the counts behind them."""

    apcer: dict[str, float]
    bpcer: float
    acer: float
    bpcer_at_apcer_5: float
    threshold_at_apcer_5: float
    threshold: float
    counts: dict[str, int]
    unscored: dict[str, int]

    @property
    def apcer_max(self) -> float:
        """The highest APCER over attack types (the subsystem's APCER in ISO/IEC 30107-3)."""
        return max(self.apcer.values()) if self.apcer else float("nan")

    def to_dict(self) -> dict:
        """A JSON-ready dict with keys apcer (type → rate), bpcer, acer, bpcer_at_apcer_5 and counts."""
        out = asdict(self)
        out["apcer_max"] = self.apcer_max
        return _round(out)


def _as_scores(values: Sequence[float | None]) -> np.ndarray:
    """Scores as floats, with None and NaN mapped to -inf (never accepted)."""
    out = np.array([(-math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else float(v))
                    for v in values], np.float64)
    return out


def apcer(attack_scores: Sequence[float | None], threshold: float) -> float:
    """Share of attack presentations whose score is at or above ``threshold`` (accepted as live)."""
    s = _as_scores(attack_scores)
    return float(np.mean(s >= threshold)) if len(s) else float("nan")


def bpcer(bona_fide_scores: Sequence[float | None], threshold: float) -> float:
    """Share of bona-fide presentations whose score is below ``threshold`` (refused)."""
    s = _as_scores(bona_fide_scores)
    return float(np.mean(s < threshold)) if len(s) else float("nan")


def bpcer_at_apcer(bona_fide_scores: Sequence[float | None], attacks: Mapping[str, Sequence[float | None]],
                   target: float = 0.05) -> tuple[float, float]:
    """(BPCER, threshold) at the lowest threshold where every attack type's APCER ≤ ``target``."""
    bona = _as_scores(bona_fide_scores)
    per_type = {k: _as_scores(v) for k, v in attacks.items() if len(v)}
    if not per_type or not len(bona):
        return float("nan"), float("nan")
    attack_all = np.concatenate(list(per_type.values()))
    finite = attack_all[np.isfinite(attack_all)]
    # Thresholds worth trying: just above each attack score (the only places APCER changes).
    candidates = np.unique(np.concatenate([np.nextafter(finite, np.inf), [-np.inf]]))
    for t in candidates:  # ascending: the first that meets the target has the lowest BPCER
        if all(np.mean(s >= t) <= target + 1e-12 for s in per_type.values()):
            return float(np.mean(bona < t)), float(t)
    return 1.0, float("inf")


def pad_metrics(scores: Mapping[str, Sequence[float | None]], threshold: float,
                bona_fide: str = BONA_FIDE) -> PadMetrics:
    """APCER per attack type, BPCER, ACER and BPCER at APCER = 5% for ``scores`` (label → scores).

    ``scores[bona_fide]`` holds the bona-fide presentations; every other key is an attack type.
    """
    bona = list(scores.get(bona_fide, []))
    attacks = {k: list(v) for k, v in scores.items() if k != bona_fide}
    rates = {k: apcer(v, threshold) for k, v in sorted(attacks.items())}
    b = bpcer(bona, threshold)
    worst = max(rates.values()) if rates else float("nan")
    b5, t5 = bpcer_at_apcer(bona, attacks, 0.05)
    counts = {k: len(v) for k, v in scores.items()}
    unscored = {k: int(np.sum(~np.isfinite(_as_scores(v)))) for k, v in scores.items()}
    return PadMetrics(apcer=rates, bpcer=b, acer=(worst + b) / 2, bpcer_at_apcer_5=b5,
                      threshold_at_apcer_5=t5, threshold=float(threshold), counts=counts, unscored=unscored)


def det_points(bona_fide_scores: Sequence[float | None], attack_scores: Sequence[float | None]
               ) -> tuple[np.ndarray, np.ndarray]:
    """(APCER, BPCER) arrays over every threshold that changes either, for a DET curve."""
    bona, attack = _as_scores(bona_fide_scores), _as_scores(attack_scores)
    finite = np.concatenate([bona, attack])
    thresholds = np.unique(np.concatenate([finite[np.isfinite(finite)], [np.inf]]))
    a = np.array([np.mean(attack >= t) for t in thresholds])
    b = np.array([np.mean(bona < t) for t in thresholds])
    return a, b


def plot_det(scores: Mapping[str, Sequence[float | None]], path: str | Path, threshold: float | None = None,
             title: str = "DET: liveness", bona_fide: str = BONA_FIDE) -> Path:
    """Draw one DET curve (APCER vs BPCER on normal-deviate axes) per attack type; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    ticks = np.array([0.001, 0.01, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8])
    clip = (0.0005, 0.9995)
    bona = list(scores.get(bona_fide, []))
    fig, ax = plt.subplots(figsize=(5.5, 5.0), dpi=120)
    for kind, values in sorted(scores.items()):
        if kind == bona_fide or not len(values) or not bona:
            continue
        a, b = det_points(bona, values)
        ax.plot(norm.ppf(np.clip(a, *clip)), norm.ppf(np.clip(b, *clip)), drawstyle="steps-post",
                label=f"{kind} (n={len(values)})")
        if threshold is not None:
            pa, pb = apcer(values, threshold), bpcer(bona, threshold)
            ax.plot(norm.ppf(np.clip(pa, *clip)), norm.ppf(np.clip(pb, *clip)), "o", color=ax.lines[-1].get_color())
    ax.axvline(norm.ppf(0.05), color="grey", lw=0.8, ls=":")
    ax.set_xticks(norm.ppf(ticks), [f"{t:g}" for t in ticks * 100])
    ax.set_yticks(norm.ppf(ticks), [f"{t:g}" for t in ticks * 100])
    # Rates of 0 are drawn at the clip value; leave room below it so those lines stay visible.
    ax.set_xlim(norm.ppf(clip[0]) - 0.15, norm.ppf(0.9))
    ax.set_ylim(norm.ppf(clip[0]) - 0.15, norm.ppf(0.9))
    ax.set_xlabel("APCER (%)")
    ax.set_ylabel(f"BPCER (%)  [n={len(bona)} bona fide]")
    ax.set_title(title + ("\n(dots: operating point; rates of 0 drawn at the bottom/left edge)"
                          if threshold is not None else ""), fontsize=8)
    ax.grid(True, lw=0.3)
    ax.legend(fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _round(value):
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None  # JSON has no NaN or infinity
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return value
