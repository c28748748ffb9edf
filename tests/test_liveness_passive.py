"""The passive check's plumbing, the attack simulator and the v2 cue model kept for comparison.

The shipped model's rates on real attacks from held-out sources are in test_liveness_real.py.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image as PILImage

from visage.errors import ModelError, SpoofError, VisageError
from visage.liveness import check, require_live
from visage.liveness.cues import load_model as load_cue_model
from visage.liveness.features import face_features, feature_names, lbp_histogram
from visage.liveness.passive import load_model
from visage.liveness.simulate import simulate_live_capture, simulate_print
from visage.media.images import load_image


@pytest.fixture(scope="module")
def held_out_photo(shared_data):
    """A photo of a person the shipped model never saw, with the face box as fractions."""
    import visage

    pixels = load_image(shared_data / "faces" / "facerec__biden" / "biden.jpg").pixels
    box = visage.detect(pixels, landmarks68=False)[0].box
    h, w = pixels.shape[:2]
    return pixels, (box.left / w, box.top / h, box.right / w, box.bottom / h)


def test_cue_model_v2_matches_the_features():
    model = load_cue_model()
    assert model.names == feature_names()
    assert np.all(model.scale > 0) and np.isfinite(model.weights).all()
    assert "simulated" in model.info["trained_on"]


@pytest.mark.slow
def test_real_face_of_an_unseen_person_is_live(held_out_photo):
    pixels, _ = held_out_photo
    result = check(pixels)
    assert result.live is True, result.reason
    assert set(result.evidence["passive"]["branches"]) == {"context_2.7x", "context_4x"}


@pytest.mark.slow
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


def test_require_live_passes_a_live_face(held_out_photo):
    pixels, _ = held_out_photo
    assert require_live(pixels).live is True


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
    with pytest.raises(ModelError, match=re.escape("model.npz")):
        load_model(bad)
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.npz")
