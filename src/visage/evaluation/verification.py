"""Decisions on pairs of embeddings: distance, threshold, and a calibrated probability of same.

Each encoder has a :class:`Calibration` fitted on labelled pairs: a distance threshold and a
logistic curve P(same | distance). Calibrations ship in ``visage/data/calibration.json``; a user
can fit their own with :func:`fit_calibration` (or ``visage calibrate``) and save it with
:meth:`Calibration.save`. A calibration holds for one embedding space only: :func:`check_calibration`
refuses one fitted for another encoder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import InvalidArgument, VisageError
from ..faces.types import Box
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
    #: The encoder as it was named when fitting (``--encoder``: a registry key or a model file), for
    #: messages; ``encoder`` is its embedding space, the name that must match.
    encoder_key: str = ""
    #: ``[[far, distance], ...]``, far ascending: the distance under which that share of
    #: different-person pairs falls. With it, the open-set threshold follows the gallery's size.
    impostor_quantiles: list[list[float]] | None = None
    #: Share of strangers that identification may accept, whatever the number of people enrolled.
    open_set_far: float = 0.01

    @property
    def encoder_label(self) -> str:
        """The encoder it was fitted for, as a person names it: ``dlib+facenet`` or ``model.pt``."""
        return self.encoder_key or self.encoder

    @property
    def open_set_threshold(self) -> float:
        """The fixed threshold for "is this anyone enrolled?" decisions, when the calibration has one."""
        return self.threshold if self.identify_threshold is None else self.identify_threshold

    def open_set_threshold_for(self, people: int) -> float:
        """The threshold for "is this anyone of ``people`` enrolled?": it tightens as the gallery grows.

        A stranger is compared with every enrolled person, so the chance that someone falls within
        ``t`` grows with their number: ``1 − (1 − F(t))^people``, with ``F`` the share of
        different-person pairs within ``t``. The threshold is the ``t`` that keeps that chance at
        :attr:`open_set_far`, read from :attr:`impostor_quantiles` (never looser than the 1:1
        threshold; beyond the table's smallest rate, its smallest distance). A fixed
        ``identify_threshold``, or a calibration without quantiles, gives :attr:`open_set_threshold`.
        """
        if self.identify_threshold is not None or not self.impostor_quantiles:
            return self.open_set_threshold
        per_pair = 1.0 - (1.0 - self.open_set_far) ** (1.0 / max(int(people), 1))
        far, dist = np.asarray(self.impostor_quantiles, np.float64).T
        t = float(np.interp(np.log(per_pair), np.log(far), dist))
        return round(min(t, self.threshold), 4)

    def probability(self, distance: float | np.ndarray) -> float | np.ndarray:
        """Calibrated probability that a pair at ``distance`` is the same person."""
        z = self.slope * np.asarray(distance, dtype=np.float64) + self.intercept
        p = 1.0 / (1.0 + np.exp(-z))
        return float(p) if np.ndim(p) == 0 else p

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read a file written by :meth:`save`; raises VisageError naming the file otherwise."""
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise VisageError(f"{path}: not a visage calibration file ({exc}); give the calibration.json that "
                              "`visage calibrate PAIRS.tsv -o DIR` writes") from None


@dataclass(frozen=True)
class Verification:
    """The answer to "same person?": ``same`` is ``distance <= threshold``.

    ``encoder`` names the encoder as the caller did (``dlib+facenet``, ``model.pt``); ``embedding``
    is its embedding space (``dlib-resnet-v1``...), empty when it is the same as ``encoder``.

    When it compares photos (:func:`visage.verify`), ``face_a`` and ``face_b`` are the boxes of the
    faces compared, ``faces_in_a`` and ``faces_in_b`` how many faces each photo has, and
    ``warnings`` says, for each photo with several faces, which one was used (faces numbered from 1,
    largest first). Comparing embeddings alone (:func:`decide`) leaves them empty.
    """

    distance: float
    threshold: float
    same: bool
    probability: float
    encoder: str
    embedding: str = ""
    face_a: Box | None = None
    face_b: Box | None = None
    faces_in_a: int = 0
    faces_in_b: int = 0
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """The fields as JSON-ready values; each box is ``{left, top, right, bottom}`` or None."""
        return {"distance": round(self.distance, 6), "threshold": self.threshold, "same": self.same,
                "probability": round(self.probability, 6), "encoder": self.encoder,
                "embedding": self.embedding or self.encoder,
                "face_a": None if self.face_a is None else self.face_a.to_dict(),
                "face_b": None if self.face_b is None else self.face_b.to_dict(),
                "faces_in_a": self.faces_in_a, "faces_in_b": self.faces_in_b, "warnings": list(self.warnings)}


def shipped_calibrations() -> dict[str, dict]:
    """The calibration table shipped with visage: embedding-space name → :class:`Calibration` fields."""
    return json.loads(resources.files("visage").joinpath("data/calibration.json").read_text())


def default_calibration(encoder: str) -> Calibration:
    """The calibration shipped with visage for the embedding space ``encoder`` (an encoder's ``.name``)."""
    table = shipped_calibrations()
    if encoder not in table:
        raise VisageError(f"no shipped calibration for encoder {encoder!r}; fit one with fit_calibration")
    return Calibration(encoder=encoder, **table[encoder])


def check_calibration(calibration: Calibration, embedding: str, encoder: str, source: str = "") -> Calibration:
    """``calibration`` itself when it was fitted for the embedding space ``embedding``.

    ``encoder`` is the encoder in use as its user named it and ``source`` where the calibration came
    from (a file), both for the message. A distance threshold means nothing in another encoder's
    space, so a calibration fitted for another one raises :class:`~visage.errors.InvalidArgument`.
    """
    if calibration.encoder == embedding:
        return calibration
    fitted = calibration.encoder_label
    if calibration.encoder_key and calibration.encoder_key != calibration.encoder:
        fitted += f" ({calibration.encoder})"
    raise InvalidArgument(f"{source or 'the calibration'} was fitted for encoder {fitted}, not for {encoder} "
                          f"({embedding}); use it with --encoder {calibration.encoder_label}, or fit one for "
                          f"{encoder} with `visage calibrate PAIRS.tsv --encoder {encoder} -o DIR`")


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two embeddings."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def chosen_threshold(threshold: float | None, default: float) -> float:
    """``threshold`` when given, else ``default``; a given one must be a finite positive distance.

    An infinite or NaN threshold would accept (or refuse) everyone, so it is refused with
    :class:`~visage.errors.InvalidArgument` rather than honoured.
    """
    if threshold is None:
        return float(default)
    value = float(threshold)
    if not np.isfinite(value) or value <= 0:
        raise InvalidArgument(f"threshold must be a finite distance above 0, not {threshold!r}")
    return value


def decide(a: np.ndarray, b: np.ndarray, calibration: Calibration, threshold: float | None = None) -> Verification:
    """Compare two embeddings under ``calibration`` (or an explicit ``threshold``); returns a :class:`Verification`."""
    d = distance(a, b)
    t = chosen_threshold(threshold, calibration.threshold)
    return Verification(distance=d, threshold=t, same=d <= t, probability=float(calibration.probability(d)),
                        encoder=calibration.encoder_label, embedding=calibration.encoder)


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


def fit_calibration(distances: np.ndarray, same: np.ndarray, encoder: str, source: str = "",
                    encoder_key: str = "") -> Calibration:
    """Fit the threshold (fewest errors) and the logistic curve on labelled pair distances.

    ``encoder`` is the embedding space (the encoder's ``.name``), ``encoder_key`` the encoder as the
    user named it (see :attr:`Calibration.encoder_key`). Returns the :class:`Calibration`.
    """
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
                       intercept=round(intercept, 4), source=source, encoder_key=encoder_key)


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
