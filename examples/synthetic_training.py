"""What the 1D and 3D examples share: arguments, writing the data as a folder of identities,
training as ``visage train DATA_DIR`` would, and the before/after summary on held-out identities."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from visage.train import TrainConfig, train_folder
from visage.train.synthetic import write_people

HOLDOUT = 0.25


def run(description: str, task: str, default_out: str, model_file: str,
        make_data: Callable[[int], tuple[np.ndarray, np.ndarray]]) -> None:
    """Parse the command line, make ``--people`` identities with ``make_data(people)``, train a
    conv encoder on them and print the held-out metrics before and after training as JSON."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=default_out, help="where the data and the model go")
    parser.add_argument("--people", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    x, labels = make_data(args.people)
    data = write_people(out / "data", x, labels)
    result = train_folder(data, out / model_file, config=TrainConfig(epochs=args.epochs, patience=5, lr=3e-3),
                          holdout=HOLDOUT, embedding_dim=32)
    start, best = result.history[0].validation, result.best_validation
    summary = {key: {"untrained": start[key], "trained": best[key]}
               for key in ("accuracy", "auc", "eer", "tar@far=0.01")}
    print(json.dumps({"task": task, "held_out_identities": round(args.people * HOLDOUT),
                      "best_epoch": result.best_epoch, **summary}, indent=2))
