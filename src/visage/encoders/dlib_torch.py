"""dlib's ResNet face encoder run by PyTorch: the same 128-d embeddings as ``dlib``, batched and faster."""

from __future__ import annotations

import numpy as np
import torch

from ..faces.align import dlib_chips
from ..faces.types import Face
from ..media.images import Image
from ..nets.dlib_resnet import CHIP_SIZE, load_dlib_resnet
from .dlib_resnet import CHIP_PADDING

#: Chips per forward pass; larger batches gain little on a few cores and cost memory.
DEFAULT_BATCH_SIZE = 16


class DlibTorchEncoder:
    """128-d embeddings from ``dlib_face_recognition_resnet_model_v1``, converted to PyTorch.

    Same chips and same embedding space as :class:`~visage.encoders.dlib_resnet.DlibResNetEncoder`
    (the numbers agree with dlib's to about 1e-6), so embeddings from either can be compared.
    """

    name = "dlib-resnet-v1"
    dim = 128
    chip_size = CHIP_SIZE

    def __init__(self, batch_size: int = DEFAULT_BATCH_SIZE):
        self.batch_size = batch_size
        #: The network with affines folded into the convs, channels-last (see ``for_inference``).
        self.net = load_dlib_resnet().for_inference()

    def chips(self, image: Image, faces: list[Face]) -> np.ndarray:
        return dlib_chips(image.pixels, faces, CHIP_SIZE, CHIP_PADDING)

    def encode_chips(self, chips: np.ndarray) -> np.ndarray:
        """Embeddings of (N, 150, 150, 3) uint8 RGB chips: (N, 128) float32."""
        chips = np.asarray(chips)
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"expected chips of shape (N, {CHIP_SIZE}, {CHIP_SIZE}, 3), got {chips.shape}")
        out = np.zeros((len(chips), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(chips), self.batch_size):
                batch = self.net.as_input(chips[start:start + self.batch_size])
                out[start:start + len(batch)] = self.net(batch).numpy()
        return out
