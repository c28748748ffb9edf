"""How results read to a person: small formatters that the CLI and the batch records share.

Only presentation lives here; what a result means (its decision, its reason) is the library's.
"""

from __future__ import annotations

#: A probability is shown with two decimals; beyond these bounds it reads as "<0.01" / ">0.99",
#: never as a certainty of 0.00 or 1.00 that a calibrated model does not have.
PROBABILITY_FLOOR, PROBABILITY_CEILING = 0.01, 0.99


def probability(p: float) -> str:
    """``0.73`` → ``"0.73"``; ``0.9996`` → ``">0.99"``; ``0.0004`` → ``"<0.01"``."""
    if p > PROBABILITY_CEILING:
        return f">{PROBABILITY_CEILING:.2f}"
    if p < PROBABILITY_FLOOR:
        return f"<{PROBABILITY_FLOOR:.2f}"
    return f"{p:.2f}"


def margin(distance: float, threshold: float) -> str:
    """How far a distance is from the threshold, in words: ``"0.05 under the threshold"``."""
    gap = threshold - distance
    side = "under" if gap >= 0 else "over"
    return f"{abs(gap):.2f} {side} the threshold"


def claim_verdict(claim: str, name: str | None, nearest: str | None) -> str:
    """The answer to ``identify --claim NAME``: ``"NAME"`` when accepted, else ``"not NAME"``, adding
    who the face looks like when someone else enrolled is nearer (``nearest``)."""
    if name == claim:
        return claim
    if nearest and nearest != claim:
        return f"not {claim} (looks more like {nearest})"
    return f"not {claim}"
