"""Labelled verification pairs (``img_a``, ``img_b``, ``same`` TSV) and their distances."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import DEFAULT_DETECTOR
from ..encoders import DEFAULT_ENCODER
from ..errors import VisageError
from ..pipeline import encode_many


@dataclass(frozen=True)
class Pair:
    a: Path
    b: Path
    same: bool


def load_pairs(tsv: str | Path) -> list[Pair]:
    """Read a pairs TSV with columns ``img_a``, ``img_b``, ``same`` (paths relative to the TSV)."""
    tsv = Path(tsv)
    try:
        with open(tsv, newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
    except OSError as exc:
        raise VisageError(f"{tsv}: cannot read ({exc.strerror or exc})") from None
    if not rows or not {"img_a", "img_b", "same"} <= set(rows[0]):
        raise VisageError(f"{tsv}: expected a tab-separated header with img_a, img_b and same")
    return [Pair(tsv.parent / r["img_a"], tsv.parent / r["img_b"], r["same"].strip() in ("1", "true", "True"))
            for r in rows]


def encode_pair_images(pairs: list[Pair], encoder: str = DEFAULT_ENCODER, detector: str = DEFAULT_DETECTOR,
                       batch: int = 16, progress: bool = True) -> dict[Path, np.ndarray | None]:
    """The largest face's encoding for every distinct image in ``pairs`` (None where no face or unreadable).

    ``encoder`` is a registered name or a trained ``.pt`` model.
    """
    paths = sorted({p.a for p in pairs} | {p.b for p in pairs})
    encoded = encode_many(paths, which="largest", detector=detector, encoder=encoder, batch_size=batch,
                          progress=progress)
    return {path: photo.encodings[0].encoding if photo.ok else None for path, photo in zip(paths, encoded)}


def pair_distances(pairs: list[Pair], encodings: dict[Path, np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """Distances and labels of the pairs whose two images both have a face."""
    found = {path: e for path, e in encodings.items() if e is not None}
    kept = [p for p in pairs if p.a in found and p.b in found]
    distances = np.array([np.linalg.norm(found[p.a] - found[p.b]) for p in kept], dtype=np.float64)
    return distances, np.array([p.same for p in kept], dtype=bool)
