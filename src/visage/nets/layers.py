"""Running a network layer by layer, keeping the outputs that were asked for."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


def extract_layers(x: torch.Tensor, steps: Iterable[tuple[str, Callable[[torch.Tensor], torch.Tensor]]],
                   names: Iterable[str]) -> dict[str, torch.Tensor]:
    """Apply ``steps`` ((name, layer) pairs in forward order) to ``x`` and return {name: output}
    for the layers in ``names``, stopping after the deepest of them. Raises ValueError naming
    any layer that is not among the steps."""
    steps = list(steps)
    order = [name for name, _ in steps]
    wanted = set(names)
    unknown = wanted - set(order)
    if unknown:
        raise ValueError(f"unknown layer(s) {sorted(unknown)}; choose from {order}")
    out: dict[str, torch.Tensor] = {}
    for name, step in steps:
        x = step(x)
        if name in wanted:
            out[name] = x
            if len(out) == len(wanted):
                break
    return out
