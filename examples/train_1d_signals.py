"""Triplet training in 1D: tell identities apart by the shape of their waveform.

Each identity owns a waveform made of a few harmonics; every sample of it is randomly shifted in
time, rescaled and buried in noise (see ``visage.train.synthetic.make_signals``). The samples are
written as ``DATA_DIR/<identity>/<n>.npy`` and trained exactly as ``visage train DATA_DIR`` would:
a Conv1d encoder, P×K batches, semi-hard mining, validation on identities never trained on.

    .venv/bin/python examples/train_1d_signals.py [--out /tmp/visage-1d]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from visage.train import TrainConfig, train_folder
from visage.train.synthetic import make_signals, write_people


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/visage-1d", help="where the data and the model go")
    parser.add_argument("--people", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    x, labels = make_signals(args.people, per_person=10, length=128, seed=0)
    data = write_people(out / "data", x, labels)
    result = train_folder(data, out / "signals.pt", config=TrainConfig(epochs=args.epochs, patience=5, lr=3e-3),
                          holdout=0.25, embedding_dim=32)
    start, best = result.history[0].validation, result.best_validation
    summary = {key: {"untrained": start[key], "trained": best[key]}
               for key in ("accuracy", "auc", "eer", "tar@far=0.01")}
    print(json.dumps({"task": "1D signals", "held_out_identities": round(args.people * 0.25),
                      "best_epoch": result.best_epoch, **summary}, indent=2))


if __name__ == "__main__":
    main()
