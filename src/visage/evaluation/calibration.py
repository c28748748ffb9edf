"""The Siamese verification head: "same person?" as binary classification of a pair of embeddings.

Three ways to decide on a pair (f_i, f_j), each fitted on labelled pairs:

- ``abs``: logistic regression on the element-wise ``|f_i − f_j|`` (one weight per dimension);
- ``chi2``: logistic regression on the χ² terms ``(f_i − f_j)² / (|f_i| + |f_j|)``. DeepFace
  defines them for non-negative features; embeddings here are signed, so the denominator uses
  absolute values (a small ε keeps it finite);
- ``distance``: the plain Euclidean distance with the threshold that meets a target false-accept
  rate, and a logistic curve P(same | distance) (a :class:`visage.evaluation.verification.Calibration`).

:func:`fit_pair_calibration` fits all three and :class:`PairCalibration` (JSON on disk) applies
them. Commands that decide (``verify``, ``identify``, ``cluster``, ``serve``) take such a file with
``--calibration`` and use its distance rule: :func:`calibration_for` is the one rule that picks the
calibration of an encoder and refuses one fitted for another. :func:`calibration_report` measures
them out of fold (ROC and DET curves as PNG, EER, TAR at FAR 1e-2 and 1e-3, reliability) and
:func:`evaluate_encoders` compares encoders on the LFW protocol.
:func:`update_calibration_table` writes one encoder's shipped default (``scripts/fit_calibration.py``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..config import DEFAULT_DETECTOR
from ..encoders import DEFAULT_ENCODER
from ..errors import InvalidArgument, VisageError
from .metrics import (
    DEFAULT_FARS,
    det_points,
    expected_calibration_error,
    false_accepts_allowed,
    roc,
    verification_report,
)
from .verification import (
    Calibration,
    Verification,
    best_threshold,
    check_calibration,
    cross_validated_accuracy,
    default_calibration,
    fit_calibration,
    shipped_calibrations,
)

FEATURES = ("abs", "chi2")
METHODS = ("abs", "chi2", "distance")
FORMAT = "visage-pair-calibration-v1"
_EPS = 1e-6


def pair_features(a: np.ndarray, b: np.ndarray, feature: str) -> np.ndarray:
    """Element-wise pair features (N, D) of embeddings ``a`` and ``b`` (each (N, D) or (D,))."""
    a = np.atleast_2d(np.asarray(a, np.float64))
    b = np.atleast_2d(np.asarray(b, np.float64))
    if a.shape != b.shape:
        raise VisageError(f"embeddings of different shapes: {a.shape} and {b.shape}")
    if feature == "abs":
        return np.abs(a - b)
    if feature == "chi2":
        return (a - b) ** 2 / (np.abs(a) + np.abs(b) + _EPS)
    raise VisageError(f"unknown pair feature {feature!r}; choose from {', '.join(FEATURES)}")


@dataclass(frozen=True)
class PairHead:
    """A fitted logistic regression on standardised pair features: ``P(same) = σ(w·z + b)``."""

    feature: str
    mean: list[float]
    scale: list[float]
    weights: list[float]
    intercept: float
    C: float

    def probability(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """P(same) for each pair of rows of ``a`` and ``b``: (N,) float64."""
        z = (pair_features(a, b, self.feature) - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.weights) + self.intercept)))


def fit_pair_head(a: np.ndarray, b: np.ndarray, same: np.ndarray, feature: str = "abs", seed: int = 0) -> PairHead:
    """Fit a :class:`PairHead`; the L2 strength is chosen by 3-fold cross-validated log-loss."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    x = pair_features(a, b, feature)
    y = np.asarray(same, bool)
    _need_both(y)
    mean, scale = x.mean(0), x.std(0)
    scale[scale < 1e-12] = 1.0
    folds = StratifiedKFold(max(2, int(min(3, y.sum(), (~y).sum()))), shuffle=True, random_state=seed)
    search = GridSearchCV(LogisticRegression(max_iter=2000), {"C": list(np.logspace(-3, 2, 6))},
                          scoring="neg_log_loss", cv=folds).fit((x - mean) / scale, y.astype(int))
    model = search.best_estimator_
    return PairHead(feature, mean.tolist(), scale.tolist(), model.coef_[0].tolist(), float(model.intercept_[0]),
                    float(search.best_params_["C"]))


def distance_threshold_at_far(distances: np.ndarray, same: np.ndarray, far: float) -> float:
    """The largest distance threshold (accept ``d <= t``) whose FAR on these pairs is at most ``far``.

    It lies halfway between the first different-person distance that must be rejected and the
    largest distance below it (of either kind), leaving a margin on both sides for unseen pairs.
    """
    d = np.asarray(distances, np.float64)
    y = np.asarray(same, bool)
    _need_both(y)
    impostors = np.sort(d[~y])
    allowed = false_accepts_allowed(far, len(impostors))
    if allowed >= len(impostors):
        return float(impostors[-1] + 1e-6)
    upper = impostors[allowed]
    below = d[d < upper]
    lower = float(below.max()) if below.size else upper - 1e-6
    return float((lower + upper) / 2)


@dataclass
class PairCalibration:
    """Fitted pair decisions for one encoder; ``method`` picks the one :meth:`decide` uses.

    Load with :meth:`load`, score with :meth:`probability`, decide with :meth:`decide` (returns a
    :class:`visage.evaluation.verification.Verification`), or take the distance rule alone as a
    :class:`visage.evaluation.verification.Calibration` with :meth:`distance_calibration`.
    """

    encoder: str
    heads: dict[str, PairHead]
    distance: Calibration
    target_far: float
    method: str = "abs"
    report: dict = field(default_factory=dict)

    def probability(self, a: np.ndarray, b: np.ndarray, method: str | None = None) -> np.ndarray:
        """P(same) for each pair of rows of ``a`` and ``b`` (or one pair of vectors): (N,) array."""
        method = method or self.method
        if method == "distance":
            d = np.linalg.norm(np.atleast_2d(a).astype(np.float64) - np.atleast_2d(b), axis=1)
            return np.atleast_1d(self.distance.probability(d))
        if method not in self.heads:
            raise VisageError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
        return self.heads[method].probability(a, b)

    def decide(self, a: np.ndarray, b: np.ndarray, method: str | None = None) -> Verification:
        """Same person? For ``distance`` ``same`` is ``distance <= threshold`` (the target-FAR
        threshold); for ``abs`` and ``chi2`` it is ``probability >= 0.5``. ``threshold`` always
        reports the distance threshold, ``probability`` the chosen method's P(same)."""
        method = method or self.method
        d = float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
        p = float(self.probability(a, b, method)[0])
        same = d <= self.distance.threshold if method == "distance" else p >= 0.5
        return Verification(distance=d, threshold=self.distance.threshold, same=bool(same), probability=p,
                            encoder=self.distance.encoder_key or self.encoder, embedding=self.encoder)

    def distance_calibration(self) -> Calibration:
        """The distance rule as a plain :class:`~visage.evaluation.verification.Calibration` (for ``verify``)."""
        return self.distance

    def to_dict(self) -> dict:
        return {"format": FORMAT, "encoder": self.encoder, "method": self.method, "target_far": self.target_far,
                "distance": asdict(self.distance), "heads": {k: asdict(h) for k, h in self.heads.items()},
                "report": self.report}

    def save(self, path: str | Path) -> Path:
        """Write the calibration as JSON; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> PairCalibration:
        """Read a file written by :meth:`save`; raises VisageError naming the file otherwise."""
        try:
            data = json.loads(Path(path).read_text())
            if data.get("format") != FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, not {FORMAT!r}")
            return cls(encoder=data["encoder"], heads={k: PairHead(**h) for k, h in data["heads"].items()},
                       distance=Calibration(**data["distance"]), target_far=float(data["target_far"]),
                       method=data["method"], report=data.get("report", {}))
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise VisageError(f"{path}: not a visage pair calibration ({exc})") from None


def load_pair_calibration(path: str | Path) -> PairCalibration:
    """The :class:`PairCalibration` saved at ``path`` by ``visage calibrate``."""
    return PairCalibration.load(path)


#: What a command that decides accepts as its calibration: a fitted object, or a file holding one.
CalibrationSource = Calibration | PairCalibration | str | os.PathLike


def load_calibration(path: str | os.PathLike) -> Calibration:
    """The distance rule saved at ``path``: the folder ``visage calibrate -o DIR`` wrote, its
    ``calibration.json`` (:class:`PairCalibration`) or its ``distance_calibration.json`` (a plain
    :class:`~visage.evaluation.verification.Calibration`). Raises VisageError naming the file."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "calibration.json"
    if not path.is_file():
        raise InvalidArgument(f"{path}: no such calibration file; `visage calibrate PAIRS.tsv -o DIR` writes "
                              "DIR/calibration.json")
    try:
        kind = json.loads(path.read_text()).get("format")
    except (OSError, ValueError, AttributeError) as exc:
        raise VisageError(f"{path}: not a visage calibration file ({exc}); give the calibration.json that "
                          "`visage calibrate PAIRS.tsv -o DIR` writes") from None
    return PairCalibration.load(path).distance if kind == FORMAT else Calibration.load(path)


def calibration_for(encoder: str | os.PathLike, embedding: str, calibration: CalibrationSource | None = None
                    ) -> Calibration:
    """The distance rule (threshold, open-set threshold, P(same)) that decides for ``encoder``.

    ``encoder`` is the encoder as its user named it (``dlib+facenet``, ``model.pt``) and
    ``embedding`` its embedding space (the encoder's ``.name``). ``calibration`` is a
    :class:`~visage.evaluation.verification.Calibration`, a :class:`PairCalibration` (its distance
    rule) or a file :func:`load_calibration` reads; None takes the calibration shipped for that
    space. Returns the calibration; one fitted for another encoder raises
    :class:`~visage.errors.InvalidArgument`, and an encoder without a shipped one (a trained model)
    raises :class:`~visage.errors.InvalidArgument` saying how to fit one.
    """
    if calibration is None:
        if embedding not in shipped_calibrations():
            raise InvalidArgument(f"no calibration ships for encoder {encoder} ({embedding}): fit one on labelled "
                                  f"pairs with `visage calibrate PAIRS.tsv --encoder {encoder} -o DIR` and pass "
                                  "--calibration DIR/calibration.json")
        return default_calibration(embedding)
    source = ""
    if isinstance(calibration, PairCalibration):
        calibration = calibration.distance
    elif not isinstance(calibration, Calibration):
        source = str(calibration)
        calibration = load_calibration(calibration)
    return check_calibration(calibration, embedding, str(encoder), source)


def fit_pair_calibration(a: np.ndarray, b: np.ndarray, same: np.ndarray, encoder: str, target_far: float = 1e-2,
                         method: str = "abs", source: str = "", encoder_key: str = "") -> PairCalibration:
    """Fit the ``abs`` and ``chi2`` heads and the distance rule at ``target_far`` on all given pairs.

    ``encoder`` is the embedding space (the encoder's ``.name``); ``encoder_key`` the encoder as its
    user named it, kept for messages. Returns the :class:`PairCalibration`.
    """
    if method not in METHODS:
        raise VisageError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    y = np.asarray(same, bool)
    _need_both(y)
    d = np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=1)
    curve = fit_calibration(d, y, encoder, source)
    distance = Calibration(encoder=encoder, threshold=round(distance_threshold_at_far(d, y, target_far), 6),
                           slope=curve.slope, intercept=curve.intercept,
                           source=f"{source}; threshold for FAR <= {target_far:g}".lstrip("; "),
                           encoder_key=encoder_key)
    heads = {f: fit_pair_head(a, b, y, f) for f in FEATURES}
    return PairCalibration(encoder, heads, distance, target_far, method)


def out_of_fold_scores(a: np.ndarray, b: np.ndarray, same: np.ndarray, folds: int = 10, seed: int = 0
                       ) -> dict[str, np.ndarray]:
    """P(same) of every pair from models fitted on the other folds, for each method (stratified folds)."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(same, bool)
    d = np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=1)
    out = {m: np.zeros(len(y)) for m in METHODS}
    n_splits = int(min(folds, y.sum(), (~y).sum()))
    for train, test in StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(d, y):
        for f in FEATURES:
            out[f][test] = fit_pair_head(a[train], b[train], y[train], f, seed).probability(a[test], b[test])
        out["distance"][test] = fit_calibration(d[train], y[train], "").probability(d[test])
    return out


def calibration_report(a: np.ndarray, b: np.ndarray, same: np.ndarray, out_dir: str | Path | None = None,
                       folds: int = 10, fars=DEFAULT_FARS, title: str = "") -> dict:
    """Out-of-fold AUC, EER, TAR@FAR, accuracy and calibration error of each method.

    With ``out_dir`` also draws ``roc.png``, ``det.png`` and ``reliability.png`` there. Returns a
    dict keyed by method; the distance method's ranking is the distance itself, so its ROC needs
    no fitting, and its accuracy is LFW's (threshold chosen on the other folds).
    """
    y = np.asarray(same, bool)
    _need_both(y)
    d = np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=1)
    probs = out_of_fold_scores(a, b, y, folds)
    scores = {"abs": probs["abs"], "chi2": probs["chi2"], "distance": -d}
    report = {}
    for m in METHODS:
        entry = verification_report(scores[m], y, fars)
        entry["accuracy"] = round(cross_validated_accuracy(d, y, folds) if m == "distance"
                                  else float(np.mean((probs[m] >= 0.5) == y)), 6)
        entry["ece"] = round(expected_calibration_error(probs[m], y), 6)
        report[m] = entry
    if out_dir is not None:
        _plot(scores, probs, y, Path(out_dir), title, fars)
    return report


def _plot(scores: dict, probs: dict, y: np.ndarray, out: Path, title: str, fars=DEFAULT_FARS) -> None:
    from .plots import plot_det_curves, plot_reliability, plot_roc

    labels = {"abs": "logistic |f_i − f_j|", "chi2": "logistic χ²", "distance": "distance threshold"}
    plot_roc({labels[m]: roc(scores[m], y)[:2] for m in METHODS}, out / "roc.png", title=f"ROC {title}".strip(),
             floor=0.5 / max((~y).sum(), 1))
    plot_det_curves({labels[m]: det_points(scores[m][y], scores[m][~y]) for m in METHODS}, out / "det.png",
                    xlabel="false-accept rate (%)", ylabel=f"false-reject rate (%)  [n={int(y.sum())} same-person pairs]",
                    title=f"DET {title}".strip(), marks=fars)
    plot_reliability({labels[m]: probs[m] for m in METHODS}, y, out / "reliability.png")


@dataclass(frozen=True)
class PairEmbeddings:
    """Embeddings of the pairs of a pairs TSV whose two photos both have a face."""

    a: np.ndarray
    b: np.ndarray
    same: np.ndarray
    dropped: int
    #: The embedding space (the encoder's ``.name``).
    encoder: str
    #: (img_a, img_b) paths of the kept pairs, in order.
    keys: list
    #: The encoder as its user named it (a registry key or a model file).
    encoder_key: str = ""

    def subset(self, keys: set) -> PairEmbeddings:
        """Only the pairs whose (img_a, img_b) is in ``keys``."""
        mask = np.array([k in keys for k in self.keys], bool)
        return PairEmbeddings(self.a[mask], self.b[mask], self.same[mask], self.dropped + int((~mask).sum()),
                              self.encoder, [k for k, m in zip(self.keys, mask) if m], self.encoder_key)


def embed_pairs(tsv: str | Path, encoder: str = DEFAULT_ENCODER, detector: str = DEFAULT_DETECTOR, progress: bool = True
                ) -> PairEmbeddings:
    """Encode the photos of ``tsv`` (img_a, img_b, same) once each.

    ``encoder`` is a registered name or a trained ``.pt`` model. Pairs where either photo has no
    face are dropped (and counted).
    """
    from ..encoders import get_encoder
    from .pairs import encode_pair_images, load_pairs

    pairs = load_pairs(tsv)
    vectors = encode_pair_images(pairs, encoder, detector, progress=progress)
    found = {path: v for path, v in vectors.items() if v is not None}
    kept = [p for p in pairs if p.a in found and p.b in found]
    if not kept:
        raise VisageError(f"{tsv}: no pair with a face in both photos")
    # The embedding space's name, which a trained model's carries its weights' digest in: a
    # calibration fitted here is then accepted for that model only.
    name = get_encoder(encoder).name
    return PairEmbeddings(np.stack([found[p.a] for p in kept]), np.stack([found[p.b] for p in kept]),
                          np.array([p.same for p in kept]), len(pairs) - len(kept), name,
                          [(p.a, p.b) for p in kept], str(encoder))


def calibrate_pairs(tsv: str | Path, out_dir: str | Path, encoder: str = DEFAULT_ENCODER, detector: str = DEFAULT_DETECTOR,
                    target_far: float = 1e-2, method: str = "abs", folds: int = 10, progress: bool = True
                    ) -> PairCalibration:
    """Everything ``visage calibrate`` does: fit on ``tsv``, write the report and the calibration.

    Writes ``calibration.json`` (:class:`PairCalibration`), ``distance_calibration.json`` (a plain
    :class:`~visage.evaluation.verification.Calibration`), ``report.json`` and the ROC, DET and reliability
    PNGs into ``out_dir``. Returns the fitted :class:`PairCalibration` (with its report).
    """
    data = embed_pairs(tsv, encoder, detector, progress)
    out = Path(out_dir)
    source = pairs_source(data.same, tsv)
    cal = fit_pair_calibration(data.a, data.b, data.same, data.encoder, target_far, method, source, data.encoder_key)
    cal.report = {"pairs_file": str(tsv), "encoder": data.encoder_key, "embedding": data.encoder,
                  "pairs_without_face": data.dropped,
                  "target_far": target_far, "distance_threshold": cal.distance.threshold,
                  "evaluation": f"{folds}-fold stratified, out of fold",
                  "methods": calibration_report(data.a, data.b, data.same, out, folds, title=f"({data.encoder})")}
    cal.save(out / "calibration.json")
    cal.distance.save(out / "distance_calibration.json")
    (out / "report.json").write_text(json.dumps(cal.report, indent=2) + "\n")
    return cal


def evaluate_encoders(tsv: str | Path, encoders: list[str], detector: str = DEFAULT_DETECTOR, folds: int = 10,
                      fars=DEFAULT_FARS, progress: bool = True) -> dict:
    """LFW protocol per encoder, side by side: 10-fold accuracy, AUC, EER and TAR@FAR on distances.

    Every encoder is scored on the same pairs: those where all of them found a face in both photos.
    Returns ``{"pairs": n, "pairs_without_face": m, "encoders": {name: metrics}}``.
    """
    if not encoders:
        raise VisageError("name at least one encoder")
    embedded = {e: embed_pairs(tsv, e, detector, progress) for e in encoders}
    common = set.intersection(*(set(data.keys) for data in embedded.values()))
    results = {}
    for e, data in embedded.items():
        data = data.subset(common)
        d = np.linalg.norm(data.a.astype(np.float64) - data.b, axis=1)
        results[e] = {"encoder": data.encoder, "accuracy": round(cross_validated_accuracy(d, data.same, folds), 6),
                      **verification_report(-d, data.same, fars),
                      "threshold": round(best_threshold(d, data.same), 6)}
    some = next(iter(embedded.values()))
    return {"pairs_file": str(tsv), "pairs": len(common), "pairs_without_face": some.dropped + len(some.keys) - len(common),
            "folds": folds, "encoders": results}


def pairs_source(same: np.ndarray, tsv: str | Path) -> str:
    """The ``source`` of a calibration fitted on pairs of ``tsv``: "N pairs (S same, D different) of NAME"."""
    same = np.asarray(same, bool)
    return f"{len(same)} pairs ({int(same.sum())} same, {int((~same).sum())} different) of {Path(tsv).name}"


def update_calibration_table(calibration: Calibration, table: str | Path) -> dict:
    """Write ``calibration`` as its encoder's entry of the calibration table at ``table``; returns the entry.

    The table is the JSON that :func:`~visage.evaluation.verification.default_calibration` reads
    (encoder name → fields). The open-set threshold (``identify_threshold``, ``identify_source``)
    is chosen elsewhere (``bench/bench_gallery_accuracy.py``), so an existing one is kept. The file
    is replaced at once: readers never see a half-written table.
    """
    table = Path(table)
    entries = json.loads(table.read_text())
    name = calibration.encoder
    kept = {k: entries.get(name, {}).get(k) for k in ("identify_threshold", "identify_source")}
    entries[name] = {k: v for k, v in vars(calibration).items()
                     if k not in ("encoder", "encoder_key") and v not in (None, "")}
    entries[name].update({k: v for k, v in kept.items() if v})
    tmp = table.with_suffix(".tmp")
    tmp.write_text(json.dumps(entries, indent=2) + "\n")
    tmp.replace(table)
    return entries[name]


def _need_both(y: np.ndarray) -> None:
    if y.all() or not y.any():
        raise VisageError("fitting needs both same-person and different-person pairs")
