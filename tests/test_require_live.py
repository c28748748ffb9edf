"""`verify --require-live` and `identify --require-live` refuse a real printed photo before any matching.

The photos are NUAA captures of one person, live and as a printed photo held before the same
webcam. NUAA is held out of all liveness training (``scripts/liveness_data.TEST_SOURCES``).
"""

from __future__ import annotations

import json
import re

import pytest

import visage
from visage.cli import EXIT_REFUSED, main
from visage.errors import SpoofError

SUBJECT = "nuaa_imironica__db__{kind}Raw__0004__0004_01_{take}.jpg"
#: A live photo of someone else. Not another NUAA subject: at NUAA's webcam resolution the encoder
#: puts most of its subjects within the threshold of each other (0.53-0.62 against this one).
OTHER_PERSON = "faces/facerec__biden/biden2.jpg"


@pytest.fixture(scope="module")
def photos(shared_data, tmp_path_factory):
    """Two live webcam photos of one NUAA subject and a printed photo of the same subject."""
    pad = shared_data / "pad"
    if not (pad / "MANIFEST.tsv").is_file():
        pytest.skip(f"no real attack set at {pad}")
    return {"real": str(pad / "real" / SUBJECT.format(kind="Client", take="00_01_466")),
            "real_again": str(pad / "real" / SUBJECT.format(kind="Client", take="06_03_176")),
            "print": str(pad / "print" / SUBJECT.format(kind="Imposter", take="00_01_254")),
            "folder": tmp_path_factory.mktemp("live")}


@pytest.mark.slow
def test_verify_refuses_a_print_of_the_same_person(photos, capsys):
    # Without the liveness check, the print matches the live photo: that is the attack.
    assert visage.verify(photos["real"], photos["print"]).same
    with pytest.raises(SpoofError, match=re.escape("0004_01_00_01_254.jpg: liveness check refused")):
        visage.verify(photos["real"], photos["print"], require_live=True)
    code = main(["verify", photos["real"], photos["print"], "--require-live"])
    err = capsys.readouterr().err
    assert code == EXIT_REFUSED and "liveness check refused" in err


@pytest.fixture
def detector_calls(monkeypatch):
    """Counts the images the face detector is run on."""
    from visage.faces import detect as detect_module

    calls: list[tuple[int, ...]] = []
    real = detect_module.detect_boxes

    def counting(pixels, *args, **kwargs):
        calls.append(pixels.shape)
        return real(pixels, *args, **kwargs)

    monkeypatch.setattr(detect_module, "detect_boxes", counting)
    return calls


def test_verify_checks_and_matches_two_live_photos_detecting_each_once(photos, detector_calls):
    # Two different takes of the subject: both must be judged live, and then still match.
    result = visage.verify(photos["real"], photos["real_again"], require_live=True)
    assert result.same and result.distance < result.threshold
    assert len(detector_calls) == 2


def test_a_live_photo_of_someone_else_passes_liveness_and_does_not_match(photos, shared_data):
    result = visage.verify(photos["real"], str(shared_data / OTHER_PERSON), require_live=True)
    assert not result.same and result.distance > result.threshold


def test_identify_require_live_detects_once_and_names_the_judged_face(photos, detector_calls):
    gallery = visage.Gallery(str(photos["folder"] / "once.db"))
    assert gallery.enroll("nuaa_0004", [photos["real"]]).faces_added == 1
    detector_calls.clear()
    found = gallery.identify(photos["real_again"], require_live=True)
    assert len(detector_calls) == 1
    assert found[0].name == "nuaa_0004" and found[0].live is True


def test_identify_refuses_a_print_before_matching(photos, capsys):
    gallery = str(photos["folder"] / "gallery.db")
    assert main(["enroll", "nuaa_0004", photos["real"], "--gallery", gallery]) == 0
    capsys.readouterr()
    assert main(["identify", photos["print"], "--gallery", gallery, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["faces"][0]["name"] == "nuaa_0004"
    code = main(["identify", photos["print"], "--gallery", gallery, "--require-live"])
    out, err = capsys.readouterr()
    assert code == EXIT_REFUSED and "liveness check refused" in err and "nuaa_0004" not in out


def test_a_broken_file_is_an_error_not_a_refusal(photos, tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert main(["verify", photos["real"], str(broken), "--require-live"]) == 2
    assert "broken.jpg" in capsys.readouterr().err
