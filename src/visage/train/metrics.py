"""Verification metrics on scored pairs: ROC, AUC, EER, TAR at a FAR, calibration error.

Every function takes ``scores`` where higher means "more likely the same person" (pass
``-distance`` for distances) and ``same``, the truth per pair. FAR is the fraction of
different-person pairs accepted, TAR the fraction of same-person pairs accepted.
"""

from __future__ import annotations

import numpy as np

from ..errors import VisageError

#: False-accept rates reported by default, as in the issue: 1e-2 and 1e-3.
DEFAULT_FARS = (1e-2, 1e-3)


def _check(scores, same) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, np.float64).ravel()
    same = np.asarray(same, bool).ravel()
    if len(scores) != len(same):
        raise VisageError(f"{len(scores)} scores but {len(same)} labels")
    if same.all() or not same.any():
        raise VisageError("metrics need both same-person and different-person pairs")
    return scores, same


def roc(scores, same) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve: (far, tar, thresholds), a pair is accepted when ``score >= threshold``."""
    from sklearn.metrics import roc_curve

    scores, same = _check(scores, same)
    far, tar, thresholds = roc_curve(same, scores, drop_intermediate=False)
    return far, tar, thresholds


def auc(scores, same) -> float:
    """Area under the ROC curve (1.0 perfect, 0.5 chance)."""
    from sklearn.metrics import roc_auc_score

    scores, same = _check(scores, same)
    return float(roc_auc_score(same, scores))


def eer(scores, same) -> float:
    """Equal error rate: where the false-accept rate equals the false-reject rate (interpolated)."""
    far, tar, _ = roc(scores, same)
    frr = 1.0 - tar
    i = int(np.flatnonzero(far >= frr)[0])
    if i == 0:
        return float(far[0])
    # Crossing between points i-1 and i: interpolate linearly on both rates.
    d0, d1 = frr[i - 1] - far[i - 1], frr[i] - far[i]
    w = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(far[i - 1] + w * (far[i] - far[i - 1]))


def score_threshold_at_far(scores, same, far: float) -> float:
    """The lowest score threshold whose FAR (accept when ``score > threshold``) is at most ``far``.

    With ``n`` different-person pairs at most ``floor(far·n)`` of them are accepted, so a ``far``
    below ``1/n`` means none is (the threshold is the highest different-person score).
    """
    scores, same = _check(scores, same)
    impostors = np.sort(scores[~same])[::-1]
    allowed = int(np.floor(far * len(impostors) + 1e-9))
    return float(impostors[min(allowed, len(impostors) - 1)]) if allowed < len(impostors) else float(impostors[-1] - 1e-9)


def tar_at_far(scores, same, far: float) -> float:
    """True-accept rate at the threshold of :func:`score_threshold_at_far`."""
    scores, same = _check(scores, same)
    t = score_threshold_at_far(scores, same, far)
    return float(np.mean(scores[same] > t))


def expected_calibration_error(probabilities, same, bins: int = 10) -> float:
    """ECE: the pair-weighted mean gap between predicted P(same) and the observed rate, per bin."""
    p = np.clip(np.asarray(probabilities, np.float64).ravel(), 0.0, 1.0)
    y = np.asarray(same, bool).ravel()
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.sum() * abs(p[members].mean() - y[members].mean())
    return float(total / len(p))


def verification_report(scores, same, fars=DEFAULT_FARS) -> dict:
    """AUC, EER and TAR at each FAR in ``fars``, plus the pair counts and the smallest FAR measurable."""
    scores, same = _check(scores, same)
    n_diff = int((~same).sum())
    return {
        "pairs": len(same), "same_pairs": int(same.sum()), "different_pairs": n_diff,
        "auc": round(auc(scores, same), 6), "eer": round(eer(scores, same), 6),
        **{f"tar@far={far:g}": round(tar_at_far(scores, same, far), 6) for far in fars},
        # Below 1/n different-person pairs a FAR target cannot be told apart from zero.
        "smallest_measurable_far": round(1.0 / n_diff, 6),
    }
