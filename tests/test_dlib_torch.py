"""The PyTorch port of dlib's face encoder gives dlib's numbers, batches, and refuses broken files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import visage
from visage.encoders import get_encoder
from visage.encoders.dlib_resnet import DlibResNetEncoder
from visage.encoders.dlib_torch import DlibTorchEncoder
from visage.errors import ModelError
from visage.media.images import load_image
from visage.models import model_path
from visage.nets import dlib_resnet
from visage.nets.dlib_resnet import read_dlib_resnet

TOLERANCE = 1e-4  # per element, as dlib's own float order is not ours


@pytest.fixture(scope="module")
def dlib_encoder() -> DlibResNetEncoder:
    return DlibResNetEncoder()


@pytest.fixture(scope="module")
def torch_encoder() -> DlibTorchEncoder:
    torch.set_num_threads(2)
    return DlibTorchEncoder()


def _first_face_chip(encoder, path) -> np.ndarray:
    image = load_image(path)
    faces = visage.detect(image, landmarks68=False)
    assert faces, f"no face found in {path}"
    return encoder.chips(image, faces[:1])


@pytest.fixture(scope="module")
def dev_chips(shared_data, dlib_encoder) -> np.ndarray:
    """One chip from each of 10 people across the dev set's sources."""
    folders = sorted(p for p in (shared_data / "faces").iterdir() if p.is_dir())[::2]
    chips = [_first_face_chip(dlib_encoder, sorted(f.iterdir())[0]) for f in folders]
    return np.concatenate(chips)


@pytest.mark.slow
def test_matches_dlib_on_dev_faces(dev_chips, dlib_encoder, torch_encoder):
    expected = dlib_encoder.encode_chips(dev_chips)
    got = torch_encoder.encode_chips(dev_chips)
    assert got.shape == expected.shape == (len(dev_chips), 128) and got.dtype == np.float32
    assert np.abs(got - expected).max() <= TOLERANCE
    # Pairwise distances, which the verifier thresholds, move by far less than any margin.
    d_expected = np.linalg.norm(expected[:, None] - expected[None], axis=-1)
    d_got = np.linalg.norm(got[:, None] - got[None], axis=-1)
    assert np.abs(d_got - d_expected).max() <= 1e-5
    assert d_expected[np.triu_indices(len(dev_chips), 1)].min() > 0.3  # different people stay apart


def test_matches_dlib_on_packaged_photo(dlib_encoder, torch_encoder):
    """Grace Hopper's portrait ships with matplotlib, so this runs without the dev set."""
    from matplotlib import cbook

    chip = _first_face_chip(dlib_encoder, cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, size=(1, 150, 150, 3), dtype=np.uint8)  # any input, not just faces
    chips = np.concatenate([chip, noise])
    expected = dlib_encoder.encode_chips(chips)
    got = torch_encoder.encode_chips(chips)
    assert np.abs(got - expected).max() <= TOLERANCE
    assert np.linalg.norm(got[0] - got[1]) > 0.3


def test_batches_give_the_same_as_one_by_one(torch_encoder):
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, size=(1, 150, 150, 3), dtype=np.uint8)
    # Varied chips: the same picture shifted and with noise added.
    chips = np.stack([np.clip(np.roll(base[0], 3 * i, axis=1).astype(int) + rng.integers(-20, 20, base.shape[1:]),
                              0, 255).astype(np.uint8) for i in range(5)])
    batched = DlibTorchEncoder(batch_size=4).encode_chips(chips)  # a full batch and a partial one
    single = np.concatenate([torch_encoder.encode_chips(c[None]) for c in chips])
    assert np.abs(batched - single).max() <= 1e-5
    assert torch_encoder.encode_chips(chips[:0]).shape == (0, 128)


def test_registered_in_the_same_embedding_space():
    encoder = get_encoder("dlib-torch")
    assert isinstance(encoder, DlibTorchEncoder)
    assert (encoder.name, encoder.dim) == (DlibResNetEncoder.name, DlibResNetEncoder.dim)
    with pytest.raises(ValueError, match="150, 150, 3"):
        encoder.encode_chips(np.zeros((1, 112, 112, 3), np.uint8))


def test_layers_can_be_inspected():
    net = dlib_resnet.load_dlib_resnet()
    x = torch.full((1, 3, 150, 150), 128.0)
    with torch.inference_mode():
        acts = net.extract(x, ["pool1", "stages.3.0", "stages.4.0", "fc"])
        final = net(x)
    # dlib geometry: unpadded strided convs and pools; shortcuts larger than the main branch.
    assert acts["pool1"].shape == (1, 32, 35, 35)
    assert acts["stages.3.0"].shape == (1, 256, 4, 4)
    assert acts["stages.4.0"].shape == (1, 256, 2, 2)
    assert torch.equal(acts["fc"], final)
    with pytest.raises(ValueError, match="unknown layer"):
        net.extract(x, ["conv9"])


def test_inference_copy_folds_affines_and_keeps_the_function():
    net = dlib_resnet.load_dlib_resnet()
    fast = net.for_inference()
    assert isinstance(net.stages[1][0].affine2, dlib_resnet.Affine)  # the original is untouched
    assert all(isinstance(getattr(owner, a), torch.nn.Identity) for owner, _, a in fast.conv_affine_pairs())
    chips = np.random.default_rng(5).integers(0, 256, size=(2, 150, 150, 3), dtype=np.uint8)
    with torch.inference_mode():
        slow_out = net(net.as_input(chips))
        fast_out = fast(fast.as_input(chips))
    assert (fast_out - slow_out).abs().max() <= 1e-5


def test_add_padded_zero_fills_like_dlib():
    a = torch.ones(1, 2, 1, 1)
    b = torch.full((1, 1, 2, 2), 10.0)
    out = dlib_resnet.add_padded(a, b)
    assert out.shape == (1, 2, 2, 2)
    assert out[0, 0].tolist() == [[11.0, 10.0], [10.0, 10.0]]
    assert out[0, 1].tolist() == [[1.0, 0.0], [0.0, 0.0]]


# ------------------------------------------------------------------------------------------
# The reader


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return model_path("dlib_resnet_encoder").read_bytes()


def test_reader_gives_every_weight():
    state = read_dlib_resnet(model_path("dlib_resnet_encoder"))
    assert set(state) == set(dlib_resnet.DlibFaceResNet().state_dict())
    assert sum(t.numel() for t in state.values()) == 5_614_595
    assert state["input_mean"].tolist() == pytest.approx([122.782, 117.001, 104.298], abs=1e-4)
    assert state["conv1.weight"].shape == (32, 3, 7, 7) and state["fc.weight"].shape == (128, 256)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"\x00", "trailing bytes"),
        (lambda b: b.replace(b"affine_", b"affinx_", 1), "expected 'affine_'"),
        (lambda b: b.replace(b"\x01\x05con_4\x01\x02", b"\x01\x05con_4\x01\x01", 1), "tensor format version"),
        (lambda b: b"\x00" * 64, "integer control byte"),
    ],
    ids=["half", "last-byte", "trailing", "layer-name", "tensor-version", "zeros"],
)
def test_reader_rejects_damaged_files(tmp_path, model_bytes, damage, message):
    path = tmp_path / "damaged.dat"
    path.write_bytes(damage(model_bytes))
    with pytest.raises(ModelError, match=message) as info:
        read_dlib_resnet(path)
    assert str(path) in str(info.value)


def test_reader_rejects_missing_file(tmp_path):
    with pytest.raises(ModelError, match="cannot read"):
        read_dlib_resnet(tmp_path / "absent.dat")


def test_conversion_is_cached_and_a_torn_cache_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("VISAGE_HOME", str(tmp_path))
    cached = dlib_resnet.converted_path()
    assert cached.parent == tmp_path / "converted" and not cached.exists()
    first = dlib_resnet.load_dlib_resnet()
    assert cached.is_file()
    cached.write_bytes(b"torn")
    second = dlib_resnet.load_dlib_resnet()
    assert torch.load(cached, weights_only=True).keys() == first.state_dict().keys()
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key])
