"""Decisions on pairs of embeddings: distance, threshold, and a calibrated probability of same.

Each encoder has a :class:`Calibration` fitted on labelled pairs: a distance threshold and a
logistic curve P(same | distance). Calibrations ship in ``visage/data/calibration.json``; a user
can fit their own with :func:`fit_calibration` and save it with :meth:`Calibration.save`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import VisageError
from .metrics import accepted


@dataclass(frozen=True)
class Calibration:
    """Threshold and logistic fit ``P(same) = 1 / (1 + exp(-(slope·distance + intercept)))``."""

    encoder: str
    threshold: float
    slope: float
    intercept: float
    source: str = ""
    #: Threshold for identification against a gallery (open set). A stranger is compared with
    #: everyone enrolled, so the nearest stranger is closer than a typical different-person pair:
    #: the 1:1 threshold would accept strangers too often. None means "use ``threshold``".
    identify_threshold: float | None = None
    identify_source: str = ""

    @property
    def open_set_threshold(self) -> float:
        """The threshold for "is this anyone enrolled?" decisions."""
        return self.threshold if self.identify_threshold is None else self.identify_threshold

    def probability(self, distance: float | np.ndarray) -> float | np.ndarray:
        """Calibrated probability that a pair at ``distance`` is the same person."""
        z = self.slope * np.asarray(distance, dtype=np.float64) + self.intercept
        p = 1.0 / (1.0 + np.exp(-z))
        return float(p) if np.ndim(p) == 0 else p

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise VisageError(f"{path}: not a visage calibration file ({exc})") from None


@dataclass(frozen=True)
class Verification:
    """The answer to "same person?": ``same`` is ``distance <= threshold``."""

    distance: float
    threshold: float
    same: bool
    probability: float
    encoder: str

    def to_dict(self) -> dict:
        return {"distance": round(self.distance, 6), "threshold": self.threshold, "same": self.same,
                "probability": round(self.probability, 6), "encoder": self.encoder}


def default_calibration(encoder: str) -> Calibration:
    """The calibration shipped with visage for ``encoder``."""
    table = json.loads(resources.files("visage").joinpath("data/calibration.json").read_text())
    if encoder not in table:
        raise VisageError(f"no shipped calibration for encoder {encoder!r}; fit one with fit_calibration")
    return Calibration(encoder=encoder, **table[encoder])


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two embeddings."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def decide(a: np.ndarray, b: np.ndarray, calibration: Calibration, threshold: float | None = None) -> Verification:
    """Compare two embeddings under ``calibration`` (or an explicit ``threshold``)."""
    d = distance(a, b)
    t = calibration.threshold if threshold is None else float(threshold)
    return Verification(distance=d, threshold=t, same=d <= t, probability=float(calibration.probability(d)),
                        encoder=calibration.encoder)


def best_threshold(distances: np.ndarray, same: np.ndarray) -> float:
    """The threshold with the fewest errors on these pairs; ties go to the middle of the best interval."""
    distances = np.asarray(distances, np.float64)
    same = np.asarray(same, bool)
    order = np.sort(np.unique(distances))
    candidates = np.concatenate([[order[0] - 1e-6], (order[:-1] + order[1:]) / 2, [order[-1] + 1e-6]])
    # Errors at each candidate: same-person pairs refused plus different-person pairs accepted
    # (accepted means distance <= t, that is score -distance >= -t).
    errors = (same.sum() - accepted(-distances[same], -candidates)) + accepted(-distances[~same], -candidates)
    best = np.flatnonzero(errors == errors.min())
    # Middle of the widest run of equally good thresholds: the largest margin on both sides.
    runs = np.split(best, np.flatnonzero(np.diff(best) != 1) + 1)
    widest = max(runs, key=lambda r: candidates[r[-1]] - candidates[r[0]])
    return float((candidates[widest[0]] + candidates[widest[-1]]) / 2)


def fit_calibration(distances: np.ndarray, same: np.ndarray, encoder: str, source: str = "") -> Calibration:
    """Fit the threshold (fewest errors) and the logistic curve on labelled pair distances."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    distances = np.asarray(distances, np.float64)
    same = np.asarray(same, bool)
    if same.all() or not same.any():
        raise VisageError("calibration needs both same-person and different-person pairs")
    threshold = best_threshold(distances, same)
    # The penalty is chosen by cross-validated log-loss: a fixed C=1 flattens the curve on
    # well-separated pairs, leaving P(same) near 0.5 for clear cases.
    folds = int(min(10, same.sum(), (~same).sum()))
    search = GridSearchCV(LogisticRegression(), {"C": [1.0, 10.0, 100.0, 1e3, 1e4]}, cv=max(folds, 2),
                          scoring="neg_log_loss").fit(distances[:, None], same.astype(int))
    model = search.best_estimator_
    slope, intercept = float(model.coef_[0, 0]), float(model.intercept_[0])
    return Calibration(encoder=encoder, threshold=round(threshold, 4), slope=round(slope, 4),
                       intercept=round(intercept, 4), source=source)


def accuracy(distances: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Fraction of pairs decided correctly at ``threshold``."""
    return float(np.mean((np.asarray(distances) <= threshold) == np.asarray(same, bool)))


def cross_validated_accuracy(distances: np.ndarray, same: np.ndarray, folds: int = 10, seed: int = 0) -> float:
    """LFW-style accuracy: the threshold is chosen on nine folds and scored on the tenth."""
    distances = np.asarray(distances, np.float64)
    same = np.asarray(same, bool)
    index = np.random.default_rng(seed).permutation(len(distances))
    correct = 0
    for fold in np.array_split(index, folds):
        train = np.setdiff1d(index, fold)
        t = best_threshold(distances[train], same[train])
        correct += int(np.sum((distances[fold] <= t) == same[fold]))
    return correct / len(distances)
