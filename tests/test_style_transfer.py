"""Gatys style transfer on real VGG16-HED weights, at tiny sizes (48–96 px)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from visage.cli import main
from visage.errors import VisageError
from visage.style import StyleSettings, parse_style_layers, style_distance, stylize
from visage.style.features import extract, load_feature_net
from visage.style.losses import content_cost


def _photo(h: int = 72, w: int = 96) -> np.ndarray:
    """A smooth 'photo': gradients and a bright disc."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    disc = ((x - 0.6) ** 2 + (y - 0.4) ** 2 < 0.05).astype(float)
    rgb = np.stack([0.2 + 0.6 * x, 0.3 + 0.5 * y, 0.5 + 0.4 * disc], axis=2)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _painting(size: int = 96) -> np.ndarray:
    """A 'painting': saturated diagonal stripes, nothing like the photo."""
    y, x = np.mgrid[0:size, 0:size]
    stripes = ((x + y) // 6) % 3
    palette = np.array([[220, 40, 30], [250, 210, 20], [20, 40, 160]], dtype=np.uint8)
    return palette[stripes]


NET = "vgg16-hed"


def test_content_cost_of_content_with_itself_is_zero():
    net = load_feature_net(NET)
    x = torch.from_numpy(_photo()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        a = extract(net, x, ["relu4_2"])["relu4_2"]
    assert content_cost(a, a.clone()).item() == 0.0


@pytest.mark.slow
def test_short_lbfgs_run_lowers_the_loss():
    result = stylize(_photo(), _painting(), StyleSettings(size=64, steps=12, network=NET), progress=False)
    totals = [e["total"] for e in result.history]
    assert len(totals) == 12
    assert totals[-1] < 0.5 * totals[0]
    assert result.pixels.shape == (48, 64, 3) and result.pixels.dtype == np.uint8


@pytest.mark.slow
def test_output_moves_towards_the_style():
    content, style = _photo(), _painting()
    result = stylize(content, style, StyleSettings(size=64, steps=30, network=NET), progress=False)
    before = style_distance(content, style, size=64, network=NET)
    after = style_distance(result.pixels, style, size=64, network=NET)
    assert after < 0.25 * before, (before, after)  # measured: about 0.2 after 25 steps


@pytest.mark.slow
def test_adam_and_noise_init_also_lower_the_loss():
    settings = StyleSettings(size=48, steps=15, optimizer="adam", init="noise", lr=0.05, network=NET)
    result = stylize(_photo(), _painting(), settings, progress=False)
    assert result.history[-1]["total"] < 0.7 * result.history[0]["total"]


@pytest.mark.slow
def test_preserve_color_keeps_the_content_colours():
    content, style = _photo(), _painting()
    plain = stylize(content, style, StyleSettings(size=48, steps=8, network=NET), progress=False)
    kept = stylize(content, style, StyleSettings(size=48, steps=8, network=NET, preserve_color=True), progress=False)
    small = np.asarray(PILImage.fromarray(content).resize((48, 36), PILImage.LANCZOS)).astype(float)
    # Per-pixel colour difference from the content, after removing luminance (mean over channels).
    def chroma_gap(img):
        img = img.astype(float)
        return np.abs((img - img.mean(2, keepdims=True)) - (small - small.mean(2, keepdims=True))).mean()
    assert chroma_gap(kept.pixels) < 0.5 * chroma_gap(plain.pixels)


def test_style_blend_weights_select_styles():
    photo, stripes = _photo(), _painting()
    grey = np.full((64, 64, 3), 128, np.uint8)
    settings = StyleSettings(size=48, steps=3, network=NET)
    single = stylize(photo, stripes, settings, progress=False)
    blended = stylize(photo, [stripes, grey], settings, style_blend=[1, 0], progress=False)
    assert np.array_equal(single.pixels, blended.pixels)
    assert blended.style_blend == [1.0, 0.0]
    with pytest.raises(VisageError, match="blend"):
        stylize(photo, [stripes, grey], settings, style_blend=[1], progress=False)


@pytest.mark.slow
def test_coarse_to_fine_levels():
    settings = StyleSettings(size=2048, steps=100)
    assert settings.level_sizes() == [512, 1024, 2048]
    assert settings.level_steps(3) == [100, 50, 25]
    result = stylize(_photo(), _painting(), StyleSettings(size=96, coarse_size=48, steps=4, network=NET),
                     progress=False)
    assert [e["size"] for e in result.history] == [48] * 4 + [96] * 10  # finer level: at least min_fine_steps
    assert result.pixels.shape == (72, 96, 3)


def test_settings_are_validated():
    for bad in ({"size": 0}, {"size": 100_000}, {"size": -5}, {"init": "zeros"}, {"optimizer": "sgd"},
                {"steps": 0}, {"style_weight": -1.0}, {"style_layers": {"relu1_1": -1.0}}):
        with pytest.raises(VisageError):
            StyleSettings(**bad).validate()
    with pytest.raises(VisageError, match="no layer"):
        stylize(_photo(), _painting(), StyleSettings(size=32, steps=1, network=NET, content_layer="relu9_1"),
                progress=False)
    assert parse_style_layers("relu1_1:0.5, relu2_1") == {"relu1_1": 0.5, "relu2_1": 1.0}
    with pytest.raises(VisageError):
        parse_style_layers("relu1_1:x")


def test_cli_writes_png_with_network_metadata_and_frames(tmp_path):
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    PILImage.fromarray(_photo()).save(content)
    PILImage.fromarray(_painting()).save(style)
    out = tmp_path / "out.png"
    code = main(["style", str(content), str(style), "-o", str(out), "--size", "40", "--steps", "4",
                 "--network", NET, "--save-every", "2", "--style-layers", "relu1_1:1,relu2_1:1",
                 "--content-layer", "relu3_1", "--quiet"])
    assert code == 0
    with PILImage.open(out) as img:
        assert img.size == (40, 30)
        assert img.text["visage:network"] == "vgg16-hed"
        settings = json.loads(img.text["visage:settings"])
    assert settings["style_layers"] == {"relu1_1": 1.0, "relu2_1": 1.0} and settings["content_layer"] == "relu3_1"
    frames = sorted(p.name for p in (tmp_path / "out_frames").iterdir())
    assert frames == ["level0_40x30_step00002.png", "level0_40x30_step00004.png"]


@pytest.mark.parametrize("case", ["missing", "not_image", "empty", "absurd_size", "bad_output"])
def test_cli_bad_inputs_give_clear_errors(tmp_path, capsys, case):
    good = tmp_path / "good.png"
    PILImage.fromarray(_photo()).save(good)
    content, size, out = str(good), "32", str(tmp_path / "o.png")
    if case == "missing":
        content = str(tmp_path / "nope.jpg")
    elif case == "not_image":
        (tmp_path / "notes.jpg").write_text("these are words, not pixels")
        content = str(tmp_path / "notes.jpg")
    elif case == "empty":
        (tmp_path / "empty.png").write_bytes(b"")
        content = str(tmp_path / "empty.png")
    elif case == "absurd_size":
        size = "100000"
    elif case == "bad_output":
        out = str(tmp_path / "o.gif")  # .png and .jpg are written; other suffixes are refused
    code = main(["style", content, str(good), "-o", out, "--size", size, "--steps", "1", "--network", NET, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("visage: error:")
    expected = {"missing": "nope.jpg: no such file", "not_image": "notes.jpg: not an image",
                "empty": "empty.png: file is empty", "absurd_size": "size must be", "bad_output": ".gif"}[case]
    assert expected in err


def test_zero_size_array_is_refused():
    with pytest.raises(VisageError, match="no pixels"):
        stylize(np.zeros((0, 10, 3), np.uint8), _painting(), StyleSettings(size=32, steps=1, network=NET),
                progress=False)


@pytest.mark.slow
def test_tubingen_starry_night_style_distance_falls(shared_data):
    content = shared_data / "style/content/tubingen.jpg"
    style = shared_data / "style/style/starry_night.jpg"
    result = stylize(content, style, StyleSettings(size=96, steps=20, network=NET), progress=False)
    before = style_distance(content, style, size=96, network=NET)
    after = style_distance(result.pixels, style, size=96, network=NET)
    assert after < 0.3 * before, (before, after)
