"""Style-transfer costs: content, Gram matrix, style, total variation.

Notation as in Gatys et al. and the deeplearning.ai course: a layer's activations a have shape
(n_C, n_H, n_W) per image.

- content:  J_content(C, G) = 1 / (4·n_H·n_W·n_C) · Σ (a_C − a_G)²
- Gram:     G_kk' = Σ_ij a_ijk · a_ijk'
- style, one layer:  J_l(S, G) = 1 / (2·n_H·n_W·n_C)² · Σ_kk' (G^S_kk' − G^G_kk')²
- style:    J_style = Σ_l λ_l · J_l
- total variation: mean absolute difference of neighbouring pixels

Style targets are kept as Gram matrices divided by the pixel count n_H·n_W (:func:`mean_gram`),
so that a style image of another size than G gives the target G would have at its own size; when
sizes match, :func:`layer_style_cost` equals the formula above exactly.
"""

from __future__ import annotations

import torch


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrices Σ_ij a_ijk·a_ijk' of activations (N, C, H, W) → (N, C, C)."""
    n, c, h, w = features.shape
    return _Gram.apply(features.reshape(n, c, h * w))


class _Gram(torch.autograd.Function):
    """F·Fᵀ for F of shape (N, C, P), whose backward is one matrix product, (dG + dGᵀ)·F, where
    autograd's own would take two (one per factor) and then add them."""

    @staticmethod
    def forward(ctx, flat: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(flat)
        return torch.bmm(flat, flat.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (flat,) = ctx.saved_tensors
        return torch.bmm(grad + grad.transpose(1, 2), flat)


def mean_gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrices divided by the pixel count H·W: (N, C, H, W) → (N, C, C)."""
    h, w = features.shape[-2:]
    return gram_matrix(features) / (h * w)


def content_cost(target: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """J_content = Σ (a_C − a_G)² / (4·n_H·n_W·n_C), averaged over the batch; a scalar tensor."""
    if target.shape[1:] != generated.shape[1:]:
        raise ValueError(f"content activations differ in shape: {tuple(target.shape)} vs {tuple(generated.shape)}")
    n = generated.shape[0]
    return (generated - target).pow(2).sum() / (4.0 * generated[0].numel() * n)


def layer_style_cost(target_mean_gram: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """One layer's style cost Σ (G^S − G^G)² / (2·n_H·n_W·n_C)², averaged over the batch.

    ``target_mean_gram`` is the style's Gram matrix divided by its own pixel count (shape (C, C) or
    (N, C, C)), ``generated`` the activations of G (N, C, H, W). Returns a scalar tensor.
    """
    n, c, _h, _w = generated.shape  # also checks that ``generated`` is (N, C, H, W)
    # (G^S − G^G)² / (2·h·w·c)²  with G^S = h·w·target  ⇔  (target − G^G/(h·w))² / (2c)²
    diff = mean_gram(generated) - target_mean_gram
    return diff.pow(2).sum() / (4.0 * c * c * n)


def style_cost(targets: dict[str, torch.Tensor], generated: dict[str, torch.Tensor],
               weights: dict[str, float]) -> torch.Tensor:
    """J_style = Σ_l λ_l · J_l over the layers in ``weights``; ``targets`` holds mean Gram matrices."""
    total = None
    for name, weight in weights.items():
        term = weight * layer_style_cost(targets[name], generated[name])
        total = term if total is None else total + term
    if total is None:
        raise ValueError("no style layers given")
    return total


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between vertically and horizontally neighbouring pixels (N, C, H, W)."""
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean()
    return dx + dy
