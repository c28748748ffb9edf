"""The v2 cue model (kept for comparison): one face, a linear model over the hand-made cues in :mod:`.features`.

The model ships with the package as plain arrays (``visage/data/liveness_cues_v2.npz``): feature
names, the standardisation, the logistic-regression weights and the operating threshold. It was
trained (by the v2 training script, now replaced) on bona-fide photos and on print and replay
attacks that :mod:`visage.liveness.simulate` made from them — simulated attacks, not real ones.
No decision uses it any more; ``bench/bench_liveness.py`` keeps it as the baseline.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..faces.types import Face
from .features import face_features, feature_names

#: File name of the shipped model inside ``visage/data``.
MODEL_FILE = "liveness_cues_v2.npz"
#: Cue groups reported as evidence, by feature-name prefix.
CUES = ("lbp", "freq", "spec", "sharp", "halftone", "colour", "edge")


@dataclass(frozen=True)
class PassiveModel:
    """A standardised logistic regression: P(live) = sigmoid(w · (x − mean) / scale + b)."""

    names: list[str]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float
    version: str
    info: dict = field(default_factory=dict)

    def logit(self, features: np.ndarray) -> float:
        """The log-odds of live for one feature vector."""
        return float(self._z(features) @ self.weights + self.bias)

    def contributions(self, features: np.ndarray) -> dict[str, float]:
        """Each cue group's share of the log-odds (positive speaks for live)."""
        terms = self._z(features) * self.weights
        return {cue: float(sum(t for n, t in zip(self.names, terms) if n.startswith(cue + "_"))) for cue in CUES}

    def _z(self, features: np.ndarray) -> np.ndarray:
        if features.shape != self.mean.shape:
            raise ModelError(f"liveness model expects {len(self.mean)} features, got {features.shape}")
        return (features - self.mean) / self.scale

    def save(self, path: str | Path) -> None:
        """Write the model as an .npz of arrays (no pickle)."""
        import json

        np.savez_compressed(path, names=np.array(self.names), mean=self.mean, scale=self.scale,
                            weights=self.weights, bias=np.array(self.bias), threshold=np.array(self.threshold),
                            version=np.array(self.version), info=np.array(json.dumps(self.info)))


def load_model(path: str | Path | None = None) -> PassiveModel:
    """The passive model at ``path``, or the one shipped with visage; raises ModelError if unusable."""
    if path is None:
        return _shipped_model()
    return _read_model(Path(path))


@functools.cache
def _shipped_model() -> PassiveModel:
    return _read_model(Path(str(resources.files("visage") / "data" / MODEL_FILE)))


def _read_model(path: Path) -> PassiveModel:
    import json

    try:
        with np.load(path, allow_pickle=False) as data:
            model = PassiveModel(
                names=[str(n) for n in data["names"]], mean=data["mean"].astype(np.float64),
                scale=data["scale"].astype(np.float64), weights=data["weights"].astype(np.float64),
                bias=float(data["bias"]), threshold=float(data["threshold"]), version=str(data["version"]),
                info=json.loads(str(data["info"])))
    except FileNotFoundError:
        raise ModelError(f"{path}: liveness model not found; train it with scripts/train_liveness.py") from None
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"{path}: not a visage liveness model ({exc})") from None
    if model.names != feature_names():
        raise ModelError(f"{path}: liveness model {model.version} was trained on other features than this "
                         "visage computes; retrain it with scripts/train_liveness.py")
    return model


@dataclass(frozen=True)
class PassiveResult:
    """The passive check on one face: log-odds and probability of live, and each cue's share."""

    logit: float
    probability: float
    cues: dict[str, float]

    def to_dict(self) -> dict:
        return {"logit": round(self.logit, 4), "probability": round(self.probability, 4),
                "cues": {k: round(v, 4) for k, v in self.cues.items()}}


def passive_check(pixels: np.ndarray, face: Face, model: PassiveModel | None = None) -> PassiveResult:
    """Score the face ``face`` in the RGB uint8 image ``pixels``; returns a :class:`PassiveResult`."""
    model = model or load_model()
    x = face_features(pixels, face.box)
    logit = model.logit(x)
    return PassiveResult(logit=logit, probability=float(1.0 / (1.0 + np.exp(-logit))),
                         cues=model.contributions(x))
