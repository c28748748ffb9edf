"""Top patches, the report, activation maximisation, saved models and the CLI of ``visage inspect``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from torch import nn

from visage.cli import main
from visage.errors import VisageError
from visage.introspect import maximize, resolve_model, save_maximized, top_patches, write_report
from visage.introspect.patches import FILL, TopK, crop

pytestmark = pytest.mark.usefixtures("one_torch_thread")


#: A 5×5 red-on-green cross: the known pattern the hand-built unit detects.
CROSS = np.zeros((5, 5), bool)
CROSS[2, :] = CROSS[:, 2] = True


def paint_cross(pixels: np.ndarray, top: int, left: int) -> None:
    patch = pixels[top:top + 5, left:left + 5]
    patch[CROSS] = (230, 20, 20)
    patch[~CROSS] = (20, 200, 20)


class CrossDetector(nn.Module):
    """Unit 0 of ``detect`` is a matched filter for the cross; ``pool`` and ``spread`` widen its field."""

    def __init__(self):
        super().__init__()
        self.detect = nn.Conv2d(3, 2, 5)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2, 2)
        self.spread = nn.Conv2d(2, 2, 3, padding=1)
        red_minus_green = torch.tensor([1.0, -1.0, 0.0])
        template = torch.where(torch.from_numpy(CROSS), 1.0, -1.0)
        with torch.no_grad():
            self.detect.weight.zero_()
            self.detect.weight[0] = red_minus_green[:, None, None] * template / 25
            self.detect.weight[1] = 0.04  # unit 1: brightness
            self.detect.bias.zero_()
            self.spread.weight.zero_()
            self.spread.weight[0, 0, 1, 1] = 1.0  # unit 0 passes unit 0 through (its field grows to 10 px)
            self.spread.weight[1, 1] = 1 / 9
            self.spread.bias.zero_()

    def forward(self, x):
        return self.spread(self.pool(self.relu(self.detect(x))))


@pytest.fixture(scope="module")
def cross_folder(tmp_path_factory) -> Path:
    """20 noise images and one holding the cross at a known place (rows 21–25, columns 9–13)."""
    folder = tmp_path_factory.mktemp("cross")
    rng = np.random.default_rng(0)
    for k in range(20):
        PILImage.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"noise_{k:02d}.png")
    pixels = rng.integers(90, 160, (40, 40, 3), dtype=np.uint8)
    paint_cross(pixels, 21, 9)
    PILImage.fromarray(pixels).save(folder / "cross.png")
    return folder


def test_unit_that_detects_a_pattern_ranks_its_patch_first(cross_folder):
    target = resolve_model(CrossDetector(), input_size=40)
    for layer in ["detect", "spread"]:
        (found,) = top_patches(target, [layer], cross_folder, units=[0], per_unit=5, batch_size=4, progress=False)
        assert found.images_seen == 21
        best = found.units[0].patches[0]
        assert best.source == "cross.png"
        assert best.value > 2 * found.units[0].patches[1].value
        top, left, bottom, right = best.box
        # The box holds the whole cross and is exactly the layer's field in size.
        assert top <= 21 and left <= 9 and bottom >= 26 and right >= 14
        assert (bottom - top, right - left) == found.field.size
        # The patch is the field cut to the image: the part of the box inside the 40 px picture.
        v_top, v_left, v_bottom, v_right = best.visible
        assert (v_top, v_left) == (max(top, 0), max(left, 0)) and (v_bottom, v_right) == (min(bottom, 40), min(right, 40))
        assert best.pixels.shape[:2] == (v_bottom - v_top, v_right - v_left)
        cut = best.pixels[21 - v_top:26 - v_top, 9 - v_left:14 - v_left]
        assert (cut[CROSS] == (230, 20, 20)).all()
    assert found.field.size == (10, 10)  # 5 px detector, +1 by the 2×2 pool, +2×2 by the 3×3 spread at stride 2


def test_topk_tables_are_bounded_and_exact():
    rng = np.random.default_rng(1)
    table = TopK(units=6, k=4)
    maps = torch.from_numpy(rng.normal(size=(50, 6, 3, 5)).astype(np.float32))
    for start in range(0, 50, 7):
        table.push(maps[start:start + 7], torch.arange(start, min(start + 7, 50)))
        assert table.values.shape == (6, 4)  # memory does not grow with the number of images
    per_image = maps.flatten(2).max(2).values  # (50, 6)
    expected, images = per_image.T.topk(4, dim=1)
    assert torch.equal(table.values, expected)
    assert torch.equal(table.items, images)
    where = maps.flatten(2).argmax(2)
    for u in range(6):
        for r in range(4):
            i = int(images[u, r])
            assert int(table.rows[u, r]) * 5 + int(table.cols[u, r]) == int(where[i, u])


def test_crop_fills_outside_the_image_with_grey():
    pixels = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    out = crop(pixels, (-2, 4, 3, 9))
    assert out.shape == (5, 5, 3)
    assert (out[:2] == FILL).all() and (out[:, 2:] == FILL).all()
    assert (out[2:, :2] == pixels[0:3, 4:6]).all()


@pytest.fixture(scope="module")
def vgg_report(tmp_path_factory, cross_folder):
    out = tmp_path_factory.mktemp("report")
    layers = top_patches("vgg16", ["conv1_2", "conv2_2"], cross_folder, units=3, per_unit=4, image_size=32,
                         batch_size=8, progress=False)
    return out, layers, write_report(layers, out, model_name="vgg16")


def test_html_report_links_to_images_that_exist(vgg_report):
    out, layers, index = vgg_report
    html = index.read_text()
    links = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", html)
    assert len(links) == 2
    for link in links:
        image = PILImage.open(out / link)
        assert image.size[0] > 300 and image.size[1] > 3 * 72
    for layer in layers:
        assert f">{layer.layer} <" in html
        for unit in layer.units:
            assert f"<th>{unit.unit}</th>" in html
    summary = json.loads((out / "report.json").read_text())
    assert [entry["layer"] for entry in summary["layers"]] == ["layers.conv1_2", "layers.conv2_2"]
    assert summary["layers"][1]["receptive_field"]["size"] == [14, 14]


def test_vgg_units_are_ranked_by_their_best_activations(vgg_report):
    _, layers, _ = vgg_report
    for layer in layers:
        scores = [u.score for u in layer.units]
        assert scores == sorted(scores, reverse=True)
        for unit in layer.units:
            values = [p.value for p in unit.patches]
            assert values == sorted(values, reverse=True)
            assert len({p.item for p in unit.patches}) == len(values)  # one patch per image
            assert all(p.pixels.shape[:2] == (p.visible[2] - p.visible[0], p.visible[3] - p.visible[1])
                       for p in unit.patches)  # each field cut to the image


@pytest.mark.slow
def test_maximisation_raises_the_unit_many_fold():
    target = resolve_model(CrossDetector(), input_size=24)
    result = maximize(target, "detect", [0], size=24, steps=60, lr=0.1, jitter_px=1, scale_jitter=0, progress=False)
    assert result.start[0] > 0
    assert result.final[0] > 10 * result.start[0]
    # The image it draws is the cross: red where the cross is, green around it.
    image = result.images[0].astype(float)
    redness = image[..., 0] - image[..., 1]
    h, w = redness.shape
    centre = redness[h // 2 - 6:h // 2 + 6, w // 2 - 6:w // 2 + 6]
    tiles = np.lib.stride_tricks.sliding_window_view(centre, (5, 5))
    matched = (tiles * np.where(CROSS, 1, -1)).sum((2, 3))
    assert matched.max() > 1000  # of 6375 for a perfect cross; a grey or noise image gives a few hundred


@pytest.mark.slow
def test_maximisation_raises_vgg_units(tmp_path):
    result = maximize("vgg16", "conv2_2", [1, 3], size=40, steps=25, progress=False)
    assert (result.final > 50).all()
    assert (result.final > 10 * np.abs(result.start)).all()
    png = save_maximized(result, tmp_path / "maxact.png")
    assert PILImage.open(png).size[0] > 2 * 96
    numbers = json.loads(png.with_suffix(".json").read_text())
    assert [u["unit"] for u in numbers["units"]] == [1, 3]


def test_saved_models_load_as_pickled_modules_and_torchscript(tmp_path, cross_folder):
    pickled, scripted, weights = tmp_path / "net.pt", tmp_path / "net.ts", tmp_path / "weights.pt"
    net = nn.Sequential(CrossDetector(), nn.ReLU())
    torch.save(net, pickled)
    torch.jit.script(net).save(str(scripted))
    torch.save(net.state_dict(), weights)
    for path in (pickled, scripted):
        target = resolve_model(path, input_size=40)
        assert target.layer("spread").field.size == (10, 10)
        (found,) = top_patches(target, ["spread"], cross_folder, units=[0], per_unit=2, progress=False)
        assert found.units[0].patches[0].source == "cross.png"
    with pytest.raises(VisageError, match="state dict"):
        resolve_model(weights)


@pytest.mark.slow
def test_cli_writes_report_and_maximisation(tmp_path, cross_folder, capsys):
    out = tmp_path / "report"
    assert main(["inspect", "--model", "vgg16", "--layers", "conv1_2,pool1", "--images", str(cross_folder),
                 "-o", str(out), "--image-size", "32", "--top", "2", "--per-unit", "3", "--quiet"]) == 0
    assert (out / "index.html").is_file() and (out / "layers.pool1.png").is_file()
    png = tmp_path / "max.png"
    assert main(["inspect", "--maximize", "--model", "vgg16", "--layer", "conv1_2", "--units", "0-2",
                 "--size", "24", "--steps", "3", "-o", str(png), "--quiet"]) == 0
    assert PILImage.open(png).size[0] > 3 * 96
    assert main(["inspect", "--model", "vgg16", "--list-layers"]) == 0
    assert "196×196 px" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--layers", "conv9_9", "--images", "{folder}"], "no layer 'conv9_9'"),
    (["--images", "{missing}"], "no such folder"),
    (["--maximize", "--layer", "conv1_2", "--units", "0-x"], "--units"),
    (["--maximize", "--layer", "conv1_2", "--units", "64"], "no unit 64"),
    (["--model", "{missing}/net.pt"], "no such model file"),
    (["--model", "resnet-9000"], "unknown model"),
    (["--model", "dlib"], "does not run in PyTorch"),
])
@pytest.mark.slow
def test_cli_errors_are_clear(argv, message, tmp_path, cross_folder, capsys):
    argv = [a.format(folder=cross_folder, missing=tmp_path / "nothing") for a in argv]
    assert main(["inspect", "--quiet", *argv]) == 2
    assert message in capsys.readouterr().err


def test_unreadable_images_are_skipped_and_named(tmp_path, cross_folder):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "cross.png").write_bytes((cross_folder / "cross.png").read_bytes())
    with pytest.warns(UserWarning, match="broken.jpg"):
        (found,) = top_patches(resolve_model(CrossDetector(), input_size=40), ["detect"], folder, units=[0],
                               per_unit=1, progress=False)
    assert found.images_seen == 1
    (folder / "cross.png").unlink()
    with pytest.warns(UserWarning), pytest.raises(VisageError, match=re.escape("broken.jpg")):
        top_patches(resolve_model(CrossDetector(), input_size=40), ["detect"], folder, progress=False)


@pytest.mark.slow
def test_face_encoder_sees_aligned_chips_of_every_face(shared_data, tmp_path):
    from visage.encoders import ENCODERS

    if "dlib-torch" not in ENCODERS:
        pytest.skip("the PyTorch dlib encoder is not in this build")
    photos = sorted((shared_data / "faces" / "facerec__obama").glob("*"))[:2]
    photos += sorted((shared_data / "faces" / "openface__lennon").glob("*"))[:2]
    (found,) = top_patches("dlib-torch", ["stages.0.0"], photos, units=2, per_unit=3, progress=False)
    assert found.images_seen >= 4  # one chip per face, every face of every photo
    for unit in found.units:
        for patch in unit.patches:
            assert re.fullmatch(r".+ face \d+", patch.source)
            assert patch.pixels.shape[:2] == (patch.visible[2] - patch.visible[0], patch.visible[3] - patch.visible[1])
            top, _, bottom, _ = patch.box
            assert -found.field.size[0] < top and bottom < 150 + found.field.size[0]  # inside the 150 px chip's reach
