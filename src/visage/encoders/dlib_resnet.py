"""dlib's ResNet face encoder (128-d, 99.38% on LFW as published), run by dlib itself."""

from __future__ import annotations

import threading

import numpy as np

from ..faces.align import dlib_chips
from ..faces.types import Face
from ..media.images import Image
from ..models import model_path

CHIP_SIZE = 150
CHIP_PADDING = 0.25


class DlibResNetEncoder:
    """128-d embeddings from ``dlib_face_recognition_resnet_model_v1`` on 150×150 chips."""

    name = "dlib-resnet-v1"
    dim = 128
    chip_size = CHIP_SIZE

    def __init__(self):
        import dlib

        self._net = dlib.face_recognition_model_v1(str(model_path("dlib_resnet_encoder")))
        self._lock = threading.Lock()  # dlib's networks keep working memory: one caller at a time

    def chips(self, image: Image, faces: list[Face]) -> np.ndarray:
        return dlib_chips(image.pixels, faces, CHIP_SIZE, CHIP_PADDING)

    def encode_chips(self, chips: np.ndarray) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            descriptors = self._net.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])
        return np.asarray([np.asarray(d) for d in descriptors], dtype=np.float32)
