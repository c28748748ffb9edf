"""Style-transfer costs checked against values worked out by hand on tiny tensors."""

from __future__ import annotations

import pytest
import torch

from visage.style.losses import content_cost, gram_matrix, layer_style_cost, mean_gram, style_cost, total_variation

# One image, n_C = 2 channels, n_H = 2, n_W = 2.
A = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]],
                   [[0.0, 1.0], [0.0, 2.0]]]])
B = torch.tensor([[[[1.0, 0.0], [3.0, 1.0]],
                   [[2.0, 1.0], [0.0, 0.0]]]])


def test_gram_matrix_by_hand():
    # G_kk' = Σ_ij a_ijk a_ijk': channel 0 · channel 0 = 1+4+9+16 = 30, 0·1 = 0+2+0+8 = 10, 1·1 = 0+1+0+4 = 5
    expected = torch.tensor([[[30.0, 10.0], [10.0, 5.0]]])
    assert torch.equal(gram_matrix(A), expected)
    assert torch.allclose(mean_gram(A), expected / 4)


def test_content_cost_by_hand():
    # differences: channel 0: 0, 2, 0, 3 → 4 + 9 = 13; channel 1: −2, 0, 0, 2 → 8; Σ = 21
    # J = 21 / (4 · n_H n_W n_C) = 21 / (4 · 8) = 0.65625
    assert content_cost(A, B).item() == pytest.approx(21 / 32)
    assert content_cost(A, A).item() == 0.0


def test_layer_style_cost_by_hand():
    # G(B): ch0·ch0 = 1+0+9+1 = 11, ch0·ch1 = 2+0+0+0 = 2, ch1·ch1 = 4+1+0+0 = 5
    # Σ (G^A − G^B)² = (30−11)² + 2·(10−2)² + 0 = 361 + 128 = 489
    # J = 489 / (2 · n_H n_W n_C)² = 489 / 16² = 1.91015625
    assert torch.equal(gram_matrix(B), torch.tensor([[[11.0, 2.0], [2.0, 5.0]]]))
    assert layer_style_cost(mean_gram(A)[0], B).item() == pytest.approx(489 / 256)
    assert layer_style_cost(mean_gram(A), A).item() == 0.0


def test_layer_style_cost_compares_styles_of_different_sizes():
    # A tiled 2×2 has the same per-pixel Gram matrix, so the same style: cost 0.
    tiled = A.repeat(1, 1, 2, 2)
    assert layer_style_cost(mean_gram(tiled), A).item() == pytest.approx(0.0, abs=1e-12)


def test_style_cost_weights_layers():
    targets = {"x": mean_gram(A), "y": mean_gram(B)}
    generated = {"x": B, "y": B}
    # layer y matches its target; layer x costs 489/256, weighted by 0.5
    assert style_cost(targets, generated, {"x": 0.5, "y": 3.0}).item() == pytest.approx(0.5 * 489 / 256)
    with pytest.raises(ValueError):
        style_cost(targets, generated, {})


def test_total_variation_by_hand():
    image = torch.tensor([[[[0.0, 1.0], [1.0, 3.0]]]])
    # vertical |1−0|, |3−1| → mean 1.5; horizontal |1−0|, |3−1| → mean 1.5
    assert total_variation(image).item() == pytest.approx(3.0)
    assert total_variation(torch.ones(1, 3, 5, 5)).item() == 0.0


def test_costs_are_differentiable():
    g = B.clone().requires_grad_(True)
    (content_cost(A, g) + layer_style_cost(mean_gram(A), g)).backward()
    assert g.grad is not None and g.grad.abs().sum() > 0


def test_gram_gradient_matches_numerical_differentiation():
    """gram_matrix has its own backward (one matrix product); it must be the true derivative."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gram_matrix, (x,))
    target = torch.rand(3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: layer_style_cost(target, a), (x,))
