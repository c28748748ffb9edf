"""The triplet loss of FaceNet on L2-normalised embeddings.

For a triplet (anchor A, positive P of the same person, negative N of another person) the loss is
``max(‖f(A) − f(P)‖² − ‖f(A) − f(N)‖² + α, 0)`` where ``f`` is L2-normalised, so every squared
distance lies in [0, 4] and the margin ``α`` has the same meaning for every network.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: FaceNet's margin.
DEFAULT_MARGIN = 0.2


def l2_normalize(embeddings: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (a zero row stays zero)."""
    return F.normalize(embeddings, p=2, dim=1, eps=1e-12)


def squared_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """(N, N) matrix of squared Euclidean distances between the rows of ``embeddings``."""
    # Direct differences rather than the |a|²+|b|²−2ab expansion: exact zeros on the diagonal and
    # no negative values from rounding, at a cost that is small for batch sizes used here.
    diff = embeddings[:, None, :] - embeddings[None, :, :]
    return (diff * diff).sum(-1)


def triplet_losses(embeddings: torch.Tensor, triplets: torch.Tensor, margin: float = DEFAULT_MARGIN) -> torch.Tensor:
    """One hinge loss per triplet: ``triplets`` is (T, 3) rows of (anchor, positive, negative) indices.

    ``embeddings`` are normalised here, so raw network outputs can be passed. Returns a (T,) tensor.
    """
    e = l2_normalize(embeddings)
    a, p, n = triplets[:, 0], triplets[:, 1], triplets[:, 2]
    d_ap = ((e[a] - e[p]) ** 2).sum(1)
    d_an = ((e[a] - e[n]) ** 2).sum(1)
    return torch.clamp(d_ap - d_an + margin, min=0.0)


@dataclass(frozen=True)
class TripletStats:
    """What one batch's loss was made of: how many triplets were mined and how many had loss > 0."""

    triplets: int
    active: int


def triplet_loss(
    embeddings: torch.Tensor,
    triplets: torch.Tensor,
    margin: float = DEFAULT_MARGIN,
    average_over: str = "all",
) -> tuple[torch.Tensor, TripletStats]:
    """Mean triplet loss over ``triplets`` and the batch's :class:`TripletStats`.

    ``average_over="active"`` divides by the number of triplets with a positive loss instead of all
    of them (the usual choice with batch-all mining, where most triplets are already satisfied).
    With no triplets the loss is a zero that still carries a gradient path.
    """
    if average_over not in ("all", "active"):
        raise ValueError(f"average_over must be 'all' or 'active', not {average_over!r}")
    if len(triplets) == 0:
        return embeddings.sum() * 0.0, TripletStats(0, 0)
    losses = triplet_losses(embeddings, triplets, margin)
    active = int((losses > 1e-12).sum())
    denominator = max(active, 1) if average_over == "active" else len(losses)
    return losses.sum() / denominator, TripletStats(len(losses), active)
