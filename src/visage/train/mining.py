"""Online triplet mining: choose (anchor, positive, negative) index triplets inside one batch.

Each miner takes a batch of embeddings (N, D) and integer labels (N,) and returns a (T, 3) long
tensor of (anchor, positive, negative) rows. Distances are squared Euclidean between the
L2-normalised embeddings, the same ones :func:`visage.train.losses.triplet_loss` uses. Mining needs
no gradient; the loss is computed afterwards on the chosen triplets.

- ``all``: every valid triplet whose loss is still positive (Hermans et al.'s batch-all).
- ``hard``: per anchor, its farthest positive and nearest negative (batch-hard).
- ``semihard``: FaceNet's choice. Every anchor-positive pair is used; its negative is the nearest
  one that is still farther than the positive, ``d(a,p) < d(a,n)``, so it lies inside the margin
  when any negative does. When no negative is farther, the farthest negative is used (the least
  hard of the hard ones), as FaceNet avoids the hardest negatives that make training collapse.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .losses import DEFAULT_MARGIN, l2_normalize, squared_distances

Miner = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def _masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive pair mask without the diagonal, negative pair mask), both (N, N) bool."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


@torch.no_grad()
def batch_all(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = DEFAULT_MARGIN) -> torch.Tensor:
    """All valid triplets with ``d(a,p) − d(a,n) + margin > 0``: a (T, 3) long tensor."""
    d = squared_distances(l2_normalize(embeddings))
    positive, negative = _masks(labels)
    valid = positive[:, :, None] & negative[:, None, :]
    hinge = d[:, :, None] - d[:, None, :] + margin
    return torch.nonzero(valid & (hinge > 0))


@torch.no_grad()
def batch_hard(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = DEFAULT_MARGIN) -> torch.Tensor:
    """For each anchor with a positive and a negative: (anchor, farthest positive, nearest negative)."""
    d = squared_distances(l2_normalize(embeddings))
    positive, negative = _masks(labels)
    usable = positive.any(1) & negative.any(1)
    hardest_positive = torch.where(positive, d, torch.full_like(d, -1.0)).argmax(1)
    hardest_negative = torch.where(negative, d, torch.full_like(d, float("inf"))).argmin(1)
    anchors = torch.arange(len(labels), device=labels.device)
    return torch.stack([anchors, hardest_positive, hardest_negative], 1)[usable]


@torch.no_grad()
def semi_hard(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = DEFAULT_MARGIN) -> torch.Tensor:
    """For each anchor-positive pair: the nearest negative farther than the positive (see module doc)."""
    d = squared_distances(l2_normalize(embeddings))
    positive, negative = _masks(labels)
    anchors, positives = torch.nonzero(positive & negative.any(1)[:, None], as_tuple=True)
    d_ap = d[anchors, positives][:, None]                       # (T, 1)
    d_an = d[anchors]                                           # (T, N)
    is_negative = negative[anchors]
    farther = is_negative & (d_an > d_ap)
    inf = torch.full_like(d_an, float("inf"))
    nearest_farther = torch.where(farther, d_an, inf).argmin(1)
    farthest = torch.where(is_negative, d_an, -inf).argmax(1)
    chosen = torch.where(farther.any(1), nearest_farther, farthest)
    return torch.stack([anchors, positives, chosen], 1)


#: Miner names used by the trainer and the CLI.
MINERS: dict[str, Miner] = {"all": batch_all, "hard": batch_hard, "semihard": semi_hard}


def get_miner(name: str) -> Miner:
    """The miner called ``name`` (``all``, ``hard`` or ``semihard``)."""
    from ..errors import VisageError

    if name not in MINERS:
        raise VisageError(f"unknown miner {name!r}; choose from {', '.join(MINERS)}")
    return MINERS[name]
