"""What the benchmarks share: where they write their results, where the dev set is, peak memory.

The tracked results in ``bench/results/`` are the ones the README and docs quote, so a benchmark
writes there only when asked (``--save``). Without it, a run writes the same file names into
``bench/results/local/``, which git ignores, and says so. Every script in ``bench/`` that writes
results gets its flag and its folder from here::

    from _results import add_save_flag, results_dir

    add_save_flag(parser)
    args = parser.parse_args()
    out = results_dir(args.save) / "encoder.json"
"""

from __future__ import annotations

import argparse
import os
import resource
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACKED = ROOT / "bench" / "results"
LOCAL = TRACKED / "local"
#: The shared dev set (../shared/data beside the checkout), or $VISAGE_DEV_DATA.
DEV_DATA = Path(os.environ.get("VISAGE_DEV_DATA", ROOT.parent / "shared" / "data"))


def add_save_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--save``: write the tracked results in bench/results/ instead of bench/results/local/."""
    parser.add_argument("--save", action="store_true",
                        help="write the tracked results in bench/results/ (default: bench/results/local/, "
                             "which git ignores)")


def results_dir(save: bool) -> Path:
    """The folder to write results into, created: bench/results/ with ``--save``, else bench/results/local/."""
    folder = TRACKED if save else LOCAL
    folder.mkdir(parents=True, exist_ok=True)
    if not save:
        print(f"not saving the tracked results: writing to {folder.relative_to(ROOT)}/ (--save writes bench/results/)")
    return folder


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports ru_maxrss in kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
