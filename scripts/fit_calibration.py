"""Fit the shipped default calibration (threshold + logistic P(same)) of one encoder on labelled pairs.

    .venv/bin/python scripts/fit_calibration.py ../shared/data/pairs.tsv --encoder dlib

Writes the entry for that encoder into src/visage/data/calibration.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from visage.encoders import get_encoder
from visage.pairs import encode_pair_images, load_pairs, pair_distances
from visage.verification import accuracy, cross_validated_accuracy, fit_calibration

TABLE = Path(__file__).resolve().parents[1] / "src" / "visage" / "data" / "calibration.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs")
    parser.add_argument("--encoder", default="dlib")
    args = parser.parse_args()
    pairs = load_pairs(args.pairs)
    distances, same = pair_distances(pairs, encode_pair_images(pairs, encoder=args.encoder))
    name = get_encoder(args.encoder).name
    source = (f"{len(same)} pairs ({int(same.sum())} same, {int((~same).sum())} different) of "
              f"{Path(args.pairs).name}; threshold = middle of the fewest-errors interval")
    cal = fit_calibration(distances, same, encoder=name, source=source)
    table = json.loads(TABLE.read_text())
    # The open-set threshold is chosen by bench/bench_gallery_accuracy.py, not here: keep it.
    kept = {k: table.get(name, {}).get(k) for k in ("identify_threshold", "identify_source")}
    table[name] = {k: v for k, v in vars(cal).items() if k != "encoder" and v not in (None, "")}
    table[name].update({k: v for k, v in kept.items() if v})
    tmp = TABLE.with_suffix(".tmp")  # readers never see a half-written table
    tmp.write_text(json.dumps(table, indent=2) + "\n")
    tmp.replace(TABLE)
    print(f"{name}: threshold {cal.threshold}, slope {cal.slope}, intercept {cal.intercept}")
    print(f"accuracy at that threshold {accuracy(distances, same, cal.threshold):.4f}, "
          f"10-fold cross-validated {cross_validated_accuracy(distances, same):.4f}")


if __name__ == "__main__":
    main()
