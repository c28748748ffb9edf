"""Evaluate liveness on a folder labelled by sub-folder: ``real/`` is bona fide, every other
sub-folder (``print/``, ``replay/``, ``mask/``...) is an attack type of its own."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import VisageError
from ..evaluation.metrics import BONA_FIDE, PadMetrics, pad_metrics
from ..evaluation.plots import plot_det
from ..media.images import IMAGE_SUFFIXES, list_images
from ..media.video import VIDEO_SUFFIXES


@dataclass(frozen=True)
class Evaluation:
    """Metrics over a labelled folder, with every file's label, score and decision."""

    metrics: PadMetrics
    rows: list[dict]

    def scores(self) -> dict[str, list[float | None]]:
        """Label → list of scores (None where there was no evidence)."""
        out: dict[str, list[float | None]] = {}
        for row in self.rows:
            out.setdefault(row["label"], []).append(row["score"])
        return out

    def to_dict(self) -> dict:
        """The metrics' keys (apcer, bpcer, acer, bpcer_at_apcer_5, counts...) plus ``files``."""
        return {**self.metrics.to_dict(), "files": self.rows}


def labelled_files(folder: str | os.PathLike) -> dict[str, list[Path]]:
    """Sub-folder name → image and video files in it (sorted). Raises VisageError if there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise VisageError(f"{root}: not a folder")
    found = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        files = list_images(sub, suffixes=IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        if files:
            found[sub.name] = files
    if BONA_FIDE not in found:
        raise VisageError(f"{root}: needs a '{BONA_FIDE}/' sub-folder of bona-fide images "
                          f"(found: {', '.join(found) or 'no labelled images'})")
    if len(found) < 2:
        raise VisageError(f"{root}: needs at least one attack sub-folder (such as print/ or replay/) beside real/")
    return found


def evaluate_folder(folder: str | os.PathLike, *, plot: str | os.PathLike | None = None,
                    progress: bool = True, **check_options) -> Evaluation:
    """Run :func:`visage.liveness.check` on every file under ``folder``; returns an :class:`Evaluation`.

    Writes a DET plot to ``plot`` when given. ``check_options`` go to :func:`~visage.liveness.check`.
    """
    from tqdm import tqdm

    from . import THRESHOLD, check

    files = labelled_files(folder)
    jobs = [(label, path) for label, paths in files.items() for path in paths]
    rows = []
    for label, path in tqdm(jobs, desc="liveness", disable=not progress, unit="file"):
        result = check(path, **check_options)
        rows.append({"file": str(path), "label": label, "score": result.score, "decision": result.decision,
                     "reason": result.reason})
    scores: dict[str, list] = {}
    for row in rows:
        scores.setdefault(row["label"], []).append(row["score"])
    metrics = pad_metrics(scores, THRESHOLD)
    if plot is not None:
        plot_det(scores, plot, threshold=THRESHOLD, title=f"DET: liveness on {Path(folder).name}")
    return Evaluation(metrics, [{**r, "score": None if r["score"] is None else round(r["score"], 4)} for r in rows])
