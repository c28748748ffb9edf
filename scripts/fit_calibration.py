"""Fit the shipped calibrations (``src/visage/data/calibration.json``) and the dlib+facenet fusion weight.

    .venv/bin/python scripts/fit_calibration.py        # needs ../shared/data/pad; about 5 minutes the first time

Fitted on the calibration set (``scripts/calibration_set.py``), never on the dev pairs, which stay
for reporting (``bench/bench_faces.py``, ``bench/bench_gallery_accuracy.py``). How:

1. **Pairs.** The CelebA-Spoof bona-fide photos: 1,107 faces of 443 people in the wild. Every
   same-person pair, and every different-person pair (611k). The other sources of the set (OULU,
   CASIA-FASD, NUAA, webcam sets) are frames of a few people filmed in one session; they are
   reported per source, not fitted on (``docs/encoders.md`` shows how differently they behave).
2. **Fusion weight.** dlib's share ``w`` of the fused squared distance, on a grid of 0.1, is the
   one with the lowest equal-error rate on those pairs.
3. **Threshold.** The distance at which 1% of the different-person pairs are accepted (FAR 1%).
   For dlib's own network that rule gives 0.59, the customary 0.6 of dlib and face_recognition.
   (The middle of the fewest-errors interval, tried first, sits at the equal-error point instead,
   where different people photographed alike are accepted far more often.)
4. **P(same).** A logistic fit of ``same`` on the distance, both classes weighted equally.
5. **Open set.** The different-person distances at log-spaced false-accept rates, from which
   identification derives a threshold for any gallery size
   (:meth:`visage.evaluation.verification.Calibration.open_set_threshold_for`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration_set import EncodedSet, calibration_set
from visage.encoders.fused import DLIB_WEIGHT
from visage.evaluation.metrics import eer

TABLE = Path(__file__).resolve().parents[1] / "src" / "visage" / "data" / "calibration.json"
FIT_SOURCE = "fas_jonathansuryas-celeba"
TARGET_FAR = 0.01
WEIGHTS = np.round(np.arange(0.0, 1.01, 0.1), 2)
QUANTILE_FARS = np.logspace(-6, -1, 21)


def pair_index(person: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (a, b) of every pair and whether it is the same person."""
    a, b = np.triu_indices(len(person), 1)
    return a, b, person[a] == person[b]


def distances(vectors: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(vectors[a].astype(np.float64) - vectors[b], axis=1)


def choose_weight(fit: EncodedSet, a, b, same) -> tuple[float, dict[str, float]]:
    """The dlib weight with the lowest EER on the fitting pairs, and the EER of each weight."""
    d_dlib, d_facenet = distances(fit.dlib, a, b), distances(fit.facenet, a, b)
    errors = {f"{w:.1f}": eer(-np.sqrt(w * d_dlib ** 2 + (1 - w) * d_facenet ** 2), same) for w in WEIGHTS}
    best = min(errors, key=lambda k: (round(errors[k], 4), abs(float(k) - 0.5)))
    return float(best), errors


def fit_entry(d: np.ndarray, same: np.ndarray, source: str) -> dict:
    impostor = d[~same]
    threshold = float(np.quantile(impostor, TARGET_FAR))
    model = LogisticRegression(C=100.0, class_weight="balanced").fit(d[:, None], same.astype(int))
    return {"threshold": round(threshold, 4), "slope": round(float(model.coef_[0, 0]), 4),
            "intercept": round(float(model.intercept_[0]), 4),
            "source": source + f"; threshold at FAR {TARGET_FAR:g}; P(same) logistic, classes weighted equally",
            "impostor_quantiles": [[float(f"{far:.3g}"), round(float(np.quantile(impostor, far)), 4)]
                                   for far in QUANTILE_FARS],
            "open_set_far": TARGET_FAR,
            "identify_source": "threshold for N people enrolled: FAR per pair 1-(1-0.01)^(1/N) from impostor_quantiles"}


def main() -> None:
    cal = calibration_set()
    fit = cal.subset(np.flatnonzero(cal.source == FIT_SOURCE))
    a, b, same = pair_index(fit.person)
    weight, weight_eer = choose_weight(fit, a, b, same)
    print("EER by dlib weight:", {k: round(v, 4) for k, v in weight_eer.items()}, "→", weight)
    if abs(weight - DLIB_WEIGHT) > 1e-9:
        raise SystemExit(f"set DLIB_WEIGHT = {weight} in src/visage/encoders/fused.py and run again")
    what = (f"CelebA-Spoof bona-fide photos of scripts/calibration_set.py: {len(fit.person)} faces of "
            f"{len(np.unique(fit.person))} people, {int(same.sum())} same-person and {int((~same).sum())} "
            "different-person pairs")
    table = {
        "dlib-resnet-v1": fit_entry(distances(fit.dlib_raw, a, b), same, what),
        "facenet-vggface2": fit_entry(distances(fit.facenet, a, b), same, what),
        f"dlib+facenet-w{weight:.2f}": fit_entry(distances(fit.fused(weight), a, b), same,
                                                  what + f"; dlib weight {weight} (lowest EER of {len(WEIGHTS)})"),
    }
    tmp = TABLE.with_suffix(".tmp")
    tmp.write_text(json.dumps(table, indent=2) + "\n")
    tmp.replace(TABLE)
    for name, entry in table.items():
        print(f"{name}: threshold {entry['threshold']}, slope {entry['slope']}, intercept {entry['intercept']}")
    print(f"wrote {TABLE}")


if __name__ == "__main__":
    main()
