"""Neural style transfer by optimisation (Gatys et al.): find G minimising
J(G) = α·J_content(C, G) + β·J_style(S, G) + γ·TV(G).

Work goes coarse to fine: the image is optimised at a small size first, then upsampled and refined
at each doubling up to the requested size, so a 2048-px result needs only a few steps at full size.
Targets (the content activations and the style Gram matrices) are computed once per size, without
autograd; each step runs the feature network once, up to the deepest layer needed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage
from PIL import PngImagePlugin

from ..errors import VisageError
from ..media.images import ImageSource, load_image
from .features import channels, check_layers, extract, load_feature_net
from .losses import content_cost, mean_gram, style_cost, total_variation

#: Style layers and their weights λ_l. The weights are 1000/n_C² (as in Gatys' own notebook) so
#: that every layer contributes alike; they are scaled to sum to 1.
DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
DEFAULT_CONTENT_LAYER = "relu4_2"
MIN_SIZE, MAX_SIZE = 16, 8192
#: Above this many pixels L-BFGS keeps a shorter history (each entry is two image-sized vectors).
LARGE_IMAGE_PIXELS = 1_000_000


@dataclass
class StyleSettings:
    """Everything that decides a style-transfer result. ``size`` is the output's long side in pixels."""

    size: int = 512
    content_weight: float = 1.0
    style_weight: float = 1.0
    tv_weight: float = 0.0
    #: {layer: λ_l}; None means :data:`DEFAULT_STYLE_LAYERS` weighted 1/n_C², summing to 1.
    style_layers: dict[str, float] | None = None
    content_layer: str = DEFAULT_CONTENT_LAYER
    init: str = "content"
    optimizer: str = "lbfgs"
    #: Steps (loss evaluations) at the coarsest size; each finer size gets half the steps of
    #: the one before it (at least ``min_fine_steps``) unless ``fine_steps`` is set.
    steps: int = 300
    fine_steps: int | None = None
    min_fine_steps: int = 10
    #: Coarse to fine: start at this long side (halving ``size`` until it is not larger).
    coarse_size: int = 512
    #: Adam's learning rate, for pixels in [0, 1].
    lr: float = 0.02
    #: Transfer luminance only: the result keeps the content's colours.
    preserve_color: bool = False
    #: Style images are resized to style_scale × the working size (long side).
    style_scale: float = 1.0
    #: Or a fixed long side for the style images at every level (overrides style_scale).
    style_size: int | None = None
    network: str = "auto"
    device: str = "cpu"
    threads: int | None = None
    seed: int = 0
    #: Write an intermediate PNG every this many steps (0: never) into ``frames_dir``.
    save_every: int = 0
    frames_dir: str | None = None

    def validate(self) -> None:
        """Raise :class:`VisageError` for settings that cannot work."""
        if not isinstance(self.size, int) or not MIN_SIZE <= self.size <= MAX_SIZE:
            raise VisageError(f"size must be a whole number of pixels from {MIN_SIZE} to {MAX_SIZE}, not {self.size!r}")
        if not MIN_SIZE <= self.coarse_size:
            raise VisageError(f"coarse_size must be at least {MIN_SIZE}, not {self.coarse_size}")
        for name in ("content_weight", "style_weight", "tv_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise VisageError(f"{name} must be a finite number ≥ 0, not {value}")
        if self.init not in ("content", "noise"):
            raise VisageError(f"init must be 'content' or 'noise', not {self.init!r}")
        if self.optimizer not in ("lbfgs", "adam"):
            raise VisageError(f"optimizer must be 'lbfgs' or 'adam', not {self.optimizer!r}")
        if self.steps < 1:
            raise VisageError(f"steps must be at least 1, not {self.steps}")
        if not 0.05 <= self.style_scale <= 4:
            raise VisageError(f"style_scale must be between 0.05 and 4, not {self.style_scale}")
        if self.style_size is not None and not MIN_SIZE <= self.style_size <= MAX_SIZE:
            raise VisageError(f"style_size must be from {MIN_SIZE} to {MAX_SIZE} pixels, not {self.style_size}")
        if self.style_layers is not None:
            if not self.style_layers:
                raise VisageError("style_layers is empty")
            for layer, weight in self.style_layers.items():
                if not (math.isfinite(weight) and weight >= 0):
                    raise VisageError(f"style layer {layer}: weight must be ≥ 0, not {weight}")
        if self.save_every and not self.frames_dir:
            raise VisageError("save_every needs frames_dir, the folder to write frames into")

    def level_sizes(self) -> list[int]:
        """Long sides of the coarse-to-fine levels, smallest first, ending at ``size``."""
        sizes = [self.size]
        while sizes[0] > self.coarse_size and sizes[0] // 2 >= MIN_SIZE:
            sizes.insert(0, math.ceil(sizes[0] / 2))
        return sizes

    def level_steps(self, n_levels: int) -> list[int]:
        """Steps to run at each level, coarsest first."""
        steps = [self.steps]
        for _ in range(1, n_levels):
            steps.append(self.fine_steps if self.fine_steps is not None else max(steps[-1] // 2, self.min_fine_steps))
        return steps


@dataclass
class StyleResult:
    """A stylised image: ``pixels`` (H, W, 3) uint8 RGB, the network used, the loss at every step."""

    pixels: np.ndarray
    network: str
    settings: StyleSettings
    styles: list[str]
    style_blend: list[float]
    content: str
    #: One dict per step: level, size, step, content, style, tv, total (weighted terms).
    history: list[dict] = field(default_factory=list)
    #: J of the returned image at the final size (L-BFGS: the best it evaluated; before clamping).
    final_loss: float = float("nan")
    seconds: float = 0.0

    def metadata(self) -> dict[str, str]:
        """The PNG text chunks :meth:`save` writes."""
        return {
            "Software": "visage style",
            "visage:network": self.network,
            "visage:content": self.content,
            "visage:styles": json.dumps(dict(zip(self.styles, self.style_blend))),
            "visage:settings": json.dumps(asdict(self.settings)),
            "visage:final_loss": f"{self.final_loss:.6g}",
        }

    def save(self, path: os.PathLike) -> Path:
        """Write the image as PNG with :meth:`metadata` as text chunks; returns the path."""
        return save_png(self.pixels, path, self.metadata())


def save_png(pixels: np.ndarray, path: os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write RGB uint8 ``pixels`` to ``path`` as PNG with ``metadata`` as text chunks; returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise VisageError(f"{path}: output must be a .png file (it carries the settings as metadata)")
    if path.parent and not path.parent.is_dir():
        raise VisageError(f"{path.parent}: folder does not exist")
    info = PngImagePlugin.PngInfo()
    for key, value in (metadata or {}).items():
        info.add_text(key, value)
    PILImage.fromarray(pixels).save(path, pnginfo=info)
    return path


def stylize(
    content: ImageSource,
    styles: ImageSource | Sequence[ImageSource],
    settings: StyleSettings | None = None,
    *,
    style_blend: Sequence[float] | None = None,
    init_image: ImageSource | None = None,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
) -> StyleResult:
    """Render ``content`` in the style of ``styles`` (one image or several, blended by
    ``style_blend``, weights normalised to sum to 1). Returns a :class:`StyleResult`.

    ``init_image`` starts the optimisation from that image instead of ``settings.init``.
    ``callback`` receives each step's loss record. Images may be paths or anything
    :func:`visage.media.images.load_image` takes; bad inputs raise :class:`VisageError`.
    """
    settings = settings or StyleSettings()
    settings.validate()
    style_list = list(styles) if isinstance(styles, (list, tuple)) else [cast(ImageSource, styles)]
    if not style_list:
        raise VisageError("give at least one style image")
    blend = _blend_weights(style_blend, len(style_list))
    content_img = load_image(content)
    style_imgs = [load_image(s) for s in style_list]
    init_img = load_image(init_image) if init_image is not None else None

    net = load_feature_net(settings.network, settings.device)
    layer_weights = resolve_style_layers(net, settings.style_layers)
    check_layers(net, [settings.content_layer])

    content_px = content_img.pixels
    style_pxs = [s.pixels for s in style_imgs]
    if settings.preserve_color:
        content_px, style_pxs = _luminance_inputs(content_px, style_pxs)

    started = time.perf_counter()
    history: list[dict] = []
    sizes = settings.level_sizes()
    steps = settings.level_steps(len(sizes))
    generator = torch.Generator().manual_seed(settings.seed)
    image: torch.Tensor | None = None
    final_loss = math.nan
    with _threads(settings.threads):
        for level, (size, n_steps) in enumerate(zip(sizes, steps)):
            content_t = _to_tensor(_resize_long(content_px, size), settings.device)
            h, w = content_t.shape[-2:]
            if image is None:
                if init_img is not None:
                    image = _to_tensor(_resize_exact(init_img.pixels, w, h), settings.device)
                elif settings.init == "noise":
                    image = torch.rand(content_t.shape, generator=generator).to(settings.device)
                else:
                    image = content_t.clone()
            else:
                image = F.interpolate(image, size=(h, w), mode="bicubic", align_corners=False).clamp_(0, 1)
            targets = _targets(net, content_t, style_pxs, blend, size, layer_weights, settings)
            image, final_loss = _optimise(net, image, targets, layer_weights, settings, level, size, n_steps,
                                          history, progress, callback)
    assert image is not None  # level_sizes() always holds at least one size
    pixels = _to_pixels(image)
    if settings.preserve_color:
        pixels = _with_content_colour(pixels, content_img.pixels)
    return StyleResult(pixels=pixels, network=net.name, settings=settings,
                       styles=[s.name for s in style_imgs], style_blend=blend, content=content_img.name,
                       history=history, final_loss=final_loss, seconds=time.perf_counter() - started)


def record_step(entry: dict, history: list[dict], bar, callback: Callable[[dict], None] | None) -> None:
    """Keep one step's loss terms, show each on the progress bar, and pass them to ``callback``."""
    history.append(entry)
    bar.set_postfix(content=f"{entry['content']:.3g}", style=f"{entry['style']:.3g}",
                    tv=f"{entry['tv']:.3g}", total=f"{entry['total']:.4g}", refresh=False)
    bar.update(1)
    if callback is not None:
        callback(entry)


def resolve_style_layers(net, style_layers: dict[str, float] | None) -> dict[str, float]:
    """Style layer weights λ_l for ``net``: the given ones (checked), or the defaults (1/n_C², summing to 1)."""
    if style_layers is not None:
        check_layers(net, style_layers)
        return dict(style_layers)
    raw = {name: 1.0 / channels(net, name) ** 2 for name in DEFAULT_STYLE_LAYERS}
    total = sum(raw.values())
    return {name: value / total for name, value in raw.items()}


def parse_style_layers(text: str) -> dict[str, float]:
    """``"relu1_1:0.2,relu2_1:0.2"`` (weights optional, default 1) → {layer: weight}."""
    layers: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, weight = item.partition(":")
        try:
            layers[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise VisageError(f"style layer {item!r}: weight {weight!r} is not a number") from None
    if not layers:
        raise VisageError(f"no style layers in {text!r}")
    return layers


def style_distance(image: ImageSource, style: ImageSource, *, size: int = 256, network: str = "auto",
                   style_layers: dict[str, float] | None = None, device: str = "cpu") -> float:
    """J_style between ``image`` and ``style`` (both resized to long side ``size``); a float."""
    net = load_feature_net(network, device)
    weights = resolve_style_layers(net, style_layers)
    with torch.no_grad():
        a = extract(net, _to_tensor(_resize_long(load_image(image).pixels, size), device), list(weights))
        s = extract(net, _to_tensor(_resize_long(load_image(style).pixels, size), device), list(weights))
        return float(style_cost({k: mean_gram(v) for k, v in s.items()}, a, weights))


# --- internals -------------------------------------------------------------------------------

@dataclass
class _Targets:
    content: torch.Tensor
    grams: dict[str, torch.Tensor]
    layers: list[str]


def _targets(net, content_t, style_pxs, blend, size, layer_weights, settings) -> _Targets:
    """Content activations and blended style Gram matrices at this size, without autograd."""
    style_size = settings.style_size or max(MIN_SIZE, round(size * settings.style_scale))
    with torch.no_grad():
        content_act = extract(net, content_t, [settings.content_layer])[settings.content_layer]
        grams: dict[str, torch.Tensor] = {}
        for weight, px in zip(blend, style_pxs):
            feats = extract(net, _to_tensor(_resize_long(px, style_size), settings.device), list(layer_weights))
            for name, act in feats.items():
                g = weight * mean_gram(act)
                grams[name] = g if name not in grams else grams[name] + g
    layers = list(dict.fromkeys([*layer_weights, settings.content_layer]))
    return _Targets(content_act, grams, layers)


def _optimise(net, image, targets: _Targets, layer_weights, settings: StyleSettings, level, size, n_steps,
              history, progress, callback) -> tuple[torch.Tensor, float]:
    """Run ``n_steps`` loss evaluations at one size; returns the image clamped to [0, 1] and its loss.

    L-BFGS runs as one ``step`` call with a strong-Wolfe line search and a budget of ``n_steps``
    evaluations (each evaluation is a step of the progress bar, as in Gatys' notebook): without a
    line search it overshoots badly whenever the first steps meet large gradients. Adam takes
    ``n_steps`` steps and keeps the image in [0, 1] after each.
    """
    from tqdm import tqdm

    image = image.detach().requires_grad_(True)
    h, w = image.shape[-2:]
    bar = tqdm(total=n_steps, desc=f"style {w}×{h}", disable=not progress, leave=True, unit="step")
    done = [0]
    best: list = [None, math.inf]  # the best evaluated image and its loss

    def closure():
        if done[0] >= n_steps:  # L-BFGS's line search may ask once more than the budget
            raise _BudgetSpent
        feats = extract(net, image, targets.layers)
        j_content = content_cost(targets.content, feats[settings.content_layer])
        j_style = style_cost(targets.grams, feats, layer_weights)
        loss = settings.content_weight * j_content + settings.style_weight * j_style
        j_tv = total_variation(image) if settings.tv_weight else None
        if j_tv is not None:
            loss = loss + settings.tv_weight * j_tv
        image.grad = None
        loss.backward()
        done[0] += 1
        if loss.item() < best[1]:  # line-search trials can be worse than where they started
            best[0], best[1] = image.detach().clone(), loss.item()
        entry = {"level": level, "size": size, "step": done[0],
                 "content": settings.content_weight * j_content.item(),
                 "style": settings.style_weight * j_style.item(),
                 "tv": settings.tv_weight * j_tv.item() if j_tv is not None else 0.0, "total": loss.item()}
        _report(entry)
        return loss

    def _report(entry):
        record_step(entry, history, bar, callback)
        step = entry["step"]
        if settings.save_every and settings.frames_dir and step % settings.save_every == 0:
            frame = Path(settings.frames_dir) / f"level{level}_{w}x{h}_step{step:05d}.png"
            save_png(_to_pixels(image), frame, {"visage:step": str(step), "visage:loss": f"{entry['total']:.6g}"})
        if not math.isfinite(entry["total"]):
            raise VisageError(f"the loss became {entry['total']} at step {step}; lower the learning "
                              "rate or the style weight")

    opt: torch.optim.Optimizer
    try:
        if settings.optimizer == "lbfgs":
            history_size = 100 if image[0, 0].numel() <= LARGE_IMAGE_PIXELS else 20
            opt = torch.optim.LBFGS([image], lr=1.0, max_iter=n_steps, max_eval=n_steps, history_size=history_size,
                                    tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe")
            try:
                opt.step(closure)
            except _BudgetSpent:
                pass
        else:
            opt = torch.optim.Adam([image], lr=settings.lr)
            for _ in range(n_steps):
                opt.step(closure)
                with torch.no_grad():
                    image.clamp_(0, 1)
    finally:
        bar.close()
    if settings.optimizer == "lbfgs" and best[0] is not None:
        # L-BFGS may stop on an unevaluated trial point: return the best image it evaluated.
        return best[0].clamp_(0, 1), best[1]
    return image.detach().clamp_(0, 1), history[-1]["total"]


class _BudgetSpent(Exception):
    """Raised inside the closure to stop L-BFGS when the evaluation budget is used."""


def _blend_weights(style_blend, n: int) -> list[float]:
    if style_blend is None:
        return [1.0 / n] * n
    weights = [float(w) for w in style_blend]
    if len(weights) != n:
        raise VisageError(f"{len(weights)} blend weight(s) for {n} style image(s)")
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise VisageError(f"blend weights must be ≥ 0 and not all 0: {weights}")
    return [w / sum(weights) for w in weights]


@contextlib.contextmanager
def _threads(threads: int | None):
    """Use ``threads`` intra-op threads (default: the CPUs this process may run on), then restore."""
    before = torch.get_num_threads()
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    wanted = threads or available
    torch.set_num_threads(max(1, int(wanted)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _resize_long(pixels: np.ndarray, long_side: int) -> np.ndarray:
    h, w = pixels.shape[:2]
    scale = long_side / max(h, w)
    return _resize_exact(pixels, max(1, round(w * scale)), max(1, round(h * scale)))


def _resize_exact(pixels: np.ndarray, w: int, h: int) -> np.ndarray:
    if pixels.shape[:2] == (h, w):
        return pixels
    return np.asarray(PILImage.fromarray(pixels).resize((w, h), PILImage.Resampling.LANCZOS))


def _to_tensor(pixels: np.ndarray, device: str = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 → (1, 3, H, W) float32 in [0, 1]."""
    array = np.array(pixels, dtype=np.float32, copy=True).transpose(2, 0, 1)[None] / 255.0
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def _to_pixels(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] → (H, W, 3) uint8."""
    array = image.detach()[0].clamp(0, 1).mul(255.0).round().byte().permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(array)


# Colour preservation (Gatys et al. 2016, "luminance-only transfer"): style transfer runs on
# luminance alone, with the style's luminance matched to the content's mean and spread, and the
# result's luminance is then combined with the content's chroma (YIQ).
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def _luminance(pixels: np.ndarray) -> np.ndarray:
    return (pixels.astype(np.float64) / 255.0) @ _RGB_TO_YIQ[0]


def _grey(y: np.ndarray) -> np.ndarray:
    return np.repeat((np.clip(y, 0, 1) * 255.0 + 0.5).astype(np.uint8)[:, :, None], 3, axis=2)


def _luminance_inputs(content_px: np.ndarray, style_pxs: list[np.ndarray]):
    y_content = _luminance(content_px)
    mu, sigma = y_content.mean(), y_content.std()
    styles = []
    for px in style_pxs:
        y = _luminance(px)
        styles.append(_grey((y - y.mean()) / max(y.std(), 1e-6) * sigma + mu))
    return _grey(y_content), styles


def _with_content_colour(stylised: np.ndarray, content_px: np.ndarray) -> np.ndarray:
    h, w = stylised.shape[:2]
    content = _resize_exact(content_px, w, h).astype(np.float64) / 255.0
    yiq = content @ _RGB_TO_YIQ.T
    yiq[..., 0] = stylised[..., 0].astype(np.float64) / 255.0  # the stylised image is grey: Y = any channel
    rgb = yiq @ _YIQ_TO_RGB.T
    return (np.clip(rgb, 0, 1) * 255.0 + 0.5).astype(np.uint8)
