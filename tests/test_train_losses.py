"""The triplet loss and the three online miners against brute-force loops over every triplet."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from visage.errors import VisageError
from visage.train import batch_all, batch_hard, get_miner, semi_hard, triplet_loss, triplet_losses

MARGIN = 0.2


def _batch(seed: int, people: int = 4, per_person: int = 3, dim: int = 5, singleton: bool = True):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(people), per_person)
    if singleton:  # a person seen once: an anchor with no positive, still a negative for others
        labels = np.append(labels, people)
    x = rng.normal(size=(len(labels), dim)) * rng.uniform(0.5, 3.0, size=(len(labels), 1))
    return torch.tensor(x, dtype=torch.float64), torch.tensor(labels)


def _brute_distances(x: torch.Tensor) -> np.ndarray:
    v = x.numpy()
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    n = len(v)
    return np.array([[float(np.sum((v[i] - v[j]) ** 2)) for j in range(n)] for i in range(n)])


def _valid_triplets(labels: np.ndarray):
    n = len(labels)
    for a, p, q in itertools.product(range(n), repeat=3):
        if a != p and labels[a] == labels[p] and labels[a] != labels[q]:
            yield a, p, q


@pytest.mark.parametrize("seed", range(4))
def test_triplet_losses_match_the_formula_on_normalised_embeddings(seed):
    x, labels = _batch(seed)
    d = _brute_distances(x)
    triplets = list(_valid_triplets(labels.numpy()))
    expected = [max(d[a, p] - d[a, q] + MARGIN, 0.0) for a, p, q in triplets]
    got = triplet_losses(x, torch.tensor(triplets), MARGIN).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)
    # Scaling an embedding changes nothing: the loss works on the unit sphere.
    np.testing.assert_allclose(triplet_losses(x * 7.0, torch.tensor(triplets), MARGIN).numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_batch_all_returns_exactly_the_triplets_with_positive_loss(seed):
    x, labels = _batch(seed)
    d = _brute_distances(x)
    expected = {t for t in _valid_triplets(labels.numpy()) if d[t[0], t[1]] - d[t[0], t[2]] + MARGIN > 0}
    got = {tuple(t) for t in batch_all(x, labels, MARGIN).tolist()}
    assert got == expected and expected


@pytest.mark.parametrize("seed", range(4))
def test_batch_hard_picks_farthest_positive_and_nearest_negative(seed):
    x, labels = _batch(seed)
    d = _brute_distances(x)
    y = labels.numpy()
    got = batch_hard(x, labels, MARGIN).tolist()
    anchors_with_positive = [a for a in range(len(y)) if (y == y[a]).sum() > 1]
    assert [t[0] for t in got] == anchors_with_positive
    for a, p, q in got:
        positives = [j for j in range(len(y)) if j != a and y[j] == y[a]]
        negatives = [j for j in range(len(y)) if y[j] != y[a]]
        assert d[a, p] == pytest.approx(max(d[a, j] for j in positives), abs=1e-12)
        assert d[a, q] == pytest.approx(min(d[a, j] for j in negatives), abs=1e-12)
        assert y[p] == y[a] and p != a and y[q] != y[a]


@pytest.mark.parametrize("seed", range(6))
def test_semi_hard_uses_every_positive_pair_and_the_nearest_farther_negative(seed):
    x, labels = _batch(seed, people=3, per_person=4)
    d = _brute_distances(x)
    y = labels.numpy()
    got = semi_hard(x, labels, MARGIN).tolist()
    pairs = [(a, p) for a in range(len(y)) for p in range(len(y)) if a != p and y[a] == y[p]]
    assert [(a, p) for a, p, _ in got] == pairs
    semi, fallback = 0, 0
    for a, p, q in got:
        negatives = [j for j in range(len(y)) if y[j] != y[a]]
        farther = [j for j in negatives if d[a, j] > d[a, p]]
        if farther:
            semi += 1
            assert d[a, q] == pytest.approx(min(d[a, j] for j in farther), abs=1e-12)
            assert d[a, q] > d[a, p]
        else:  # every negative is harder than the positive: the least hard one
            fallback += 1
            assert d[a, q] == pytest.approx(max(d[a, j] for j in negatives), abs=1e-12)
    assert semi > 0


def test_semi_hard_negatives_lie_inside_the_margin_when_one_exists():
    x, labels = _batch(11, people=5, per_person=4, dim=3)
    d = _brute_distances(x)
    y = labels.numpy()
    for a, p, q in semi_hard(x, labels, MARGIN).tolist():
        in_margin = [j for j in range(len(y)) if y[j] != y[a] and d[a, p] < d[a, j] < d[a, p] + MARGIN]
        if in_margin:
            assert d[a, p] < d[a, q] < d[a, p] + MARGIN


def test_triplet_loss_averages_over_all_or_over_active_triplets():
    x, labels = _batch(3)
    triplets = torch.tensor(list(_valid_triplets(labels.numpy())))
    losses = triplet_losses(x, triplets, MARGIN)
    mean_all, stats = triplet_loss(x, triplets, MARGIN)
    mean_active, _ = triplet_loss(x, triplets, MARGIN, average_over="active")
    assert stats.triplets == len(triplets) and stats.active == int((losses > 0).sum())
    assert float(mean_all) == pytest.approx(float(losses.mean()))
    assert float(mean_active) == pytest.approx(float(losses.sum() / (losses > 0).sum()))
    empty, stats = triplet_loss(x.requires_grad_(), torch.zeros((0, 3), dtype=torch.long))
    assert float(empty.detach()) == 0.0 and stats.triplets == 0
    empty.backward()  # no triplets still leaves a usable graph


def test_unknown_miner_is_a_clear_error():
    assert get_miner("semihard") is semi_hard
    with pytest.raises(VisageError, match="unknown miner"):
        get_miner("hardest")
