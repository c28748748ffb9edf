"""The fused dlib + FaceNet encoder and the gallery-size open-set threshold."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from skimage import data

import visage
from visage.encoders import get_encoder
from visage.encoders.fused import DLIB_WEIGHT, FusedEncoder
from visage.errors import InvalidArgument
from visage.evaluation.verification import Calibration, default_calibration
from visage.media.images import load_image


@pytest.fixture(scope="module")
def fused() -> FusedEncoder:
    encoder = get_encoder("dlib+facenet")
    assert isinstance(encoder, FusedEncoder)
    return encoder


def test_fused_distance_is_the_weighted_sum_of_the_parts(fused):
    astronaut = data.astronaut()
    faces = visage.detect(astronaut)[:1]
    flipped = np.ascontiguousarray(astronaut[:, ::-1])
    flipped_faces = visage.detect(flipped)[:1]
    a = visage.encode(astronaut, faces=faces, encoder="dlib+facenet")[0].encoding
    b = visage.encode(flipped, faces=flipped_faces, encoder="dlib+facenet")[0].encoding
    assert a.shape == (640,) and np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    parts = {}
    for name in ("dlib-torch", "facenet"):
        x = visage.encode(astronaut, faces=faces, encoder=name)[0].encoding
        y = visage.encode(flipped, faces=flipped_faces, encoder=name)[0].encoding
        parts[name] = np.linalg.norm(x / np.linalg.norm(x) - y / np.linalg.norm(y))
    expected = np.sqrt(DLIB_WEIGHT * parts["dlib-torch"] ** 2 + (1 - DLIB_WEIGHT) * parts["facenet"] ** 2)
    assert np.linalg.norm(a - b) == pytest.approx(expected, rel=1e-4)
    assert np.linalg.norm(a - b) < default_calibration(fused.name).threshold  # a mirror image is the same person


def test_fused_chips_hold_each_part_unresampled(fused):
    image = load_image(data.astronaut())
    faces = visage.detect(image)[:1]
    chips = fused.chips(image, faces)
    assert chips.shape == (1, 160, 160, 6)
    dlib_chip, facenet_chip = fused.split_chips(chips)
    assert np.array_equal(dlib_chip, fused.parts[0].chips(image, faces))
    assert np.array_equal(facenet_chip, fused.parts[1].chips(image, faces))


def test_weights_must_be_positive(fused):
    with pytest.raises(InvalidArgument):
        FusedEncoder(fused.parts, [1.0, 0.0])


@pytest.mark.slow
def test_fused_on_dev_pairs_same_under_the_threshold_and_different_over_it(shared_data):
    cases = [("facerec__obama/obama.jpg", "facerec__obama/obama2.jpg", True),
             ("openface__lennon/lennon-1.jpg", "openface__lennon/lennon-2.jpg", True),
             ("facerec__obama/obama.jpg", "facerec__biden/biden.jpg", False),
             ("openface__lennon/lennon-1.jpg", "openface__clapton/clapton-1.jpg", False)]
    for a, b, same in cases:
        result = visage.verify(shared_data / "faces" / a, shared_data / "faces" / b, encoder="dlib+facenet")
        assert result.same is same, (a, b, result)
        assert result.threshold == default_calibration(get_encoder("dlib+facenet").name).threshold


def test_open_set_threshold_tightens_as_the_gallery_grows():
    cal = default_calibration(get_encoder("dlib+facenet").name)
    sizes = [1, 10, 100, 1000, 10**6]
    thresholds = [cal.open_set_threshold_for(n) for n in sizes]
    assert all(a >= b for a, b in pairwise(thresholds)) and thresholds[0] > thresholds[-1]
    assert thresholds[0] <= cal.threshold
    # At one person enrolled, a stranger is accepted at the 1% rate per pair: the 1:1 threshold.
    assert thresholds[0] == pytest.approx(cal.threshold, abs=0.005)


def test_a_fixed_identify_threshold_or_no_quantiles_is_used_as_given():
    plain = Calibration(encoder="e", threshold=0.6, slope=-10.0, intercept=6.0)
    assert plain.open_set_threshold_for(1000) == 0.6
    fixed = Calibration(encoder="e", threshold=0.6, slope=-10.0, intercept=6.0, identify_threshold=0.5,
                        impostor_quantiles=[[1e-4, 0.3], [1e-2, 0.6]])
    assert fixed.open_set_threshold_for(1000) == 0.5
