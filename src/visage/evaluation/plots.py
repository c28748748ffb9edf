"""Plots of error rates as PNG files: DET curves (verification and liveness), ROC curves and reliability.

matplotlib (Agg backend) and scipy are imported inside each function, so importing this module is
cheap. The rates come from :mod:`visage.evaluation.metrics`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .metrics import BONA_FIDE, apcer, bpcer, det_points, reliability_bins

#: Rates of the DET axes' ticks (drawn in percent).
DET_TICKS = (0.001, 0.01, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8)
#: Rates are clipped to this range on the normal-deviate axes (a rate of 0 sits at the edge).
DET_CLIP = (0.0005, 0.9995)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike, dpi: float | None = None) -> Path:
    """Lay out, write and close ``fig`` (``dpi`` None: the figure's own); returns the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_det_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike, *,
                    xlabel: str, ylabel: str, title: str,
                    points: Mapping[str, tuple[float, float]] | None = None,
                    marks: Sequence[float] = ()) -> Path:
    """Draw DET curves: false-reject against false-accept rate, both on normal-deviate axes.

    ``curves`` maps a legend label to (false-accept, false-reject) arrays along ascending
    thresholds (as :func:`~visage.evaluation.metrics.det_points` returns them), drawn as steps.
    ``points`` maps some of those labels to an operating point, drawn as a dot in the curve's
    colour; ``marks`` are false-accept rates marked by a dotted vertical line. Returns the PNG path.
    """
    plt = _pyplot()
    from scipy.stats import norm

    def deviate(rate):
        return norm.ppf(np.clip(rate, *DET_CLIP))

    ticks = np.array(DET_TICKS)
    fig, ax = plt.subplots(figsize=(5.5, 5.0), dpi=120)
    for label, (fa, fr) in curves.items():
        ax.plot(deviate(fa), deviate(fr), drawstyle="steps-post", label=label)
        if points and label in points:
            pa, pb = points[label]
            ax.plot(deviate(pa), deviate(pb), "o", color=ax.lines[-1].get_color())
    for rate in marks:
        ax.axvline(norm.ppf(rate), color="grey", lw=0.8, ls=":")
    ax.set_xticks(norm.ppf(ticks), [f"{t:g}" for t in ticks * 100])
    ax.set_yticks(norm.ppf(ticks), [f"{t:g}" for t in ticks * 100])
    # Rates of 0 are drawn at the clip value; leave room below it so those lines stay visible.
    ax.set_xlim(norm.ppf(DET_CLIP[0]) - 0.15, norm.ppf(0.9))
    ax.set_ylim(norm.ppf(DET_CLIP[0]) - 0.15, norm.ppf(0.9))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=8)
    ax.grid(True, lw=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_det(scores: Mapping[str, Sequence[float | None]], path: str | os.PathLike, threshold: float | None = None,
             title: str = "DET: liveness", bona_fide: str = BONA_FIDE) -> Path:
    """Draw one DET curve (APCER vs BPCER on normal-deviate axes) per attack type; returns the PNG path.

    ``scores`` maps a label to liveness scores (``scores[bona_fide]`` are the bona-fide ones); a dot
    marks each type's rates at ``threshold`` when given, and a dotted line APCER = 5%.
    """
    bona = list(scores.get(bona_fide, []))
    curves, points = {}, {}
    for kind, values in sorted(scores.items()):
        if kind == bona_fide or not len(values) or not bona:
            continue
        label = f"{kind} (n={len(values)})"
        curves[label] = det_points(bona, values)
        if threshold is not None:
            points[label] = (apcer(values, threshold), bpcer(bona, threshold))
    return plot_det_curves(curves, path, xlabel="APCER (%)", ylabel=f"BPCER (%)  [n={len(bona)} bona fide]",
                           title=title + ("\n(dots: operating point; rates of 0 drawn at the bottom/left edge)"
                                          if threshold is not None else ""),
                           points=points, marks=(0.05,))


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path, *, title: str = "ROC",
             floor: float = 1e-4) -> Path:
    """Draw ROC curves: true-accept against false-accept rate (log scale), as steps.

    ``curves`` maps a legend label to (far, tar) arrays, as :func:`~visage.evaluation.metrics.roc`
    returns them; a FAR of 0 is drawn at ``floor`` (half the smallest FAR measurable suits).
    Returns the PNG path.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for label, (far, tar) in curves.items():
        ax.step(np.maximum(far, floor), tar, where="post", label=label)
    ax.set(xscale="log", xlabel="false-accept rate", ylabel="true-accept rate", ylim=(0, 1.01), title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path, dpi=120)


def plot_reliability(probabilities: Mapping[str, np.ndarray], same: np.ndarray, path: str | Path, *,
                     bins: int = 10, title: str = "reliability") -> Path:
    """Draw reliability curves: the observed fraction same against the predicted P(same), per bin.

    ``probabilities`` maps a legend label to P(same) of each pair; the bins are those of
    :func:`~visage.evaluation.metrics.expected_calibration_error`. Returns the PNG path.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for label, p in probabilities.items():
        rows = reliability_bins(p, same, bins)
        ax.plot([r[1] for r in rows], [r[2] for r in rows], "o-", label=label)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
    ax.set(xlabel="predicted P(same), out of fold", ylabel="observed fraction same", title=title)
    ax.legend(loc="upper left")
    return _save(fig, path, dpi=120)
