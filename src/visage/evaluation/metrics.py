"""Error rates of a decision on scores: face verification, and presentation-attack detection (ISO/IEC 30107-3).

One rule throughout: a score is accepted when it is at or above the threshold, and higher means
"more likely genuine". Both kinds of evaluation count the same two errors on one threshold sweep
(:func:`accept_rate`, :func:`reject_rate`, :func:`error_rates`):

* **Verification** of pairs: ``scores`` where higher means "more likely the same person" (pass
  ``-distance`` for distances) and ``same``, the truth per pair. FAR is the fraction of
  different-person pairs accepted, TAR the fraction of same-person pairs accepted: :func:`roc`,
  :func:`auc`, :func:`eer`, :func:`tar_at_far`, :func:`verification_report`, and
  :func:`expected_calibration_error` of a predicted P(same).
* **Presentation-attack detection**: "liveness" scores, higher means more likely bona fide. A
  presentation with no score (no face found, not enough frames: ``None`` or NaN) is never
  accepted, so it counts against BPCER when it is bona fide and is a correct refusal when it is an
  attack; the counts report how many there were.

  - APCER (per attack type, the "PAI species"): the share of attack presentations accepted
    (a false-accept rate, with the attacks as impostors).
  - BPCER: the share of bona-fide presentations refused (a false-reject rate).
  - ACER: (highest APCER + BPCER) / 2, as the OULU-NPU protocol averages them.
  - BPCER at APCER = 5% (BPCER20): the BPCER at the lowest threshold that keeps every attack
    type's APCER at or below 5%.

The DET and ROC plots of these rates are in :mod:`visage.evaluation.plots`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InvalidArgument, VisageError

#: False-accept rates reported by default, as in the issue: 1e-2 and 1e-3.
DEFAULT_FARS = (1e-2, 1e-3)
#: The folder (label) name of bona-fide presentations.
BONA_FIDE = "real"


# -- the threshold sweep shared by every metric ------------------------------------------------------

def accepted(scores, thresholds) -> np.ndarray:
    """How many of ``scores`` are at or above each of ``thresholds`` (scores must not be NaN)."""
    s = np.sort(np.asarray(scores, np.float64).ravel())
    return len(s) - np.searchsorted(s, np.asarray(thresholds, np.float64), side="left")


def accept_rate(scores, thresholds) -> np.ndarray:
    """The share of ``scores`` at or above each threshold (NaN when there are no scores)."""
    n = np.asarray(scores).size
    count = accepted(scores, thresholds)
    return count / n if n else np.full(np.shape(count), np.nan)


def reject_rate(scores, thresholds) -> np.ndarray:
    """The share of ``scores`` below each threshold (NaN when there are no scores)."""
    n = np.asarray(scores).size
    count = accepted(scores, thresholds)
    return (n - count) / n if n else np.full(np.shape(count), np.nan)


def error_rates(genuine, impostor, thresholds) -> tuple[np.ndarray, np.ndarray]:
    """(false-accept rate, false-reject rate) at each threshold.

    False accepts are ``impostor`` scores at or above the threshold (different-person pairs, or
    attack presentations: APCER); false rejects are ``genuine`` scores below it (same-person
    pairs, or bona-fide presentations: BPCER).
    """
    return accept_rate(impostor, thresholds), reject_rate(genuine, thresholds)


def false_accepts_allowed(far: float, impostors: int) -> int:
    """How many of ``impostors`` different-person pairs a threshold may accept at a FAR of ``far``.

    That is ``floor(far·n)``, so a ``far`` below ``1/n`` allows none.
    """
    return int(np.floor(far * impostors + 1e-9))


# -- verification ------------------------------------------------------------------------------------

def _check(scores, same) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, np.float64).ravel()
    same = np.asarray(same, bool).ravel()
    if len(scores) != len(same):
        raise VisageError(f"{len(scores)} scores but {len(same)} labels")
    if same.all() or not same.any():
        raise VisageError("metrics need both same-person and different-person pairs")
    return scores, same


def roc(scores, same) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve: (far, tar, thresholds), a pair is accepted when ``score >= threshold``.

    One point per distinct score, highest threshold first; the first threshold is infinite (no
    pair accepted).
    """
    scores, same = _check(scores, same)
    if not np.isfinite(scores).all():
        raise InvalidArgument("scores must be finite: no NaN or infinity")
    thresholds = np.concatenate([[np.inf], np.unique(scores)[::-1]])
    return accept_rate(scores[~same], thresholds), accept_rate(scores[same], thresholds), thresholds


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
    allowed = false_accepts_allowed(far, len(impostors))
    return float(impostors[min(allowed, len(impostors) - 1)]) if allowed < len(impostors) else float(impostors[-1] - 1e-9)


def tar_at_far(scores, same, far: float) -> float:
    """True-accept rate at the threshold of :func:`score_threshold_at_far`."""
    scores, same = _check(scores, same)
    t = score_threshold_at_far(scores, same, far)
    return float(np.mean(scores[same] > t))


def reliability_bins(probabilities, same, bins: int = 10) -> list[tuple[int, float, float]]:
    """(pairs, mean predicted P(same), observed fraction same) of each non-empty bin of P(same).

    The bins split [0, 1] into ``bins`` equal parts; a probability of 1 falls in the last one.
    """
    p = np.clip(np.asarray(probabilities, np.float64).ravel(), 0.0, 1.0)
    y = np.asarray(same, bool).ravel()
    which = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        members = which == b
        if members.any():
            out.append((members.sum(), p[members].mean(), y[members].mean()))
    return out


def expected_calibration_error(probabilities, same, bins: int = 10) -> float:
    """ECE: the pair-weighted mean gap between predicted P(same) and the observed rate, per bin."""
    total = 0.0
    for count, predicted, observed in reliability_bins(probabilities, same, bins):
        total += count * abs(predicted - observed)
    return float(total / np.asarray(probabilities).size)


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


# -- presentation-attack detection (ISO/IEC 30107-3) -------------------------------------------------

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
    return float(accept_rate(_as_scores(attack_scores), threshold))


def bpcer(bona_fide_scores: Sequence[float | None], threshold: float) -> float:
    """Share of bona-fide presentations whose score is below ``threshold`` (refused)."""
    return float(reject_rate(_as_scores(bona_fide_scores), threshold))


def pad_error_rates(scores: Mapping[str, Sequence[float | None]], thresholds, bona_fide: str = BONA_FIDE
                    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(attack type → APCER, BPCER) at each of ``thresholds``, for ``scores`` (label → scores).

    ``scores[bona_fide]`` holds the bona-fide presentations; every other key is an attack type
    (in sorted order in the result).
    """
    apcers = {k: accept_rate(_as_scores(v), thresholds) for k, v in sorted(scores.items()) if k != bona_fide}
    return apcers, reject_rate(_as_scores(scores.get(bona_fide, [])), thresholds)


def pad_eer(scores: Mapping[str, Sequence[float | None]], bona_fide: str = BONA_FIDE) -> float:
    """Equal error rate of the worst attack type's APCER and BPCER, for ``scores`` (label → scores).

    Over thresholds at every score, the one where the two rates are closest, and their mean there
    (not interpolated as :func:`eer` is). Attack types without scores are left out.
    """
    present = {k: v for k, v in scores.items() if len(v)}
    thresholds = np.unique(np.concatenate([_as_scores(v) for v in present.values()]))
    apcers, b = pad_error_rates(present, thresholds, bona_fide)
    worst = np.max(np.stack(list(apcers.values())), axis=0)
    i = int(np.argmin(np.abs(worst - b)))
    return float((worst[i] + b[i]) / 2)


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
    meets = np.all([accept_rate(s, candidates) <= target + 1e-12 for s in per_type.values()], axis=0)
    if not meets.any():
        return 1.0, float("inf")
    t = candidates[int(np.argmax(meets))]  # ascending: the first that meets the target has the lowest BPCER
    return float(reject_rate(bona, t)), float(t)


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
    """(false-accept, false-reject) arrays over every threshold that changes either, for a DET curve.

    For liveness these are (APCER, BPCER) of bona-fide and attack scores; for verification pass
    the same-person and the different-person pairs' scores for (FAR, FRR). Thresholds ascend, so
    the first point accepts everything and the last refuses everything.
    """
    bona, attack = _as_scores(bona_fide_scores), _as_scores(attack_scores)
    finite = np.concatenate([bona, attack])
    thresholds = np.unique(np.concatenate([finite[np.isfinite(finite)], [np.inf]]))
    return error_rates(bona, attack, thresholds)


def _round(value):
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None  # JSON has no NaN or infinity
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return value
