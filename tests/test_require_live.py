"""`verify --require-live` and `identify --require-live` refuse an attack before any matching."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image as PILImage

import visage
from visage.cli import main
from visage.errors import SpoofError
from visage.imageio import load_image
from visage.liveness.simulate import simulate_print


@pytest.fixture(scope="module")
def photos(shared_data, tmp_path_factory):
    """Biden (a person the liveness model never saw), a second photo of him, and a simulated print."""
    folder = tmp_path_factory.mktemp("live")
    biden = shared_data / "faces/facerec__biden/biden.jpg"
    pixels = load_image(biden).pixels
    box = visage.detect(pixels, landmarks68=False)[0].box
    h, w = pixels.shape[:2]
    printed = simulate_print(pixels, np.random.default_rng(12),
                             face_box=(box.left / w, box.top / h, box.right / w, box.bottom / h))
    PILImage.fromarray(printed).save(folder / "biden_print.png")
    return {"real": str(biden), "print": str(folder / "biden_print.png"), "folder": folder}


def test_verify_refuses_a_print_of_the_same_person(photos, capsys):
    # Without the liveness check, the print matches the real photo: that is the attack.
    assert visage.verify(photos["real"], photos["print"]).same
    with pytest.raises(SpoofError, match="biden_print.png: liveness check refused"):
        visage.verify(photos["real"], photos["print"], require_live=True)
    code = main(["verify", photos["real"], photos["print"], "--require-live"])
    err = capsys.readouterr().err
    assert code == 2 and "liveness check refused" in err


def test_verify_accepts_a_live_photo(photos, shared_data):
    result = visage.verify(photos["real"], shared_data / "faces/facerec__biden/biden.jpg", require_live=True)
    assert result.same


def test_identify_refuses_a_print_before_matching(photos, capsys):
    gallery = str(photos["folder"] / "gallery.db")
    assert main(["enroll", "biden", photos["real"], "--gallery", gallery]) == 0
    capsys.readouterr()
    assert main(["identify", photos["print"], "--gallery", gallery, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["faces"][0]["name"] == "biden"
    code = main(["identify", photos["print"], "--gallery", gallery, "--require-live"])
    out, err = capsys.readouterr()
    assert code == 2 and "liveness check refused" in err and "biden" not in out
