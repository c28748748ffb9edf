"""The Siamese verification head: "same person?" as binary classification of a pair of embeddings.

Three ways to decide on a pair (f_i, f_j), each fitted on labelled pairs:

- ``abs``: logistic regression on the element-wise ``|f_i − f_j|`` (one weight per dimension);
- ``chi2``: logistic regression on the χ² terms ``(f_i − f_j)² / (|f_i| + |f_j|)``. DeepFace
  defines them for non-negative features; embeddings here are signed, so the denominator uses
  absolute values (a small ε keeps it finite);
- ``distance``: the plain Euclidean distance with the threshold that meets a target false-accept
  rate, and a logistic curve P(same | distance) (a :class:`visage.verification.Calibration`).

:func:`fit_pair_calibration` fits all three and :class:`PairCalibration` (JSON on disk) applies
them. :func:`calibration_report` measures them out of fold (ROC and DET curves as PNG, EER, TAR at
FAR 1e-2 and 1e-3, reliability) and :func:`evaluate_encoders` compares encoders on the LFW protocol.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .encoders import DEFAULT_ENCODER
from .errors import VisageError
from .train.metrics import DEFAULT_FARS, expected_calibration_error, roc, verification_report
from .verification import Calibration, Verification, best_threshold, cross_validated_accuracy, fit_calibration

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
    allowed = int(np.floor(far * len(impostors) + 1e-9))
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
    :class:`visage.verification.Verification`), or take the distance rule alone as a
    :class:`visage.verification.Calibration` with :meth:`distance_calibration`.
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
                            encoder=self.encoder)

    def distance_calibration(self) -> Calibration:
        """The distance rule as a plain :class:`~visage.verification.Calibration` (for ``verify``)."""
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
    def load(cls, path: str | Path) -> "PairCalibration":
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


def fit_pair_calibration(a: np.ndarray, b: np.ndarray, same: np.ndarray, encoder: str, target_far: float = 1e-2,
                         method: str = "abs", source: str = "") -> PairCalibration:
    """Fit the ``abs`` and ``chi2`` heads and the distance rule at ``target_far`` on all given pairs."""
    if method not in METHODS:
        raise VisageError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    y = np.asarray(same, bool)
    _need_both(y)
    d = np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=1)
    curve = fit_calibration(d, y, encoder, source)
    distance = Calibration(encoder=encoder, threshold=round(distance_threshold_at_far(d, y, target_far), 6),
                           slope=curve.slope, intercept=curve.intercept,
                           source=f"{source}; threshold for FAR <= {target_far:g}".lstrip("; "))
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
        _plot(scores, probs, y, Path(out_dir), title)
    return report


def _plot(scores: dict, probs: dict, y: np.ndarray, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    out.mkdir(parents=True, exist_ok=True)
    labels = {"abs": "logistic |f_i − f_j|", "chi2": "logistic χ²", "distance": "distance threshold"}
    curves = {m: roc(scores[m], y) for m in METHODS}
    floor = 0.5 / max((~y).sum(), 1)

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for m, (far, tar, _) in curves.items():
        ax.step(np.maximum(far, floor), tar, where="post", label=labels[m])
    ax.set(xscale="log", xlabel="false-accept rate", ylabel="true-accept rate", ylim=(0, 1.01),
           title=f"ROC {title}".strip())
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5])
    clip = lambda r: norm.ppf(np.clip(r, 5e-4, 1 - 1e-4))  # noqa: E731  (a rate of 0 sits at the edge)
    for m, (far, tar, _) in curves.items():
        ax.plot(clip(far), clip(1 - tar), label=labels[m])
    ax.set_xticks(clip(ticks), [f"{t:g}" for t in ticks])
    ax.set_yticks(clip(ticks), [f"{t:g}" for t in ticks])
    ax.set(xlim=(clip(4e-4), clip(0.7)), ylim=(clip(4e-4), clip(0.7)),
           xlabel="false-accept rate (normal deviate scale)", ylabel="false-reject rate",
           title=f"DET {title}".strip())
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "det.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4.5))
    edges = np.linspace(0, 1, 11)
    for m in METHODS:
        which = np.clip(np.digitize(probs[m], edges) - 1, 0, 9)
        xs = [probs[m][which == k].mean() for k in range(10) if (which == k).any()]
        ys = [y[which == k].mean() for k in range(10) if (which == k).any()]
        ax.plot(xs, ys, "o-", label=labels[m])
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
    ax.set(xlabel="predicted P(same), out of fold", ylabel="observed fraction same", title="reliability")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=120)
    plt.close(fig)


@dataclass(frozen=True)
class PairEmbeddings:
    """Embeddings of the pairs of a pairs TSV whose two photos both have a face."""

    a: np.ndarray
    b: np.ndarray
    same: np.ndarray
    dropped: int
    encoder: str
    #: (img_a, img_b) paths of the kept pairs, in order.
    keys: list

    def subset(self, keys: set) -> "PairEmbeddings":
        """Only the pairs whose (img_a, img_b) is in ``keys``."""
        mask = np.array([k in keys for k in self.keys], bool)
        return PairEmbeddings(self.a[mask], self.b[mask], self.same[mask], self.dropped + int((~mask).sum()),
                              self.encoder, [k for k, m in zip(self.keys, mask) if m])


def embed_pairs(tsv: str | Path, encoder: str = DEFAULT_ENCODER, detector: str = "hog", progress: bool = True
                ) -> PairEmbeddings:
    """Encode the photos of ``tsv`` (img_a, img_b, same) once each, through the face cache.

    ``encoder`` is a registered name or a trained ``.pt`` model. Pairs where either photo has no
    face are dropped (and counted).
    """
    from .encoders import ENCODERS, get_encoder
    from .pairs import load_pairs
    from .train.data import encode_images

    pairs = load_pairs(tsv)
    vectors = encode_images([p.a for p in pairs] + [p.b for p in pairs], encoder, detector, progress)
    kept = [p for p in pairs if vectors[p.a] is not None and vectors[p.b] is not None]
    if not kept:
        raise VisageError(f"{tsv}: no pair with a face in both photos")
    name = get_encoder(encoder).name if encoder in ENCODERS else Path(encoder).name
    return PairEmbeddings(np.stack([vectors[p.a] for p in kept]), np.stack([vectors[p.b] for p in kept]),
                          np.array([p.same for p in kept]), len(pairs) - len(kept), name,
                          [(p.a, p.b) for p in kept])


def calibrate_pairs(tsv: str | Path, out_dir: str | Path, encoder: str = DEFAULT_ENCODER, detector: str = "hog",
                    target_far: float = 1e-2, method: str = "abs", folds: int = 10, progress: bool = True
                    ) -> PairCalibration:
    """Everything ``visage calibrate`` does: fit on ``tsv``, write the report and the calibration.

    Writes ``calibration.json`` (:class:`PairCalibration`), ``distance_calibration.json`` (a plain
    :class:`~visage.verification.Calibration`), ``report.json`` and the ROC, DET and reliability
    PNGs into ``out_dir``. Returns the fitted :class:`PairCalibration` (with its report).
    """
    data = embed_pairs(tsv, encoder, detector, progress)
    out = Path(out_dir)
    source = (f"{len(data.same)} pairs ({int(data.same.sum())} same, {int((~data.same).sum())} different) "
              f"of {Path(tsv).name}")
    cal = fit_pair_calibration(data.a, data.b, data.same, data.encoder, target_far, method, source)
    cal.report = {"pairs_file": str(tsv), "encoder": data.encoder, "pairs_without_face": data.dropped,
                  "target_far": target_far, "distance_threshold": cal.distance.threshold,
                  "evaluation": f"{folds}-fold stratified, out of fold",
                  "methods": calibration_report(data.a, data.b, data.same, out, folds, title=f"({data.encoder})")}
    cal.save(out / "calibration.json")
    cal.distance.save(out / "distance_calibration.json")
    (out / "report.json").write_text(json.dumps(cal.report, indent=2) + "\n")
    return cal


def evaluate_encoders(tsv: str | Path, encoders: list[str], detector: str = "hog", folds: int = 10,
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


def _need_both(y: np.ndarray) -> None:
    if y.all() or not y.any():
        raise VisageError("fitting needs both same-person and different-person pairs")
