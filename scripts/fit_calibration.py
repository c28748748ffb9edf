"""Fit the shipped default calibration (threshold + logistic P(same)) of one encoder on labelled pairs.

    .venv/bin/python scripts/fit_calibration.py ../shared/data/pairs.tsv --encoder dlib

Writes the entry for that encoder into src/visage/data/calibration.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from visage.encoders import get_encoder
from visage.evaluation.calibration import pairs_source, update_calibration_table
from visage.evaluation.pairs import encode_pair_images, load_pairs, pair_distances
from visage.evaluation.verification import accuracy, cross_validated_accuracy, fit_calibration

TABLE = Path(__file__).resolve().parents[1] / "src" / "visage" / "data" / "calibration.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs")
    parser.add_argument("--encoder", default="dlib")
    args = parser.parse_args()
    pairs = load_pairs(args.pairs)
    distances, same = pair_distances(pairs, encode_pair_images(pairs, encoder=args.encoder))
    name = get_encoder(args.encoder).name
    source = f"{pairs_source(same, args.pairs)}; threshold = middle of the fewest-errors interval"
    cal = fit_calibration(distances, same, encoder=name, source=source)
    # Keeps the open-set threshold, which bench/bench_gallery_accuracy.py chooses.
    update_calibration_table(cal, TABLE)
    print(f"{name}: threshold {cal.threshold}, slope {cal.slope}, intercept {cal.intercept}")
    print(f"accuracy at that threshold {accuracy(distances, same, cal.threshold):.4f}, "
          f"10-fold cross-validated {cross_validated_accuracy(distances, same):.4f}")


if __name__ == "__main__":
    main()
