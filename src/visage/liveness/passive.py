"""The passive check: one image, one face, a small CNN trained on real prints and screen replays.

The model (v3) is two MiniFASNet branches (:mod:`visage.nets.minifasnet`), one on a 2.7× and one
on a 4× context crop around the face (:mod:`.crops`), fine-tuned from Silent-Face-Anti-Spoofing's
released weights (Apache-2.0) on the real attack stills of ``../shared/data/pad`` by
``scripts/train_liveness.py``. Each branch gives the log-odds of "real"; the model's log-odds is
their mean. It ships inside the package as plain arrays (``visage/data/liveness_cnn_v3.npz``: every
tensor of both branches, the scales, the operating threshold and a JSON model card), no pickle.

When the detector finds no face in a picture that is itself a tight face crop (small and about
square), the whole picture is judged as the face, and the evidence says so.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..faces.types import Box
from .crops import context_crop, whole_image_box

#: File name of the shipped model inside ``visage/data``.
MODEL_FILE = "liveness_cnn_v3.npz"
#: A picture with no detected face is judged whole when it is at most this long on its longer side
#: and no more elongated than :data:`TIGHT_CROP_MAX_ASPECT`: a face crop, not a camera frame.
TIGHT_CROP_MAX_SIDE = 512
TIGHT_CROP_MAX_ASPECT = 1.6
#: ...and shows something: a blank or nearly uniform picture (grey-level standard deviation under
#: this) is no face. Every tight crop of the pad set is above 6.
TIGHT_CROP_MIN_CONTRAST = 4.0


@dataclass(frozen=True)
class FaceRegion:
    """Where the passive model looks: a detected face box, or the whole picture of a tight crop."""

    box: Box
    whole_image: bool
    detected: int

    def to_dict(self) -> dict:
        out: dict = {"found": self.detected, "box": self.box.to_dict()}
        if self.whole_image:
            out["whole_image"] = True
            out["note"] = "no face detected; the picture looks like a tight face crop, so all of it was judged"
        return out


def face_region(pixels: np.ndarray, boxes: list[Box]) -> FaceRegion | None:
    """The largest of ``boxes``; with none, the whole picture when it is a tight crop (small, about
    square, not blank); else None."""
    if boxes:
        return FaceRegion(max(boxes, key=lambda b: b.area), False, len(boxes))
    h, w = pixels.shape[:2]
    if max(h, w) > TIGHT_CROP_MAX_SIDE or max(h, w) / max(min(h, w), 1) > TIGHT_CROP_MAX_ASPECT:
        return None
    grey = pixels.mean(axis=2) if pixels.ndim == 3 else pixels
    if float(np.std(grey)) < TIGHT_CROP_MIN_CONTRAST:
        return None
    return FaceRegion(whole_image_box(h, w), True, 0)


@dataclass(frozen=True)
class PassiveModel:
    """Branches of MiniFASNet, one per context scale; log-odds of live = mean of the branches'."""

    branches: dict  # scale (float) → visage.nets.minifasnet.MiniFASNet, in eval mode
    threshold: float
    version: str
    info: dict = field(default_factory=dict)

    @property
    def scales(self) -> tuple[float, ...]:
        return tuple(sorted(self.branches))

    def branch_logits(self, crops: dict[float, np.ndarray]) -> np.ndarray:
        """(N, branches) live log-odds for ``crops``: scale → (N, 80, 80, 3) RGB uint8 crops."""
        import torch

        from ..nets.minifasnet import live_logit

        columns = []
        with torch.inference_mode():
            for scale in self.scales:
                x = to_network_input(crops[scale])
                columns.append(live_logit(self.branches[scale](x)).numpy())
        return np.stack(columns, axis=1).astype(np.float64)

    def logits(self, crops: dict[float, np.ndarray]) -> np.ndarray:
        """(N,) live log-odds of the model for a batch of crops."""
        return self.branch_logits(crops).mean(axis=1)

    def crops(self, pixels: np.ndarray, box: Box) -> dict[float, np.ndarray]:
        """Every branch's crop of one face, as a batch of one."""
        return {s: context_crop(pixels, box, s)[None] for s in self.scales}

    def save(self, path: str | Path) -> None:
        """Write every tensor of every branch as plain arrays with the card (no pickle)."""
        arrays = {f"{scale:g}/{name}": value.detach().cpu().numpy()
                  for scale, net in self.branches.items() for name, value in net.state_dict().items()}
        meta = {"threshold": self.threshold, "version": self.version, "scales": list(self.scales), "info": self.info}
        np.savez_compressed(path, **arrays, meta=np.array(json.dumps(meta)))


def to_network_input(crops: np.ndarray):
    """(N, 80, 80, 3) RGB uint8 → the float tensor MiniFASNet takes: (N, 3, 80, 80) BGR, 0–255."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2))).float()


def load_model(path: str | os.PathLike | None = None) -> PassiveModel:
    """The passive model at ``path``, or the one shipped with visage; raises ModelError if unusable."""
    if path is None:
        return _shipped_model()
    return _read_model(Path(path))


@functools.cache
def _shipped_model() -> PassiveModel:
    return _read_model(Path(str(resources.files("visage") / "data" / MODEL_FILE)))


def _read_model(path: Path) -> PassiveModel:
    import torch

    from ..nets.minifasnet import from_state_dict

    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            tensors = {k: torch.from_numpy(data[k].copy()) for k in data.files if k != "meta"}
        branches = {}
        for scale in meta["scales"]:
            prefix = f"{scale:g}/"
            branches[float(scale)] = from_state_dict({k[len(prefix):]: v for k, v in tensors.items()
                                                      if k.startswith(prefix)})
    except FileNotFoundError:
        raise ModelError(f"{path}: liveness model not found; train it with scripts/train_liveness.py") from None
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{path}: not a visage liveness model ({exc})") from None
    return PassiveModel(branches, float(meta["threshold"]), str(meta["version"]), meta.get("info", {}))


@dataclass(frozen=True)
class PassiveResult:
    """The passive check on one face: log-odds and probability of live, and each branch's log-odds."""

    logit: float
    probability: float
    branches: dict[str, float]

    def to_dict(self) -> dict:
        return {"logit": round(self.logit, 4), "probability": round(self.probability, 4),
                "branches": {k: round(v, 4) for k, v in self.branches.items()}}


def passive_check(pixels: np.ndarray, box: Box, model: PassiveModel | None = None) -> PassiveResult:
    """Score the face in ``box`` of the RGB uint8 image ``pixels``; returns a :class:`PassiveResult`.

    ``probability`` is of live at the model's own operating point: 0.5 there.
    """
    model = model or load_model()
    per_branch = model.branch_logits(model.crops(pixels, box))[0]
    logit = float(per_branch.mean())
    return PassiveResult(logit=logit, probability=1.0 / (1.0 + math.exp(-(logit - model.threshold))),
                         branches={f"context_{s:g}x": float(v) for s, v in zip(model.scales, per_branch)})
