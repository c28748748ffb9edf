"""Activation maximisation: images made by gradient ascent on the input to drive one unit hard.

Raw gradient ascent gives high-frequency noise that excites a unit but shows nothing a person can
read. Three regularisers keep the images readable:

- a decorrelated parametrisation: the image is held as a Fourier spectrum scaled by 1/frequency
  (so each step moves low frequencies as much as high ones) in a decorrelated colour space, or,
  with ``parametrization="pixel"``, as plain pixels blurred with a Gaussian every few steps;
- jitter: each step sees the image shifted by a few random pixels and slightly rescaled, so only
  features that survive small translations are reinforced;
- a pixel range: a sigmoid maps the parameters into [0, 1], the range the networks take.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import VisageError
from .targets import Inspectable, resolve_model

#: Square root of the RGB covariance of natural photos (the 50 dev-set photos, normalised so its
#: largest column has unit norm): mixes decorrelated channels into natural colours.
COLOUR_SQRT_COVARIANCE = torch.tensor([[0.840, 0.455, 0.297],
                                       [0.455, 0.603, 0.418],
                                       [0.297, 0.418, 0.710]])

Objective = Literal["channel", "neuron"]
Parametrization = Literal["fourier", "pixel"]


@dataclass
class MaximizedUnits:
    """Images that maximise units of one layer.

    ``images`` is (units, H, W, 3) uint8; ``start`` and ``final`` are each unit's objective on its
    random starting image and on its final image (both without jitter).
    """

    model: str
    layer: str
    units: list[int]
    images: np.ndarray
    start: np.ndarray
    final: np.ndarray
    objective: str

    @property
    def gain(self) -> np.ndarray:
        """final / start per unit, where the start is positive (nan elsewhere)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.start > 0, self.final / self.start, np.nan)


class FourierImage(torch.nn.Module):
    """A batch of images held as 1/f-scaled spectra of decorrelated colour channels; forward() gives RGB in [0, 1]."""

    scale: torch.Tensor  # buffers
    colour: torch.Tensor

    def __init__(self, batch: int, height: int, width: int, decay: float = 1.0, init_std: float = 0.01,
                 gain: float = 1.0, generator: torch.Generator | None = None):
        super().__init__()
        self.gain = gain
        fy = torch.fft.fftfreq(height)[:, None]
        fx = torch.fft.rfftfreq(width)[None, :]
        freq = torch.sqrt(fy * fy + fx * fx).clamp(min=1.0 / max(height, width))
        scale = freq ** -decay
        # Unit mean power, so a white spectrum of std s gives pixels of std about s.
        self.register_buffer("scale", scale / scale.pow(2).mean().sqrt())
        self.register_buffer("colour", COLOUR_SQRT_COVARIANCE.clone())
        self.size = (height, width)
        shape = (batch, 3, height, width // 2 + 1, 2)
        self.spectrum = torch.nn.Parameter(torch.randn(shape, generator=generator) * init_std)

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        decorrelated = torch.fft.irfftn(spectrum, s=self.size, dim=(2, 3), norm="ortho") * self.gain
        rgb = torch.einsum("ij,bjhw->bihw", self.colour, decorrelated)
        return torch.sigmoid(rgb)


class PixelImage(torch.nn.Module):
    """A batch of images held as per-pixel logits; :meth:`blur_` smooths them between steps."""

    def __init__(self, batch: int, height: int, width: int, init_std: float = 0.01,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.randn((batch, 3, height, width), generator=generator) * init_std)

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

    @torch.no_grad()
    def blur_(self, sigma: float) -> None:
        self.logits.copy_(gaussian_blur(self.logits, sigma))


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with reflected edges."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def jitter(images: torch.Tensor, shift: int, scale: float, generator: torch.Generator) -> torch.Tensor:
    """Shift by up to ``shift`` pixels (wrapping round) and rescale by up to ±``scale``, randomly."""
    if shift > 0:
        dy, dx = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=generator))
        images = torch.roll(images, shifts=(dy, dx), dims=(2, 3))
    if scale > 0:
        factor = 1.0 + (float(torch.rand((), generator=generator)) * 2 - 1) * scale
        h, w = images.shape[2:]
        images = F.interpolate(images, size=(max(8, round(h * factor)), max(8, round(w * factor))),
                               mode="bilinear", align_corners=False)
    return images


def maximize(
    model: str | os.PathLike | torch.nn.Module | Inspectable,
    layer: str,
    units: Sequence[int],
    *,
    size: int | None = 128,
    steps: int = 200,
    lr: float = 0.05,
    parametrization: Parametrization = "fourier",
    objective: Objective = "channel",
    jitter_px: int = 4,
    scale_jitter: float = 0.05,
    blur_sigma: float = 0.8,
    blur_every: int = 4,
    init_std: float = 0.1,
    fourier_gain: float = 4.0,
    batch_size: int = 16,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> MaximizedUnits:
    """Draw, for each unit of ``layer``, an image of ``size`` pixels (None: the model's input size)
    that maximises it.

    ``objective="channel"`` maximises the unit's mean over all positions (a texture of its
    feature); ``"neuron"`` maximises it at the centre position only (one instance, within its
    receptive field). Units are optimised together, ``batch_size`` at a time, with Adam for
    ``steps`` steps. ``init_std`` is the spread of the random start; ``fourier_gain`` scales the
    Fourier image (a larger gain takes larger steps in pixel space). The defaults gave the highest
    median activation over 16 units of VGG16's conv3_3, conv4_3 and conv5_3 in a sweep of 30
    settings (docs/introspect.md). Returns a :class:`MaximizedUnits` with the images and the objective before and
    after.
    """
    target = resolve_model(model)
    info = target.layer(layer)
    units = [int(u) for u in units]
    if not units:
        raise VisageError("no units given")
    bad = [u for u in units if not 0 <= u < info.channels]
    if bad:
        raise VisageError(f"layer {info.name} has units 0–{info.channels - 1}; no unit {bad[0]}")
    if parametrization not in ("fourier", "pixel"):
        raise VisageError(f"unknown parametrization {parametrization!r}: use 'fourier' or 'pixel'")
    if objective not in ("channel", "neuron"):
        raise VisageError(f"unknown objective {objective!r}: use 'channel' or 'neuron'")
    height, width = (size, size) if size else target.input_size
    device = torch.device(device)
    target = target.on(device)
    probe = _LayerProbe(target, info.name)
    generator = torch.Generator().manual_seed(seed)
    images, start, final = [], [], []
    bar = tqdm(total=steps * math.ceil(len(units) / batch_size), unit="step", desc=f"maximise {info.name}",
               disable=not progress)
    try:
        for first in range(0, len(units), batch_size):
            chunk = torch.tensor(units[first:first + batch_size], device=device)
            param: FourierImage | PixelImage
            if parametrization == "fourier":
                param = FourierImage(len(chunk), height, width, init_std=init_std, gain=fourier_gain,
                                     generator=generator).to(device)
            else:
                param = PixelImage(len(chunk), height, width, init_std=init_std, generator=generator).to(device)
            with torch.no_grad():
                start.append(probe.objective(param(), chunk, objective))
            optimizer = torch.optim.Adam(param.parameters(), lr=lr)
            for step in range(steps):
                optimizer.zero_grad(set_to_none=True)
                seen = jitter(param(), jitter_px, scale_jitter, generator)
                loss = -probe.objective(seen, chunk, objective).sum()
                loss.backward()
                optimizer.step()
                if isinstance(param, PixelImage) and blur_every and (step + 1) % blur_every == 0:
                    param.blur_(blur_sigma)
                bar.update(1)
            with torch.no_grad():
                result = param()
                final.append(probe.objective(result, chunk, objective))
            images.append((result.permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8))
    finally:
        probe.remove()
        bar.close()
    return MaximizedUnits(target.name, info.name, units, np.concatenate(images),
                          torch.cat(start).cpu().numpy(), torch.cat(final).cpu().numpy(), objective)


class _StopForward(Exception):
    pass


class _LayerProbe:
    """Runs the network up to one layer (and no further) and reads per-unit objectives off its output."""

    def __init__(self, target: Inspectable, layer: str):
        module_name, _, call = layer.partition("@")
        self.target = target
        self.layer = layer
        self.call = int(call or 0)
        self.output: torch.Tensor | None = None
        self._calls = 0
        self.handle = target.net.get_submodule(module_name).register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        if self._calls == self.call:
            self.output = output
            raise _StopForward
        self._calls += 1

    def features(self, rgb01: torch.Tensor) -> torch.Tensor:
        self._calls, self.output = 0, None
        try:
            self.target.net(self.target.net_input(rgb01))
        except _StopForward:
            pass
        if self.output is None:
            raise VisageError(f"layer {self.layer} was not reached in the forward pass")
        return self.output

    def objective(self, rgb01: torch.Tensor, units: torch.Tensor, kind: str) -> torch.Tensor:
        """Per image b, the objective of unit ``units[b]``: its mean (channel) or centre (neuron) activation."""
        out = self.features(rgb01)
        if out.ndim == 2:
            return out[torch.arange(len(units), device=out.device), units]
        picked = out[torch.arange(len(units), device=out.device), units]  # (B, H, W)
        if kind == "neuron":
            return picked[:, picked.shape[1] // 2, picked.shape[2] // 2]
        return picked.mean(dim=(1, 2))

    def remove(self) -> None:
        self.handle.remove()
