"""`verify --require-live` and `identify --require-live` refuse a real printed photo before any matching.

The photos are NUAA captures of one person, live and as a printed photo held before the same
webcam. NUAA is held out of all liveness training (``scripts/liveness_data.TEST_SOURCES``).
"""

from __future__ import annotations

import json

import pytest

import visage
from visage.cli import EXIT_REFUSED, main
from visage.errors import SpoofError

SUBJECT = "nuaa_imironica__db__{kind}Raw__0004__0004_01_{take}.jpg"


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


def test_verify_refuses_a_print_of_the_same_person(photos, capsys):
    # Without the liveness check, the print matches the live photo: that is the attack.
    assert visage.verify(photos["real"], photos["print"]).same
    with pytest.raises(SpoofError, match="0004_01_00_01_254.jpg: liveness check refused"):
        visage.verify(photos["real"], photos["print"], require_live=True)
    code = main(["verify", photos["real"], photos["print"], "--require-live"])
    err = capsys.readouterr().err
    assert code == EXIT_REFUSED and "liveness check refused" in err


def test_verify_accepts_two_live_photos(photos):
    result = visage.verify(photos["real"], photos["real_again"], require_live=True)
    assert result.same


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
