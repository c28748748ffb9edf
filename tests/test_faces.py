"""Detection, landmarks and encoding on real photos."""

from __future__ import annotations

import ast
import csv

import numpy as np
import pytest
from PIL import Image as PILImage

import visage
from visage.errors import FaceCountError
from visage.media.images import load_image


def _expectations(shared_data) -> dict[tuple[str, str], str]:
    path = shared_data / "reference" / "face_recognition_test_expectations.tsv"
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    return {(r["image"], r["check"]): r["expected"] for r in csv.DictReader(lines, delimiter="\t")}


@pytest.fixture(scope="module")
def obama(shared_data):
    return load_image(shared_data / "faces/facerec__obama/obama.jpg")


def test_obama_box_and_landmarks_match_face_recognition(shared_data, obama):
    expect = _expectations(shared_data)
    # min_face_size=40 makes the working scale 2×, the same as face_recognition's upsample=1.
    faces = visage.detect(obama, min_face_size=40)
    assert len(faces) == 1
    top, right, bottom, left = ast.literal_eval(expect[("faces/facerec__obama/obama.jpg",
                                                        "face_locations (HOG, upsample=1)")])[0]
    box = faces[0].box
    assert abs(box.top - top) <= 2 and abs(box.right - right) <= 2
    assert abs(box.bottom - bottom) <= 2 and abs(box.left - left) <= 2
    chin = np.array(ast.literal_eval(expect[("faces/facerec__obama/obama.jpg", "face_landmarks chin (17 pts)")]))
    assert np.abs(faces[0].landmarks68[:17] - chin).max() <= 4
    nose = np.array(ast.literal_eval(expect[("faces/facerec__obama/obama.jpg",
                                             "face_landmarks small model nose_tip")])[0])
    assert np.abs(faces[0].landmarks5[4] - nose).max() <= 3


def _iou(a: visage.Box, b: tuple[int, int, int, int]) -> float:
    left, top, right, bottom = b
    inter = max(0, min(a.right, right) - max(a.left, left)) * max(0, min(a.bottom, bottom) - max(a.top, top))
    return inter / (a.area + (right - left) * (bottom - top) - inter)


def test_default_scale_finds_the_same_face(obama):
    faces = visage.detect(obama)
    assert len(faces) == 1 and _iou(faces[0].box, (349, 142, 617, 409)) > 0.8
    assert faces[0].landmarks5.shape == (5, 2) and faces[0].landmarks68.shape == (68, 2)


@pytest.mark.slow
def test_large_photo_is_detected_on_a_scaled_copy_with_full_resolution_landmarks(obama):
    big = np.asarray(PILImage.fromarray(obama.pixels).resize((910 * 4, 1137 * 4), PILImage.BILINEAR))
    assert big.shape[0] * big.shape[1] > 14_000_000
    faces = visage.detect(big)
    assert len(faces) == 1
    assert _iou(faces[0].box, (349 * 4, 142 * 4, 617 * 4, 409 * 4)) > 0.8
    # Landmarks are placed on the full-resolution pixels: the chin matches the small photo's ×4.
    small = visage.detect(obama)[0]
    error = np.abs(faces[0].landmarks68 - small.landmarks68 * 4)
    face_width = faces[0].box.width
    assert error.mean() < 0.01 * face_width and error.max() < 0.04 * face_width


def test_partial_face_box_is_clipped_to_the_image(shared_data):
    faces = visage.detect(shared_data / "detection/facerec_obama_partial_face.jpg", min_face_size=40)
    assert len(faces) == 1 and faces[0].box.left == 0
    assert abs(faces[0].box.top - 142) <= 3 and abs(faces[0].box.right - 191) <= 3


@pytest.mark.slow
def test_cnn_detector(obama):
    faces = visage.detect(obama, detector="mmod", min_face_size=200)
    assert len(faces) == 1
    # face_recognition's CNN expectation (top, right, bottom, left) = (144, 608, 389, 363) ± 25
    b = faces[0].box
    assert np.abs(np.array([b.top, b.right, b.bottom, b.left]) - [144, 608, 389, 363]).max() <= 25


def test_no_face_is_a_normal_result():
    rng = np.random.default_rng(1)
    landscape = np.clip(np.cumsum(rng.normal(0, 4, (240, 320, 3)), axis=1) + 120, 0, 255).astype(np.uint8)
    assert visage.detect(landscape) == []
    assert visage.encode(landscape) == []
    with pytest.raises(FaceCountError, match="no face found"):
        visage.encode(landscape, which="one")
    with pytest.raises(FaceCountError, match="no face found"):
        visage.verify(landscape, landscape)


@pytest.mark.slow
def test_several_faces_caller_chooses(shared_data):
    photo = load_image(shared_data / "detection/facerec_obama_and_biden.jpg")
    everyone = visage.encode(photo)
    assert len(everyone) >= 2
    areas = [e.face.box.area for e in everyone]
    assert areas == sorted(areas, reverse=True)
    largest = visage.encode(photo, which="largest")
    assert len(largest) == 1 and largest[0].face.box == everyone[0].face.box
    with pytest.raises(FaceCountError, match=f"{len(everyone)} faces found, expected one"):
        visage.encode(photo, which="one")


def test_astronaut_is_herself_after_resizing_and_relighting():
    from skimage import data

    photo = data.astronaut()
    found = visage.encode(photo, which="largest")
    assert len(found) == 1
    box = found[0].face.box  # the astronaut's head, top centre of the photo
    assert 150 < (box.left + box.right) / 2 < 300 and (box.top + box.bottom) / 2 < 200
    assert found[0].encoding.shape == (640,) and found[0].encoding.dtype == np.float32
    darker = np.asarray(PILImage.fromarray((photo * 0.7).astype(np.uint8)).resize((400, 400)))
    result = visage.verify(photo, darker)
    assert result.same and result.distance < 0.3 and result.probability > 0.9


@pytest.mark.slow
def test_batch_equals_one_by_one(shared_data):
    paths = [shared_data / "faces/facerec__obama/obama2.jpg", shared_data / "faces/facerec__biden/biden.jpg"]
    batch = visage.encode_batch(paths)
    for path, got in zip(paths, batch):
        single = visage.encode(path)
        assert len(got) == len(single) == 1
        np.testing.assert_allclose(got[0].encoding, single[0].encoding, atol=1e-5)


@pytest.mark.slow
def test_threads_share_the_models_safely(shared_data):
    from concurrent.futures import ThreadPoolExecutor

    paths = [shared_data / "faces/facerec__obama/obama2.jpg", shared_data / "faces/facerec__biden/biden.jpg"] * 4
    expected = [visage.encode(p, encoder="dlib")[0].encoding for p in paths[:2]]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda p: visage.encode(p, encoder="dlib"), paths))
    for i, found in enumerate(results):
        np.testing.assert_allclose(found[0].encoding, expected[i % 2], atol=1e-6)
