"""Triplet training in 3D: tell identities apart by how they move.

Each identity owns a motion (a velocity and a sideways wobble); every clip shows one
identical blob moving that way from a random start, plus noise (``visage.train.synthetic.make_clips``):
no single frame tells who it is. Clips are (1, 8, 16, 16) arrays in ``DATA_DIR/<identity>/<n>.npy``,
trained as ``visage train DATA_DIR`` would, with a Conv3d encoder, validated on unseen identities.

    .venv/bin/python examples/train_3d_clips.py [--out /tmp/visage-3d]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from visage.train import TrainConfig, train_folder
from visage.train.synthetic import make_clips, write_people


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/visage-3d", help="where the data and the model go")
    parser.add_argument("--people", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    x, labels = make_clips(args.people, per_person=10, frames=8, size=16, seed=0)
    data = write_people(out / "data", x, labels)
    result = train_folder(data, out / "clips.pt", config=TrainConfig(epochs=args.epochs, patience=5, lr=3e-3),
                          holdout=0.25, embedding_dim=32)
    start, best = result.history[0].validation, result.best_validation
    summary = {key: {"untrained": start[key], "trained": best[key]}
               for key in ("accuracy", "auc", "eer", "tar@far=0.01")}
    print(json.dumps({"task": "3D clips", "held_out_identities": round(args.people * 0.25),
                      "best_epoch": result.best_epoch, **summary}, indent=2))


if __name__ == "__main__":
    main()
