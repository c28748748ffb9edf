"""Fast style networks (Johnson et al.): training on a tiny generated set, saving, reloading, video."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from visage.cli import main
from visage.errors import VisageError
from visage.style.fast import (
    FastStyleSettings,
    TransformerNet,
    iter_video_frames,
    load_style_model,
    train_style_model,
)

NET = "vgg16-hed"


def _scenes(folder, n: int = 4, size: int = 48) -> None:
    """Write ``n`` small generated 'photos' (gradients with a disc at different places) to ``folder``."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        cx, cy = rng.uniform(0.2, 0.8, 2)
        disc = ((x - cx) ** 2 + (y - cy) ** 2 < 0.04).astype(float)
        rgb = np.stack([x, y * (1 - disc) + disc, 0.3 + 0.5 * disc], 2)
        PILImage.fromarray((rgb * 255).astype(np.uint8)).save(folder / f"scene{i}.png")


def _stripes(size: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    palette = np.array([[220, 40, 30], [250, 210, 20], [20, 40, 160]], dtype=np.uint8)
    return palette[((x + y) // 6) % 3]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    _scenes(folder)
    settings = FastStyleSettings(image_size=32, batch_size=2, epochs=100, max_steps=30, lr=5e-3, width=8,
                                 n_residual=2, network=NET, style_weight=10.0)
    return train_style_model(_stripes(), folder, settings, progress=False), folder


@pytest.mark.slow
def test_training_loss_falls(trained):
    model, _ = trained
    totals = [e["total"] for e in model.history]
    assert len(totals) == 30
    # measured: 1.3e8 over the first 5 steps, 6.4e7 over the last 5
    assert np.mean(totals[-5:]) < 0.6 * np.mean(totals[:5]), (totals[:5], totals[-5:])


@pytest.mark.slow
def test_saved_model_reloads_and_gives_the_same_output(trained, tmp_path):
    model, folder = trained
    path = model.save(tmp_path / "stripes.pt")
    again = load_style_model(path)
    assert again.style == model.style and again.feature_network == "vgg16-hed"
    image = folder / "scene1.png"
    first, second = model.apply(image), again.apply(image)
    assert first.shape == (48, 48, 3)
    assert np.array_equal(first, second)
    assert model.apply(image, size=40).shape == (40, 40, 3)


def test_transformer_keeps_odd_sizes():
    net = TransformerNet(width=4, n_residual=1)
    assert net(torch.rand(1, 3, 29, 35)).shape == (1, 3, 29, 35)


@pytest.mark.slow
def test_video_frames_are_stylised(trained, tmp_path):
    import cv2

    model, _ = trained
    source = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"mp4v"), 10, (40, 32))
    for i in range(5):
        frame = np.full((32, 40, 3), 40 * i, np.uint8)
        frame[8:24, 4 * i:4 * i + 12] = (0, 200, 255)
        writer.write(frame)
    writer.release()
    out = tmp_path / "styled.mp4"
    assert model.stylize_video(source, out, progress=False) == 5
    frames = list(iter_video_frames(out))
    assert len(frames) == 5 and frames[0].shape == (32, 40, 3)


def test_bad_model_files(tmp_path):
    with pytest.raises(VisageError, match="no such style model"):
        load_style_model(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a model")
    with pytest.raises(VisageError, match="not a visage style model"):
        load_style_model(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(VisageError, match="not a visage style model"):
        load_style_model(other)


def test_bad_training_inputs(tmp_path):
    with pytest.raises(VisageError, match="not a folder"):
        train_style_model(_stripes(), tmp_path / "nowhere", progress=False)
    with pytest.raises(VisageError, match="holds no images"):
        train_style_model(_stripes(), tmp_path, progress=False)
    _scenes(tmp_path, n=1)
    with pytest.raises(VisageError, match="no such file"):
        train_style_model(tmp_path / "style.jpg", tmp_path, progress=False)


def test_cli_train_then_apply(tmp_path, capsys):
    images = tmp_path / "photos"
    images.mkdir()
    _scenes(images, n=2)
    style = tmp_path / "style.png"
    PILImage.fromarray(_stripes()).save(style)
    model = tmp_path / "style.pt"
    assert main(["style-train", str(style), "--images", str(images), "-o", str(model), "--image-size", "32",
                 "--batch-size", "2", "--max-steps", "2", "--width", "4", "--network", NET, "--output-norm",
                 "--quiet"]) == 0
    assert load_style_model(model).net.output_colours is not None
    out = tmp_path / "out.png"
    assert main(["style", "--model", str(model), str(images / "scene0.png"), "-o", str(out)]) == 0
    with PILImage.open(out) as img:
        assert img.size == (48, 48) and img.text["visage:network"] == "vgg16-hed"
    assert main(["style", "--model", str(tmp_path / "nope.pt"), str(images / "scene0.png"), "-o", str(out)]) == 2
    assert "no such style model" in capsys.readouterr().err


@pytest.mark.slow
def test_resumed_training_continues_from_the_checkpoint(tmp_path):
    """A run stopped at step 3 and resumed to step 5 gives the network of an uninterrupted 5-step run."""
    _scenes(tmp_path, n=3)
    ckpt = tmp_path / "train.ckpt"

    def settings(steps: int) -> FastStyleSettings:
        return FastStyleSettings(image_size=32, batch_size=2, epochs=100, max_steps=steps, lr=5e-3, width=4,
                                 n_residual=1, network=NET)

    straight = train_style_model(_stripes(), tmp_path, settings(5), progress=False)
    first = train_style_model(_stripes(), tmp_path, settings(3), progress=False, checkpoint=ckpt, checkpoint_every=2)
    assert ckpt.is_file() and len(first.history) == 3
    seen: list[int] = []
    resumed = train_style_model(_stripes(), tmp_path, settings(5), progress=False, checkpoint=ckpt, resume=True,
                                callback=lambda e: seen.append(e["step"]))
    assert seen == [4, 5]  # it went on from the saved step, not from 1
    assert [e["step"] for e in resumed.history] == [1, 2, 3, 4, 5]
    for a, b in zip(straight.net.state_dict().values(), resumed.net.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    # Other settings than the checkpoint's are refused rather than mixed.
    other = settings(6)
    other.lr = 1e-3
    with pytest.raises(VisageError, match="other settings"):
        train_style_model(_stripes(), tmp_path, other, progress=False, checkpoint=ckpt, resume=True)


def test_cli_resume_needs_a_checkpoint(tmp_path, capsys):
    _scenes(tmp_path, n=2)
    assert main(["style-train", str(tmp_path / "scene0.png"), "--images", str(tmp_path), "-o",
                 str(tmp_path / "m.pt"), "--resume", "--quiet"]) == 2
    assert "--resume needs --checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_fine_tuning_starts_from_the_given_model(trained, tmp_path):
    """--init-model: step 1 starts at the given network's weights; another width is refused."""
    model, folder = trained
    start = model.save(tmp_path / "start.pt")
    settings = FastStyleSettings(image_size=32, batch_size=2, epochs=100, max_steps=1, lr=1e-12, width=8,
                                 n_residual=2, network=NET, style_weight=10.0, init_model=str(start))
    tuned = train_style_model(_stripes(), folder, settings, progress=False)
    for a, b in zip(model.net.state_dict().values(), tuned.net.state_dict().values()):
        assert torch.allclose(a, b, rtol=0, atol=1e-9)  # an lr of 1e-12 moves nothing: these are the loaded weights
    # The trained start's loss is already far below a fresh network's on the same first batch.
    settings.init_model = None
    fresh = train_style_model(_stripes(), folder, settings, progress=False)
    assert tuned.history[0]["total"] < 0.8 * fresh.history[0]["total"], (tuned.history, fresh.history)
    settings.init_model, settings.width = str(start), 16
    with pytest.raises(VisageError, match="width 8, 2 residual blocks and 0 noise channels, not 16, 2"):
        train_style_model(_stripes(), folder, settings, progress=False)


@pytest.mark.slow
def test_cli_fine_tunes_a_shipped_style_at_its_width(tmp_path, capsys):
    _scenes(tmp_path, n=2)
    out = tmp_path / "tuned.pt"
    assert main(["style-train", str(tmp_path / "scene0.png"), "--images", str(tmp_path), "-o", str(out),
                 "--init-model", "starry", "--image-size", "32", "--batch-size", "1", "--max-steps", "1",
                 "--lr", "1e-12", "--quiet"]) == 0
    tuned, shipped = load_style_model(out), load_style_model("starry")
    # the network's shape (width, noise channels, output norm) comes from the model fine-tuned
    for key in ("width", "n_residual", "noise_channels", "output_norm"):
        assert getattr(tuned.settings, key) == getattr(shipped.settings, key), key
    for a, b in zip(shipped.net.state_dict().values(), tuned.net.state_dict().values()):
        assert torch.allclose(a, b, rtol=0, atol=1e-9)
    assert main(["style-train", str(tmp_path / "scene0.png"), "--images", str(tmp_path), "-o", str(out),
                 "--init-model", "starry", "--width", "8", "--max-steps", "1", "--quiet"]) == 2
    assert f"width {shipped.settings.width}" in capsys.readouterr().err


def _perturbed(net: TransformerNet) -> TransformerNet:
    """``net`` with its zero-initialised last conv given weights, so the branch changes the image."""
    torch.manual_seed(1)
    last = net.net[-1]
    with torch.no_grad():
        last.weight.normal_(0, 0.05)
    return net.eval()


def test_training_scores_the_clamped_image_a_user_gets():
    net = _perturbed(TransformerNet(width=4, n_residual=1)).train()
    with torch.no_grad():
        net.net[-1].bias.fill_(100.0)  # +100 grey levels: the brighter pixels overflow white
    out = net(torch.rand(1, 3, 32, 32))
    pixels = out.detach()
    assert float(pixels.min()) >= 0.0 and float(pixels.max()) <= 1.0
    assert float((pixels == 1.0).float().mean()) > 0.2
    out.mean().backward()
    # the pixels still in range go on teaching the network
    assert float(net.net[-1].bias.grad.abs().sum()) > 0


def test_noise_channels_paint_on_a_flat_region():
    flat = torch.full((1, 3, 40, 40), 0.5)
    plain = _perturbed(TransformerNet(width=4, n_residual=1))
    noisy = _perturbed(TransformerNet(width=4, n_residual=1, noise_channels=2))
    with torch.no_grad():
        # A convolution of a flat image (reflection padding) is flat: nothing to paint strokes on.
        assert float(plain(flat).std()) < 1e-5
        assert float(noisy(flat).std()) > 1e-3


def test_noise_is_a_fixed_pattern_in_eval_mode_and_fresh_in_training():
    net = _perturbed(TransformerNet(width=4, n_residual=1, noise_channels=2))
    image = torch.rand(2, 3, 24, 32)
    with torch.no_grad():
        first, second = net(image), net(image)
        assert torch.equal(first, second)
        # the same pattern for every image of a batch: a batch gives what one image at a time gives
        assert torch.allclose(net(image[1:]), first[1:], atol=1e-6)
        net.train()
        assert not torch.equal(net(image), net(image))


def test_a_noise_model_reloads_with_its_noise_channels(tmp_path):
    from visage.style.fast import StyleModel

    settings = FastStyleSettings(width=4, n_residual=1, noise_channels=2)
    net = _perturbed(TransformerNet(width=4, n_residual=1, noise_channels=2))
    path = StyleModel(net=net, style="s.png", feature_network=NET, settings=settings).save(tmp_path / "n.pt")
    again = load_style_model(path)
    assert again.net.noise_channels == 2
    photo = _stripes(40)
    assert np.array_equal(again.apply_pixels(photo), StyleModel(net, "s.png", NET, settings).apply_pixels(photo))


def test_a_model_saved_before_noise_channels_existed_loads(tmp_path):
    from visage.style.fast import StyleModel

    path = StyleModel(net=TransformerNet(width=4, n_residual=1), style="s.png", feature_network=NET,
                      settings=FastStyleSettings(width=4, n_residual=1)).save(tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)
    for key in ("noise_channels", "crop_size"):
        del payload["settings"][key]
    torch.save(payload, path)
    assert load_style_model(path).net.noise_channels == 0


def test_random_crops_keep_the_pixel_scale_of_image_size():
    import random

    from visage.style.fast import _training_crop

    photo = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    settings = FastStyleSettings(image_size=60, crop_size=24)
    rng = random.Random(0)
    crops = [_training_crop([photo], 0, settings, rng, {}, 10) for _ in range(20)]
    assert all(c.shape == (24, 24, 3) for c in crops)
    # each crop is a window of the photo at its own scale (short side 60 = image_size) ...
    c = crops[0]
    windows = [(top, left) for top in range(60 - 23) for left in range(90 - 23)
               if np.array_equal(photo[top:top + 24, left:left + 24], c)]
    assert len(windows) == 1
    # ... and the windows move
    assert len({c.tobytes() for c in crops}) > 10
    centre = _training_crop([photo], 0, FastStyleSettings(image_size=60), rng, {}, 10)
    assert np.array_equal(centre, photo[:, 15:75])


def test_bad_crop_and_noise_settings():
    with pytest.raises(VisageError, match="crop_size"):
        FastStyleSettings(image_size=64, crop_size=128).validate()
    with pytest.raises(VisageError, match="noise_channels"):
        FastStyleSettings(noise_channels=-1).validate()


def test_fine_tuning_adds_noise_channels_with_zero_weights_and_refuses_fewer(tmp_path):
    from visage.style.fast import StyleModel, _init_weights

    base = _perturbed(TransformerNet(width=4, n_residual=1))
    path = StyleModel(net=base, style="s.png", feature_network=NET,
                      settings=FastStyleSettings(width=4, n_residual=1)).save(tmp_path / "base.pt")
    grown = TransformerNet(width=4, n_residual=1, noise_channels=2)
    grown.load_state_dict(_init_weights(FastStyleSettings(width=4, n_residual=1, noise_channels=2,
                                                          init_model=str(path))))
    photo = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        # the new channels start with zero weights: the same output as the model it starts from
        assert torch.allclose(grown.eval()(photo), base(photo), atol=1e-5)

    noisy = StyleModel(net=grown, style="s.png", feature_network=NET,
                       settings=FastStyleSettings(width=4, n_residual=1, noise_channels=2)).save(tmp_path / "n.pt")
    with pytest.raises(VisageError, match="noise channels"):
        _init_weights(FastStyleSettings(width=4, n_residual=1, noise_channels=0, init_model=str(noisy)))


def test_output_norm_gives_the_learnt_colours_whatever_the_photo_brightness():
    # spreads small enough that the clamp to [0, 1] cuts nothing off
    mean, spread = torch.tensor([0.3, 0.4, 0.6]), torch.tensor([0.06, 0.05, 0.07])
    normed = _perturbed(TransformerNet(width=4, n_residual=1, output_norm=True))
    normed.set_output_colours(mean, spread)
    plain = _perturbed(TransformerNet(width=4, n_residual=1))
    photo = torch.from_numpy(_stripes(40)).permute(2, 0, 1)[None].float() / 255
    dark, bright = 0.3 * photo, 0.4 + 0.5 * photo
    with torch.no_grad():
        for image in (dark, bright):
            out = normed(image)
            assert torch.allclose(out.mean(dim=(2, 3))[0], mean, atol=1e-4)
            assert torch.allclose(out.std(dim=(2, 3))[0], spread, atol=1e-3)  # 2% of the smallest spread
        # without it, the output's mean colour follows the photo's: here 0.47 grey levels apart
        gap = plain(bright).mean() - plain(dark).mean()
        assert float(gap) > 0.4
    with pytest.raises(VisageError, match="output normalisation"):
        plain.set_output_colours(mean, spread)


def test_an_output_norm_model_reloads_and_fine_tunes_only_as_one(tmp_path):
    from visage.style.fast import StyleModel, _init_weights

    settings = FastStyleSettings(width=4, n_residual=1, output_norm=True)
    net = _perturbed(TransformerNet(width=4, n_residual=1, output_norm=True))
    net.set_output_colours(torch.tensor([0.3, 0.5, 0.7]), torch.tensor([0.1, 0.1, 0.1]))
    path = StyleModel(net=net, style="s.png", feature_network=NET, settings=settings).save(tmp_path / "o.pt")
    again = load_style_model(path)
    photo = _stripes(40)
    assert np.array_equal(again.apply_pixels(photo), StyleModel(net, "s.png", NET, settings).apply_pixels(photo))
    # the mean colour of its output is the learnt one (0.3, 0.5, 0.7 of 255), up to rounding
    assert np.allclose(again.apply_pixels(photo).reshape(-1, 3).mean(0), [76.5, 127.5, 178.5], atol=1)
    with pytest.raises(VisageError, match="output-norm"):
        _init_weights(FastStyleSettings(width=4, n_residual=1, init_model=str(path)))


@pytest.mark.slow
def test_output_norm_training_starts_at_the_style_colours(tmp_path):
    _scenes(tmp_path)
    style = _stripes()
    settings = FastStyleSettings(image_size=32, batch_size=2, max_steps=1, lr=1e-6, width=4, n_residual=1,
                                 network=NET, output_norm=True)
    model = train_style_model(style, tmp_path, settings, progress=False)
    colours = style.reshape(-1, 3) / 255.0
    layer = model.net.output_colours
    assert np.allclose(layer.bias.detach().numpy(), colours.mean(0), atol=1e-4)
    assert np.allclose(layer.weight.detach().numpy(), colours.std(0, ddof=1), atol=1e-4)
