"""The passive check and the fused decision, with the shipped model, on faces it was not trained on.

scripts/train_liveness.py leaves out the identities in TEST_HOLDOUT, so these photos are new to it.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from visage.errors import ModelError, SpoofError, VisageError
from visage.imageio import load_image
from visage.liveness import check, require_live
from visage.liveness.features import face_features, feature_names, lbp_histogram
from visage.liveness.passive import load_model
from visage.liveness.simulate import simulate_live_capture, simulate_print, simulate_replay


@pytest.fixture(scope="module")
def held_out_photo(shared_data):
    """A photo of a person the shipped model never saw, with the face box as fractions."""
    import visage

    pixels = load_image(shared_data / "faces" / "facerec__biden" / "biden.jpg").pixels
    box = visage.detect(pixels, landmarks68=False)[0].box
    h, w = pixels.shape[:2]
    return pixels, (box.left / w, box.top / h, box.right / w, box.bottom / h)


def test_shipped_model_matches_the_features():
    model = load_model()
    assert model.names == feature_names()
    assert np.all(model.scale > 0) and np.isfinite(model.weights).all()
    assert "simulated" in model.info["trained_on"]


def first_attack_with_a_face(pixels, face_box, simulate, seed):
    """The first simulated attack (seeds from ``seed`` on) in which the detector finds the face:
    a print held too far or at too steep an angle has no face to judge, which is another matter."""
    import visage

    for s in range(seed, seed + 10):
        attack = simulate(pixels, np.random.default_rng(s), face_box=face_box)
        if visage.detect(attack, landmarks68=False):
            return attack
    raise AssertionError("no simulated attack showed a detectable face")


def test_real_face_accepted_and_its_simulated_print_refused(held_out_photo):
    pixels, face_box = held_out_photo
    real = check(pixels)
    assert real.live is True, real.reason
    attack = check(first_attack_with_a_face(pixels, face_box, simulate_print, 11))
    assert attack.live is False, attack.reason
    assert attack.score < real.score
    assert set(attack.evidence["passive"]["cues"]) == {"lbp", "freq", "spec", "sharp", "halftone", "colour", "edge"}


def test_simulated_replay_refused(held_out_photo):
    pixels, face_box = held_out_photo
    attack = check(first_attack_with_a_face(pixels, face_box, simulate_replay, 12))
    assert attack.live is False, attack.reason


def test_simulator_is_reproducible_and_changes_the_image(held_out_photo):
    pixels, face_box = held_out_photo
    a = simulate_print(pixels, np.random.default_rng(3), face_box=face_box)
    b = simulate_print(pixels, np.random.default_rng(3), face_box=face_box)
    assert np.array_equal(a, b)
    live = simulate_live_capture(pixels, np.random.default_rng(3))
    assert live.dtype == np.uint8 and live.ndim == 3 and not np.array_equal(a, live)


def test_no_face_is_insufficient_evidence_never_live():
    blank = np.asarray(PILImage.new("RGB", (320, 240), (120, 160, 200)))
    result = check(blank)
    assert result.live is None and result.score is None
    assert "no face" in result.reason
    with pytest.raises(SpoofError, match="no face") as info:
        require_live(blank)
    assert info.value.result is result or info.value.result.live is None
    assert isinstance(info.value, VisageError)


def test_require_live_refuses_an_attack_and_passes_a_live_face(held_out_photo):
    pixels, face_box = held_out_photo
    assert require_live(pixels).live is True
    with pytest.raises(SpoofError, match="refused"):
        require_live(first_attack_with_a_face(pixels, face_box, simulate_print, 11))


def test_lbp_histogram_by_hand():
    flat = np.full((5, 5), 7, np.uint8)
    h = lbp_histogram(flat)
    assert h[8] == 1.0        # every neighbour ≥ centre: the all-ones uniform pattern
    stripes = np.tile(np.array([0, 255], np.uint8), (6, 3))
    assert lbp_histogram(stripes).sum() == pytest.approx(1.0)


def test_features_are_finite_and_complete(held_out_photo):
    import visage

    pixels, _ = held_out_photo
    x = face_features(pixels, visage.detect(pixels, landmarks68=False)[0].box)
    assert x.shape == (len(feature_names()),) and np.isfinite(x).all()


def test_bad_model_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.npz"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="model.npz"):
        load_model(bad)
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.npz")
