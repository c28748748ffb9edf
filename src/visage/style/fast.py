"""Fast style transfer (Johnson et al. 2016): a feed-forward image-transformation network trained
for one style with perceptual losses, then applied to images and video frames in one pass.

The network: a 9×9 conv, two stride-2 convs, five residual blocks, two upsampling convs and a 9×9
conv back to RGB, each conv followed by instance normalisation (Ulyanov et al.) and ReLU, with
reflection padding. The loss: J_content at one VGG layer between the input and the output,
J_style between the output's Gram matrices and the style's, and total variation.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VisageError
from ..media.images import ImageSource, list_images, load_image
from ..media.video import iter_frames, probe
from .features import check_layers, extract, load_feature_net
from .losses import content_cost, mean_gram, style_cost, total_variation
from .transfer import (
    _resize_exact,
    _resize_long,
    _threads,
    _to_pixels,
    _to_tensor,
    record_step,
    resolve_style_layers,
)

MODEL_FORMAT = "visage-style-model"
MODEL_VERSION = 1


# --- the network -----------------------------------------------------------------------------

class _ConvNormRelu(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, relu: bool = True, upsample: bool = False):
        layers: list[nn.Module] = []
        if upsample:
            # Nearest upsampling then a conv avoids the checkerboard of transposed convs.
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        layers += [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(c_in, c_out, kernel, stride),
                   nn.InstanceNorm2d(c_out, affine=True)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(_ConvNormRelu(channels, channels, 3), _ConvNormRelu(channels, channels, 3, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TransformerNet(nn.Module):
    """Johnson's image-transformation network with instance normalisation.

    Takes RGB in [0, 1], shape (N, 3, H, W), and returns an image of the same shape, clamped to
    [0, 1]. Training scores the clamped image, the one a user gets: unclamped, a network learns to
    match the style's Gram matrices with colours beyond white and black, and clamping them at use
    tripled the measured style loss. Unlike the paper's network, the output is the input plus the
    network's output (a global residual connection), which makes short CPU trainings work.
    ``width`` is the channel count of the first layer (32 in the
    paper); ``n_residual`` the number of residual blocks (5).

    ``noise_channels`` extra input channels carry Gaussian noise (as in Ulyanov et al.'s texture
    networks): a convolution maps a flat region, such as a clear sky, to a flat output, so without
    noise the network cannot paint strokes there. Training draws fresh noise each step (from torch's
    random state); in eval mode the noise is a fixed pattern (seed :data:`NOISE_SEED`), so one image
    always gives the same output and video frames get the same strokes.

    With ``output_norm``, the sum of input and change is instance-normalised per colour channel and
    then given a learnt mean and spread (:attr:`output_colours`). Without it, the output's mean colour
    follows the photo's (the layers after the first instance norm never see the photo's brightness, so
    the change cannot undo it), while a style's Gram matrices fix its palette.
    """

    def __init__(self, width: int = 32, n_residual: int = 5, noise_channels: int = 0, output_norm: bool = False):
        super().__init__()
        w = width
        self.noise_channels = noise_channels
        self.output_colours = nn.InstanceNorm2d(3, affine=True) if output_norm else None
        self.net = nn.Sequential(
            _ConvNormRelu(3 + noise_channels, w, 9), _ConvNormRelu(w, 2 * w, 3, stride=2),
            _ConvNormRelu(2 * w, 4 * w, 3, stride=2),
            *[_Residual(4 * w) for _ in range(n_residual)],
            _ConvNormRelu(4 * w, 2 * w, 3, upsample=True), _ConvNormRelu(2 * w, w, 3, upsample=True),
            nn.ReflectionPad2d(4), nn.Conv2d(w, 3, 9),
        )
        # Zero the last conv so that training starts exactly at the identity.
        last = self.net[-1]
        assert isinstance(last, nn.Conv2d) and last.bias is not None
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        h, w = rgb01.shape[-2:]
        # Pad to a multiple of 4 so the two stride-2 convs and upsamplings return the input size.
        ph, pw = (-h) % 4, (-w) % 4
        x = F.pad(rgb01, (0, pw, 0, ph), mode="reflect") if ph or pw else rgb01
        # A global residual: the network starts near the identity and learns the change a style makes,
        # so a style shows after hundreds of steps on a CPU rather than tens of thousands.
        # The branch works in 0–255 units (as Johnson's network does), which keeps Adam's steps on the
        # wide last conv to about a grey level each.
        branch = x * 255.0
        if self.noise_channels:
            branch = torch.cat([branch, NOISE_SCALE * self._noise(x)], dim=1)
        y = x + self.net(branch) / 255.0
        if self.output_colours is not None:
            y = self.output_colours(y)
        return y[..., :h, :w].clamp(0.0, 1.0)

    def set_output_colours(self, mean: torch.Tensor, spread: torch.Tensor) -> None:
        """Start the learnt output colours at this per-channel ``mean`` and ``spread`` (3 values each,
        in [0, 1] units), such as a style image's; raises VisageError without ``output_norm``."""
        if self.output_colours is None:
            raise VisageError("this network has no output normalisation (output_norm=False)")
        with torch.no_grad():
            self.output_colours.weight.copy_(spread)
            self.output_colours.bias.copy_(mean)

    def _noise(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        shape = (n, self.noise_channels, h, w)
        if self.training:
            return torch.randn(shape, dtype=x.dtype, device=x.device)
        generator = torch.Generator().manual_seed(NOISE_SEED)
        # One pattern per image size, the same for every image of the batch.
        return torch.randn((1, *shape[1:]), generator=generator, dtype=x.dtype).to(x.device).expand(shape)


#: The fixed noise pattern of a network in eval mode, and the noise's standard deviation in the
#: branch's 0–255 units (about an image channel's spread).
NOISE_SEED = 0
NOISE_SCALE = 64.0


# --- a trained model -------------------------------------------------------------------------

@dataclass
class FastStyleSettings:
    """Training settings for one style. Sizes are in pixels."""

    image_size: int = 256
    #: Train on random crop_size squares cut from each image resized to short side image_size, so
    #: strokes are learnt at the pixel scale of image_size for a quarter of the work at half the side
    #: (None: the whole centre square of image_size).
    crop_size: int | None = None
    batch_size: int = 4
    epochs: int = 2
    #: Stop after this many optimiser steps (None: run all epochs).
    max_steps: int | None = None
    lr: float = 1e-3
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 0.0
    content_layer: str = "relu2_2"
    #: {layer: λ_l}; None: relu1_2, relu2_2, relu3_3, relu4_3 weighted 1/n_C², summing to 1.
    style_layers: dict[str, float] | None = None
    #: Long side the style image is resized to (default: image_size).
    style_size: int | None = None
    width: int = 32
    n_residual: int = 5
    #: Noise channels fed to the network beside RGB (see :class:`TransformerNet`); 0 in older models.
    noise_channels: int = 0
    #: Normalise the output's colours to a learnt mean and spread, which start at the style image's
    #: (see :class:`TransformerNet`); False in older models.
    output_norm: bool = False
    #: Start from this model's weights (a model file or a shipped style's name) instead of random
    #: ones: fine-tuning. Its width and n_residual must be these; its noise channels at most these.
    init_model: str | None = None
    network: str = "auto"
    seed: int = 0
    threads: int | None = None
    device: str = "cpu"

    def validate(self) -> None:
        """Raise :class:`VisageError` for settings that cannot work."""
        if not 16 <= self.image_size <= 4096:
            raise VisageError(f"image_size must be from 16 to 4096 pixels, not {self.image_size}")
        if self.crop_size is not None and not 16 <= self.crop_size <= self.image_size:
            raise VisageError(f"crop_size must be from 16 pixels to image_size ({self.image_size}), not {self.crop_size}")
        if self.batch_size < 1 or self.epochs < 1 or (self.max_steps is not None and self.max_steps < 1):
            raise VisageError("batch_size, epochs and max_steps must be at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise VisageError(f"lr must be > 0, not {self.lr}")
        if self.width < 1 or self.n_residual < 0 or self.noise_channels < 0:
            raise VisageError("width must be ≥ 1, and n_residual and noise_channels ≥ 0")


FAST_STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


@dataclass
class StyleModel:
    """A trained fast-style network with what it was trained on. ``apply`` stylises one image."""

    net: TransformerNet
    style: str
    feature_network: str
    settings: FastStyleSettings
    history: list[dict] = field(default_factory=list)

    def apply(self, image: ImageSource, size: int | None = None) -> np.ndarray:
        """Stylise ``image`` (resized to long side ``size`` when given); returns (H, W, 3) uint8 RGB."""
        pixels = load_image(image).pixels
        if size is not None:
            if not 16 <= size <= 8192:
                raise VisageError(f"size must be from 16 to 8192 pixels, not {size}")
            pixels = _resize_long(pixels, size)
        return self.apply_pixels(pixels)

    def apply_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Stylise an (H, W, 3) uint8 RGB array; returns one of the same shape."""
        device = next(self.net.parameters()).device
        self.net.eval()
        with torch.inference_mode():
            return _to_pixels(self.net(_to_tensor(pixels, str(device))))

    def metadata(self) -> dict[str, str]:
        """Text chunks for PNGs this model makes."""
        return {"Software": "visage style (fast)", "visage:network": self.feature_network,
                "visage:style": self.style, "visage:model": "johnson-transformer-instancenorm"}

    def save(self, path: os.PathLike) -> Path:
        """Write the model to ``path`` (a torch file of tensors and plain values); returns the path."""
        path = Path(path)
        payload = {
            "format": MODEL_FORMAT, "version": MODEL_VERSION,
            "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "style": self.style, "feature_network": self.feature_network,
            "settings": asdict(self.settings), "history": self.history,
        }
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)
        return path

    def stylize_video(self, source: os.PathLike, destination: os.PathLike, size: int | None = None,
                      progress: bool = True) -> int:
        """Stylise every frame of video ``source`` into ``destination`` (mp4v codec, same frame rate);
        returns the number of frames written."""
        import cv2
        from tqdm import tqdm

        info = probe(source)
        fps = info.fps or 25.0
        total = info.frames or None
        writer = None
        count = 0
        try:
            for rgb in tqdm(iter_video_frames(source, size), total=total, desc="style video",
                            unit="frame", disable=not progress):
                styled = self.apply_pixels(rgb)
                if writer is None:
                    h, w = styled.shape[:2]
                    writer = cv2.VideoWriter(str(destination), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
                    if not writer.isOpened():
                        raise VisageError(f"{destination}: cannot write a video there")
                writer.write(cv2.cvtColor(styled, cv2.COLOR_RGB2BGR))
                count += 1
        finally:
            if writer is not None:
                writer.release()
        if count == 0:
            raise VisageError(f"{source}: the video has no frames")
        return count


@dataclass(frozen=True)
class ShippedStyle:
    """A fast-style model that ships inside the package (``visage/data/styles/NAME.pt``), with its
    model card (``NAME.json``: what it was trained on, how, the licences, measured numbers)."""

    name: str
    path: Path
    card: dict

    @property
    def style_image(self) -> str:
        return str(self.card.get("style_image", {}).get("name", "?"))

    @property
    def licence(self) -> str:
        return str(self.card.get("style_image", {}).get("licence", "?"))


def _styles_dir() -> Path:
    from importlib import resources

    return Path(str(resources.files("visage") / "data" / "styles"))


def shipped_style_models() -> list[ShippedStyle]:
    """The fast-style models that ship with visage, sorted by name (empty if none)."""
    import json

    folder = _styles_dir()
    if not folder.is_dir():
        return []
    found = []
    for weights in sorted(folder.glob("*.pt")):
        card_file = weights.with_suffix(".json")
        card = json.loads(card_file.read_text(encoding="utf-8")) if card_file.is_file() else {}
        found.append(ShippedStyle(name=weights.stem, path=weights, card=card))
    return found


def resolve_style_model(model: os.PathLike | str) -> Path:
    """The file of ``model``: a path to a model file, or the name of a shipped style (``starry``).
    A file that exists wins over a shipped name. Raises :class:`VisageError` if it is neither."""
    path = Path(model)
    if path.is_file():
        return path
    shipped = {s.name: s for s in shipped_style_models()}
    if str(model) in shipped:
        return shipped[str(model)].path
    names = ", ".join(shipped) or "none"
    raise VisageError(f"{model}: no such style model file, nor a shipped style (shipped: {names}; "
                      "`visage style --list-models` lists them)")


def load_style_model(path: os.PathLike | str, device: str = "cpu") -> StyleModel:
    """Load a model written by :meth:`StyleModel.save`, from its file or by the name of a shipped
    style (see :func:`shipped_style_models`); raises :class:`VisageError` when ``path`` is neither
    or is not such a model. Weights stored as float16 are loaded as float32."""
    path = resolve_style_model(path)
    payload = _read_visage_file(path, MODEL_FORMAT, "style model")
    settings = FastStyleSettings(**payload["settings"])
    net = TransformerNet(settings.width, settings.n_residual, settings.noise_channels, settings.output_norm)
    try:
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()})
    except (RuntimeError, KeyError) as exc:
        raise VisageError(f"{path}: style model weights do not fit the network ({exc})") from None
    net.to(device).eval()
    return StyleModel(net=net, style=payload["style"], feature_network=payload["feature_network"],
                      settings=settings, history=list(payload.get("history", [])))


# --- training --------------------------------------------------------------------------------

def _training_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder``, recursively, sorted; raises VisageError if none."""
    if not Path(folder).is_dir():
        raise VisageError(f"{folder}: not a folder of training images")
    return list_images(folder, recursive=True, required=True)


def train_style_model(
    style: ImageSource,
    images: os.PathLike | Sequence[ImageSource],
    settings: FastStyleSettings | None = None,
    *,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
    checkpoint: os.PathLike | str | None = None,
    checkpoint_every: int = 50,
    resume: bool = False,
) -> StyleModel:
    """Train a :class:`TransformerNet` for ``style`` on ``images`` (a folder or a list of images).

    Each training image is resized and centre-cropped to ``image_size`` squares (or, with
    ``crop_size``, resized to short side ``image_size`` and cut at a random place). Returns the trained
    :class:`StyleModel`; its ``history`` holds the loss terms of every step.

    With ``checkpoint`` (a file path), the network, the optimiser, the step, the random states, the
    place in the epoch and the history are written there (atomically) every ``checkpoint_every``
    steps and at the end. With ``resume`` too, a run whose checkpoint exists continues from its
    step; the run's settings must match the checkpoint's, except ``epochs`` and ``max_steps``
    (so a run may be extended). A resumed run gives the same network as an uninterrupted one.
    """
    from tqdm import tqdm

    settings = settings or FastStyleSettings()
    settings.validate()
    sources = _training_images(images) if isinstance(images, (str, os.PathLike)) else list(images)
    if not sources:
        raise VisageError("no training images given")
    style_img = load_image(style)
    rng = random.Random(settings.seed)

    feature_net = load_feature_net(settings.network, settings.device)
    weights = resolve_style_layers(feature_net, settings.style_layers or
                                   _default_fast_layers(feature_net))
    check_layers(feature_net, [settings.content_layer])
    layers = list(dict.fromkeys([*weights, settings.content_layer]))
    # Seeded here, after the feature network, whose first (uncached) load draws random numbers.
    torch.manual_seed(settings.seed)
    net = TransformerNet(settings.width, settings.n_residual, settings.noise_channels,
                         settings.output_norm).to(settings.device)
    if settings.init_model is not None:
        net.load_state_dict(_init_weights(settings))
    elif settings.output_norm:
        colours = torch.from_numpy(style_img.pixels.reshape(-1, 3).astype(np.float32) / 255.0)
        net.set_output_colours(colours.mean(0), colours.std(0))
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)

    history: list[dict] = []
    step, pos, elapsed = 0, 0, 0.0
    order: list[int] = []
    if checkpoint_every < 1:
        raise VisageError(f"checkpoint_every must be at least 1, not {checkpoint_every}")
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        state = _read_checkpoint(Path(checkpoint), settings, len(sources))
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        rng.setstate(_as_rng_state(state["python_rng"]))
        step, order, pos, elapsed = int(state["step"]), list(state["order"]), int(state["pos"]), float(state["seconds"])
        history = list(state["history"])
    steps_per_epoch = math.ceil(len(sources) / settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    if settings.max_steps is not None:
        total_steps = min(total_steps, settings.max_steps)
    cache: dict[int, np.ndarray] = {}  # small sets are decoded once
    cache_limit = 2000

    with _threads(settings.threads):
        with torch.no_grad():
            style_size = settings.style_size or settings.image_size
            style_t = _to_tensor(_resize_long(style_img.pixels, style_size), settings.device)
            grams = {k: mean_gram(v) for k, v in extract(feature_net, style_t, list(weights)).items()}
        net.train()
        bar = tqdm(total=total_steps, initial=min(step, total_steps), desc="style-train", unit="step",
                   disable=not progress)
        started = time.perf_counter() - elapsed

        def save_checkpoint() -> None:
            if checkpoint is not None:
                _write_checkpoint(Path(checkpoint), {
                    "format": CHECKPOINT_FORMAT, "version": MODEL_VERSION, "settings": asdict(settings),
                    "n_sources": len(sources), "step": step, "order": order, "pos": pos,
                    "seconds": time.perf_counter() - started, "history": history,
                    "net": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                    "optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state(), "python_rng": rng.getstate()})

        try:
            while step < total_steps:
                if pos >= len(order):  # a new epoch
                    order = list(range(len(sources)))
                    rng.shuffle(order)
                    pos = 0
                while pos < len(order) and step < total_steps:
                    idx = order[pos:pos + settings.batch_size]
                    pos += len(idx)
                    batch = torch.cat([_to_tensor(_training_crop(sources, i, settings, rng, cache, cache_limit),
                                                  settings.device) for i in idx])
                    with torch.no_grad():
                        target = extract(feature_net, batch, [settings.content_layer])[settings.content_layer]
                    opt.zero_grad(set_to_none=True)
                    out = net(batch)
                    feats = extract(feature_net, out, layers)
                    j_content = settings.content_weight * content_cost(target, feats[settings.content_layer])
                    j_style = settings.style_weight * style_cost(grams, feats, weights)
                    loss = j_content + j_style
                    j_tv = settings.tv_weight * total_variation(out) if settings.tv_weight else torch.zeros(())
                    loss = loss + j_tv
                    if not torch.isfinite(loss):
                        raise VisageError(f"training diverged at step {step + 1} (loss {loss.item()}); lower lr")
                    loss.backward()
                    opt.step()
                    step += 1
                    entry = {"step": step, "content": j_content.item(), "style": j_style.item(),
                             "tv": j_tv.item(), "total": loss.item(), "seconds": time.perf_counter() - started}
                    record_step(entry, history, bar, callback)
                    if step % checkpoint_every == 0 and step < total_steps:
                        save_checkpoint()
            save_checkpoint()
        finally:
            bar.close()
    net.eval()
    return StyleModel(net=net, style=style_img.name, feature_network=feature_net.name, settings=settings,
                      history=history)


CHECKPOINT_FORMAT = "visage-style-checkpoint"
#: Settings a resumed run may change: how long it goes on.
_RESUMABLE_CHANGES = ("epochs", "max_steps", "threads")


def _write_checkpoint(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _read_visage_file(path: Path, file_format: str, what: str) -> dict:
    """The dict saved in a style model or checkpoint file; a VisageError naming ``path`` when it is
    unreadable, of another format or of another version."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 -- any unreadable file becomes a VisageError naming it
        raise VisageError(f"{path}: not a visage {what} (cannot read it as one)") from None
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        raise VisageError(f"{path}: not a visage {what}")
    if payload.get("version") != MODEL_VERSION:
        raise VisageError(f"{path}: {what} version {payload.get('version')} is not supported "
                          f"(expected {MODEL_VERSION})")
    return payload


def _read_checkpoint(path: Path, settings: FastStyleSettings, n_sources: int) -> dict:
    state = _read_visage_file(path, CHECKPOINT_FORMAT, "style-training checkpoint")
    saved, now = dict(state["settings"]), asdict(settings)
    changed = sorted(k for k in now if k not in _RESUMABLE_CHANGES and saved.get(k) != now[k])
    if changed:
        raise VisageError(f"{path}: the checkpoint was trained with other settings ({', '.join(changed)}); "
                          "resume with the same settings or start a new checkpoint")
    if state["n_sources"] != n_sources:
        raise VisageError(f"{path}: the checkpoint was trained on {state['n_sources']} images, not {n_sources}")
    return state


def _init_weights(settings: FastStyleSettings) -> dict:
    """The state dict of ``settings.init_model``, checked to fit the network the settings describe.

    A model with fewer noise channels than ``settings`` gets zero weights for the new ones, so
    fine-tuning starts from exactly that model's output and learns what the noise is for."""
    start = load_style_model(str(settings.init_model))
    shape = (start.settings.width, start.settings.n_residual)
    if shape != (settings.width, settings.n_residual) or start.settings.noise_channels > settings.noise_channels:
        raise VisageError(f"{settings.init_model}: its network has width {shape[0]}, {shape[1]} residual blocks "
                          f"and {start.settings.noise_channels} noise channels, not {settings.width}, "
                          f"{settings.n_residual} and at most {settings.noise_channels}; train with the same "
                          "--width, and at least as many --noise-channels")
    if start.settings.output_norm != settings.output_norm:
        raise VisageError(f"{settings.init_model}: its network was trained "
                          f"{'with' if start.settings.output_norm else 'without'} --output-norm; fine-tune it the same way")
    state = start.net.state_dict()
    first = "net.0.1.weight"  # the 9×9 conv after its padding: (width, 3 + noise, 9, 9)
    extra = settings.noise_channels - start.settings.noise_channels
    if extra:
        weight = state[first]
        state[first] = torch.cat([weight, weight.new_zeros(weight.shape[0], extra, *weight.shape[2:])], dim=1)
    return state


def _as_rng_state(saved) -> tuple:
    """``random.Random.getstate()`` after a trip through torch.save (tuples may come back as lists)."""
    version, internal, gauss = saved
    return (version, tuple(internal), gauss)


def _default_fast_layers(net) -> dict[str, float]:
    from .features import channels

    raw = {name: 1.0 / channels(net, name) ** 2 for name in FAST_STYLE_LAYERS}
    total = sum(raw.values())
    return {name: value / total for name, value in raw.items()}


def _training_crop(sources, i: int, settings: FastStyleSettings, rng: random.Random, cache: dict,
                   cache_limit: int) -> np.ndarray:
    """Image ``i`` resized to short side ``image_size``: its centre square, or a random
    ``crop_size`` square of it. Small sets are decoded and resized once."""
    size = settings.image_size
    if i in cache:
        resized = cache[i]
    else:
        pixels = load_image(sources[i]).pixels
        h, w = pixels.shape[:2]
        scale = size / min(h, w)
        resized = _resize_exact(pixels, max(size, round(w * scale)), max(size, round(h * scale)))
        if settings.crop_size is None:  # only the centre square is ever used: keep just that
            top, left = (resized.shape[0] - size) // 2, (resized.shape[1] - size) // 2
            resized = np.ascontiguousarray(resized[top:top + size, left:left + size])
        if len(cache) < cache_limit:
            cache[i] = resized
    if settings.crop_size is None:
        return resized
    side = settings.crop_size
    top, left = rng.randint(0, resized.shape[0] - side), rng.randint(0, resized.shape[1] - side)
    return np.ascontiguousarray(resized[top:top + side, left:left + side])


# --- video -----------------------------------------------------------------------------------

def iter_video_frames(source: os.PathLike, size: int | None = None) -> Iterator[np.ndarray]:
    """Frames of video file ``source`` (read by :func:`visage.media.video.iter_frames`) as
    (H, W, 3) uint8 RGB arrays, resized to long side ``size`` when given."""
    for rgb in iter_frames(source):
        yield _resize_long(rgb, size) if size else rgb
