"""``visage train``, ``visage calibrate`` and ``visage eval``: train encoders, fit pair decisions, compare encoders."""

from __future__ import annotations

import json
from pathlib import Path

from ..config import DEFAULT_DETECTOR, DEFAULT_ENCODER, DEFAULT_TRAIN_ENCODER


def register(sub) -> None:
    p = sub.add_parser("train", help="train an encoder with the triplet loss on a folder of people",
                       description="Train on DATA_DIR/<person>/<files> (photos, or .npy signals, images, "
                       "volumes or clips), validate on held-out people after each epoch, keep the best.")
    p.add_argument("data_dir", metavar="DATA_DIR")
    p.add_argument("--mode", choices=["head", "finetune", "conv"],
                   help="head: projection on frozen encodings (default for photos); finetune: the encoder's "
                   "own network; conv: a small ConvNd from scratch (default for .npy)")
    p.add_argument("--encoder", default=DEFAULT_TRAIN_ENCODER,
                   help=f"face encoder to start from (default: {DEFAULT_TRAIN_ENCODER})")
    p.add_argument("--detector", default=DEFAULT_DETECTOR, help=f"face detector for photos (default: {DEFAULT_DETECTOR})")
    p.add_argument("--miner", choices=["all", "hard", "semihard"], default="semihard",
                   help="online triplet mining (default: semihard, as FaceNet)")
    p.add_argument("--margin", type=float, default=0.2, help="triplet margin α (default: 0.2)")
    p.add_argument("--people", type=int, default=8, metavar="P", help="people per batch (default: 8)")
    p.add_argument("--per-person", type=int, default=4, metavar="K", help="samples per person (default: 4)")
    p.add_argument("--epochs", type=int, default=30, help="most epochs to train")
    p.add_argument("--batches", type=int, default=None, help="batches per epoch (default: about one pass)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--patience", type=int, default=5, help="epochs without improvement before stopping")
    p.add_argument("--far", type=float, default=1e-2, help="validation watches TAR at this FAR (default: 0.01)")
    p.add_argument("--holdout", type=float, default=0.25,
                   help="people held out for validation: a fraction, or a count when >= 1 (default: 0.25)")
    p.add_argument("--dim", type=int, default=None, help="embedding size (default: the encoder's, or 64)")
    p.add_argument("--hidden", type=int, default=0, help="hidden units of the projection head (default: linear)")
    p.add_argument("--trainable-layers", type=int, default=3,
                   help="finetune: how many of the network's last units to train (default: 3)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default: cpu)")
    p.add_argument("--seed", type=int, default=0, help="random seed (held-out people, batches, weights)")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT.ckpt")
    p.add_argument("-o", "--output", default="model.pt", help="model file to write (default: model.pt)")
    p.add_argument("--json", action="store_true", help="print the training history as JSON")
    p.set_defaults(run=run_train)

    p = sub.add_parser("calibrate", help="fit the Siamese pair head and a distance threshold on labelled pairs",
                       description="Fit logistic regressions on |f_i - f_j| and on chi2 terms, and the distance "
                       "threshold for a target FAR; write calibration.json, report.json, roc.png, det.png.")
    p.add_argument("pairs", metavar="PAIRS.tsv", help="img_a, img_b, same; paths relative to the TSV's folder")
    p.add_argument("--encoder", default=DEFAULT_ENCODER, help="encoder name or a model.pt from visage train")
    p.add_argument("--detector", default=DEFAULT_DETECTOR, help="face detector")
    p.add_argument("--far", type=float, default=1e-2, help="target false-accept rate of the threshold")
    p.add_argument("--method", choices=["abs", "chi2", "distance"], default="abs",
                   help="what the saved calibration decides with by default (default: abs)")
    p.add_argument("--folds", type=int, default=10, help="folds of the out-of-fold report (default: 10)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the calibration and report")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run_calibrate)

    p = sub.add_parser("eval", help="compare encoders on labelled pairs (LFW protocol)",
                       description="10-fold cross-validated accuracy, AUC, EER and TAR@FAR per encoder, "
                       "on the pairs where every encoder found both faces.")
    p.add_argument("pairs", metavar="PAIRS.tsv")
    p.add_argument("--encoder", default=DEFAULT_ENCODER, help="comma-separated encoder names or model.pt files")
    p.add_argument("--detector", default=DEFAULT_DETECTOR, help="face detector")
    p.add_argument("--folds", type=int, default=10, help="cross-validation folds")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run_eval)


def run_train(args) -> int:
    from ..train import TrainConfig, train_folder

    config = TrainConfig(epochs=args.epochs, people_per_batch=args.people, per_person=args.per_person,
                         batches_per_epoch=args.batches, miner=args.miner, margin=args.margin, lr=args.lr,
                         patience=args.patience, far=args.far, seed=args.seed, device=args.device)
    holdout = int(args.holdout) if args.holdout >= 1 else args.holdout
    result = train_folder(args.data_dir, args.output, mode=args.mode, encoder=args.encoder, detector=args.detector,
                          config=config, holdout=holdout, embedding_dim=args.dim, hidden=args.hidden,
                          trainable_layers=args.trainable_layers, resume=args.resume, progress=not args.json)
    # Epoch 0 is the net before any training: the starting encoder itself for photos (the head
    # starts as the identity), an untrained net for --mode conv. The best epoch is kept.
    improved = result.best_epoch > 0
    if args.json:
        print(json.dumps({"output": args.output, "improved": improved, **result.to_dict()}, indent=2))
        return 0
    start, best = result.history[0].validation, result.best_validation
    key = f"tar@far={args.far:g}"
    print(f"best epoch {result.best_epoch} of {result.history[-1].epoch}"
          f"{' (stopped early)' if result.stopped_early else ''}; held-out people:")
    for name in (key, "auc", "eer", "accuracy"):
        print(f"  {name:<14} {start[name]:.4f} -> {best[name]:.4f}")
    if not improved:
        print(f"training did not beat its starting point (epoch 0) on the held-out people: {args.output} holds "
              f"the starting weights, so for photos {args.encoder} alone does as well")
    print(f"wrote {args.output}")
    return 0


def run_calibrate(args) -> int:
    from ..evaluation.calibration import calibrate_pairs

    cal = calibrate_pairs(args.pairs, args.output, encoder=args.encoder, detector=args.detector,
                          target_far=args.far, method=args.method, folds=args.folds,
                          progress=not args.json)
    if args.json:
        print(json.dumps(cal.report, indent=2))
        return 0
    print(f"{args.encoder} ({cal.encoder}): distance threshold {cal.distance.threshold:.4f} for FAR <= {args.far:g}")
    _table(dict(cal.report["methods"]), ["accuracy", "auc", "eer", "tar@far=0.01",
                                                                "tar@far=0.001", "ece"])
    print(f"wrote {Path(args.output) / 'calibration.json'}, report.json, roc.png, det.png, reliability.png")
    return 0


def run_eval(args) -> int:
    from ..evaluation.calibration import evaluate_encoders

    encoders = [e.strip() for e in args.encoder.split(",") if e.strip()]
    result = evaluate_encoders(args.pairs, encoders, detector=args.detector, folds=args.folds,
                               progress=not args.json)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['pairs']} pairs ({result['pairs_without_face']} left out: a face missing for some encoder), "
          f"{result['folds']}-fold")
    _table(result["encoders"], ["accuracy", "auc", "eer", "tar@far=0.01", "tar@far=0.001", "threshold"])
    return 0


def _table(rows: dict[str, dict], columns: list[str]) -> None:
    width = max(12, *(len(r) for r in rows))
    print(f"{'':<{width}}  " + "  ".join(f"{c:>13}" for c in columns))
    for name, row in rows.items():
        print(f"{name:<{width}}  " + "  ".join(f"{row[c]:>13.4f}" for c in columns))
