"""A plain Gatys style transfer, written the way the classic PyTorch tutorial teaches it.

This is the peer visage is measured against (bench/bench_style.py). It is deliberately the
straightforward version: loss modules inserted after the chosen layers of a copy of the network,
targets computed by running the partly built network from the input each time a loss module is
added, ReLUs not in place, the image clamped inside the closure, the network's weights left as
the tutorial leaves them (``freeze_weights=False``: autograd also computes their gradients, which
are never used; ``True`` is the newer tutorial's fix), and torch.optim.LBFGS with its defaults
(20 iterations per ``step`` call) looping until enough closure calls have run.

It uses the same network, layers, layer weights, normalisation of the costs and sizes as visage,
so the two optimise the same objective.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn


class Normalization(nn.Module):
    """The network's own preprocessing, as a module at the front of the model."""

    def __init__(self, vgg):
        super().__init__()
        self.vgg = vgg

    def forward(self, img):
        return self.vgg.preprocess(img)


def gram(x):
    n, c, h, w = x.size()
    f = x.view(n * c, h * w)
    return torch.mm(f, f.t())


class ContentLoss(nn.Module):
    def __init__(self, target):
        super().__init__()
        self.target = target.detach()
        self.loss = torch.tensor(0.0)

    def forward(self, x):
        _, c, h, w = x.size()
        self.loss = ((x - self.target) ** 2).sum() / (4 * c * h * w)
        return x


class StyleLoss(nn.Module):
    def __init__(self, target_feature, weight):
        super().__init__()
        h, w = target_feature.shape[-2:]
        self.target = (gram(target_feature) / (h * w)).detach()
        self.weight = weight
        self.loss = torch.tensor(0.0)

    def forward(self, x):
        _, c, h, w = x.size()
        g = gram(x) / (h * w)
        self.loss = self.weight * ((g - self.target) ** 2).sum() / (4 * c * c)
        return x


def build_model(vgg, style_img, content_img, content_layer, style_weights):
    """Copy the network layer by layer, inserting loss modules after the chosen layers."""
    model = nn.Sequential(Normalization(vgg))
    content_losses, style_losses = [], []
    for name, layer in vgg.layers.named_children():
        if isinstance(layer, nn.ReLU):
            layer = nn.ReLU(inplace=False)
        model.add_module(name, layer)
        if name == content_layer:
            target = model(content_img).detach()
            loss = ContentLoss(target)
            model.add_module(f"content_loss_{name}", loss)
            content_losses.append(loss)
        if name in style_weights:
            target_feature = model(style_img).detach()
            loss = StyleLoss(target_feature, style_weights[name])
            model.add_module(f"style_loss_{name}", loss)
            style_losses.append(loss)
    # trim off the layers after the last loss
    last = max(i for i, m in enumerate(model) if isinstance(m, (ContentLoss, StyleLoss)))
    return model[: last + 1], content_losses, style_losses


def run_reference(vgg, content_img, style_img, *, steps, content_layer, style_weights, content_weight=1.0,
                  style_weight=1.0, freeze_weights=False, log=None):
    """Optimise from the content image; returns (image, per-closure seconds, per-closure losses)."""
    model, content_losses, style_losses = build_model(vgg, style_img, content_img, content_layer, style_weights)
    model.eval()
    if freeze_weights:
        model.requires_grad_(False)
    else:
        model.requires_grad_(True)
    input_img = content_img.clone()
    input_img.requires_grad_(True)
    # The tutorial's defaults (20 iterations per step call); capped so the loop stops at ``steps``.
    optimizer = torch.optim.LBFGS([input_img], max_iter=min(20, steps))
    if steps % min(20, steps):
        raise ValueError("steps must be below 20 or a multiple of 20")
    # Time per step = wall time from one closure call to the next (L-BFGS's own work included),
    # as the visage side measures it between step callbacks.
    stamps, losses = [time.perf_counter()], []
    run = [0]
    while run[0] < steps:
        def closure():
            with torch.no_grad():
                input_img.clamp_(0, 1)
            optimizer.zero_grad()
            model(input_img)
            style_score = sum(sl.loss for sl in style_losses)
            content_score = sum(cl.loss for cl in content_losses)
            loss = style_weight * style_score + content_weight * content_score
            loss.backward()
            run[0] += 1
            losses.append(loss.item())
            stamps.append(time.perf_counter())
            if log and run[0] % 50 == 0:
                log(f"reference step {run[0]}: loss {loss.item():.4g}")
            return loss
        optimizer.step(closure)
    with torch.no_grad():
        input_img.clamp_(0, 1)
    return input_img.detach(), np.diff(stamps)[:steps], np.array(losses[:steps])
