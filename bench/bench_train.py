"""Triplet training on the dev set: does it help people it never saw, and how fast does it train?

1. Held-out gain. A head is trained on the frozen encoder's embeddings of 15 dev-set people and
   scored on 4 others (two different held-out sets, two seeds each). On sharp photos dlib is already
   perfect on the dev set, so the gain is measured where it has room: faces seen through a
   low-resolution camera (chips shrunk to 12 px and blown back up; training uses 12, 16 and 24 px).
   Side by side: the frozen encoder, visage (semi-hard mining, FaceNet's squared-distance loss) and
   the nearest peer, PyTorch's own ``nn.TripletMarginLoss`` on random triplets from the same batches.
2. Throughput, in images per second through forward + mining + backward + step: the head on
   encodings, fine-tuning the last units of dlib's ResNet (PyTorch port) and of FaceNet (when its
   encoder loads), each beside the peer loss on the same network.

    .venv/bin/python bench/bench_train.py [--device cuda] [--seeds 2] [--epochs 10]

Writes bench/results/train.json (train_cuda.json on a GPU) with --save, else the same name under
bench/results/local/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from _results import DEV_DATA, add_save_flag, results_dir  # bench/_results.py
from visage.train import ProjectionHead, TrainConfig, TripletTrainer, validation_metrics
from visage.train.data import FaceCache, PKSampler, scan_people
from visage.train.losses import l2_normalize
from visage.train.run import freeze_all_but_last
from visage.train.trained import chip_transform, finetune_net

HELD_OUT_SETS = [
    ["dlib__John_Simm", "dlib__John_Savage", "lfw__Colin_Powell", "lfw__Ariel_Sharon"],
    ["dlib__John_Salley", "dlib__John_Schneider", "lfw__Arnold_Schwarzenegger", "lfw__Donald_Rumsfeld"],
]
KEYS = ("tar@far=0.01", "tar@far=0.001", "auc", "eer", "accuracy")


def blurred(chips: np.ndarray, px: int) -> np.ndarray:
    import cv2

    return np.stack([cv2.resize(cv2.resize(c, (px, px), interpolation=cv2.INTER_AREA), c.shape[:2][::-1],
                                interpolation=cv2.INTER_LINEAR) for c in chips])


def peer_train(net, x, y, config: TrainConfig, transform=None, steps: int | None = None) -> float:
    """PyTorch's nn.TripletMarginLoss on one random valid triplet per anchor; returns images/s."""
    device = torch.device(config.device)
    net.to(device).train()
    params = [p for p in net.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(params, lr=config.lr)
    loss_fn = torch.nn.TripletMarginLoss(margin=config.margin)
    rng = np.random.default_rng(config.seed)
    seen, t0 = 0, time.perf_counter()
    for epoch in range(config.epochs if steps is None else 1):
        sampler = PKSampler(y, config.people_per_batch, config.per_person, steps or config.batches_per_epoch,
                            seed=config.seed + epoch)
        for batch in sampler:
            idx = np.asarray(batch)
            labels = y[idx]
            a, p, n = [], [], []
            for i in range(len(idx)):
                pos = np.flatnonzero((labels == labels[i]) & (np.arange(len(idx)) != i))
                neg = np.flatnonzero(labels != labels[i])
                a.append(i), p.append(rng.choice(pos)), n.append(rng.choice(neg))
            inputs = (transform(x[idx]) if transform else torch.as_tensor(x[idx])).to(device)
            e = l2_normalize(net(inputs))
            loss = loss_fn(e[a], e[p], e[n])
            if config.l2_sp:
                loss = loss + config.l2_sp * sum(((q - q0) ** 2).sum() for q, q0 in zip(params, start))
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(idx)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - t0)


def embed(net, x, device) -> np.ndarray:
    net.eval()
    with torch.inference_mode():
        return l2_normalize(net(torch.as_tensor(x).to(device))).cpu().numpy()


def held_out_gain(args, chips, labels, people) -> dict:
    from visage.encoders import get_encoder

    encoder = get_encoder("dlib-torch")
    print("encoding chips at 12, 16, 24 px and sharp ...", flush=True)
    enc = {px: encoder.encode_chips(blurred(chips, px)) for px in (12, 16, 24)}
    enc["sharp"] = encoder.encode_chips(chips)
    runs = []
    for held_names in HELD_OUT_SETS:
        held = np.isin(np.array(people)[labels], held_names)
        train_x = np.concatenate([enc[px][~held] for px in (12, 16, 24)])
        train_y = np.concatenate([labels[~held]] * 3)
        for seed in range(args.seeds):
            config = TrainConfig(epochs=args.epochs, patience=args.epochs, l2_sp=0.1, batches_per_epoch=10,
                                 seed=seed, device=args.device)
            torch.manual_seed(seed)
            trainer = TripletTrainer(ProjectionHead(128), train_x, train_y, enc[12][held], labels[held], config)
            result = trainer.fit(progress=False)
            # The last epoch, not the best: picking the best on the test people would flatter visage.
            visage_last = result.history[-1].validation
            torch.manual_seed(seed)
            peer = ProjectionHead(128)
            peer_train(peer, train_x, train_y, config)
            peer_val = validation_metrics(embed(peer, enc[12][held], args.device), labels[held], config.far)
            sharp = validation_metrics(enc["sharp"][held], labels[held], config.far)
            runs.append({"held_out": held_names, "seed": seed,
                         "frozen": {k: result.history[0].validation[k] for k in KEYS},
                         "visage": {k: visage_last[k] for k in KEYS},
                         "peer_torch_triplet_margin": {k: peer_val[k] for k in KEYS},
                         "frozen_sharp_photos": {k: sharp[k] for k in KEYS},
                         "samples_per_s": float(np.mean([h.samples_per_s for h in result.history[1:]]))})
            print(f"held-out set {HELD_OUT_SETS.index(held_names)} seed {seed}: TAR@FAR=0.01 frozen "
                  f"{runs[-1]['frozen']['tar@far=0.01']:.3f}  visage {visage_last['tar@far=0.01']:.3f}  "
                  f"peer {peer_val['tar@far=0.01']:.3f}", flush=True)
    mean = {who: {k: round(float(np.mean([r[who][k] for r in runs])), 4) for k in KEYS}
            for who in ("frozen", "visage", "peer_torch_triplet_margin", "frozen_sharp_photos")}
    return {"setting": "dlib-torch embeddings of 12-px faces; head trained on 15 people (12/16/24 px), "
                       "scored on 4 unseen people; last epoch reported",
            "mean": mean, "runs": runs,
            "gain_tar@far=0.01": round(mean["visage"]["tar@far=0.01"] - mean["frozen"]["tar@far=0.01"], 4),
            "gain_accuracy": round(mean["visage"]["accuracy"] - mean["frozen"]["accuracy"], 4)}


def finetune_throughput(name: str, chips_by_size, labels, args) -> dict:
    from visage.encoders import get_encoder

    try:
        encoder = get_encoder(name)
        cache = FaceCache(name)
        chips, kept = cache.many(chips_by_size, "chip", progress=False)
    except Exception as exc:  # noqa: BLE001 -- the FaceNet port may not be usable yet; say why instead of failing
        return {"error": f"{type(exc).__name__}: {exc}"}
    y = labels[kept]
    out = {"encoder": encoder.name, "chip": list(chips.shape[1:])}
    for who in ("visage", "peer_torch_triplet_margin"):
        net = finetune_net(encoder)
        trainable = freeze_all_but_last(net, 3)
        config = TrainConfig(epochs=1, batches_per_epoch=args.steps, people_per_batch=8, per_person=4,
                             device=args.device)
        transform = chip_transform("finetune", encoder)
        if who == "visage":
            trainer = TripletTrainer(net, chips, y, chips[:8], y[:8], config, transform=transform)
            trainer.train_epoch(0, progress=False)  # warm-up (allocations, cudnn autotune)
            log = trainer.train_epoch(1, progress=False)
            out[who] = round(log.samples_per_s, 2)
        else:
            peer_train(net, chips, y, config, transform, steps=1)
            out[who] = round(peer_train(net, chips, y, config, transform, steps=args.steps), 2)
        out["trainable"] = trainable
    return out


def finetune_gain(args, paths, all_labels, people) -> dict:
    """Fine-tune FaceNet's last units on 12/16/24-px chips of 15 people; score 4 unseen people at 12 px."""
    from visage.encoders import get_encoder
    from visage.train.run import random_flip

    encoder = get_encoder("facenet")
    chips, kept = FaceCache("facenet").many(paths, "chip", progress=False)
    labels = all_labels[kept]
    low = {px: blurred(chips, px) for px in (12, 16, 24)}
    transform = chip_transform("finetune", encoder)
    runs = []
    for held_names in HELD_OUT_SETS:
        held = np.isin(np.array(people)[labels], held_names)
        train_x = np.concatenate([low[px][~held] for px in (12, 16, 24)])
        train_y = np.concatenate([labels[~held]] * 3)
        net = finetune_net(encoder)
        trainable = freeze_all_but_last(net, 3)
        config = TrainConfig(epochs=args.finetune_epochs, patience=args.finetune_epochs, lr=1e-4, l2_sp=0.01,
                             batches_per_epoch=args.finetune_batches, device=args.device)
        torch.manual_seed(0)
        trainer = TripletTrainer(net, train_x, train_y, low[12][held], labels[held], config, transform=transform,
                                 augment=random_flip)
        result = trainer.fit(progress=False)
        runs.append({"held_out": held_names, "trainable": trainable,
                     "frozen": {k: result.history[0].validation[k] for k in KEYS},
                     "finetuned_last_epoch": {k: result.history[-1].validation[k] for k in KEYS},
                     "images_per_s": float(np.mean([h.samples_per_s for h in result.history[1:]]))})
        print(f"FaceNet fine-tune, held-out set {HELD_OUT_SETS.index(held_names)}: TAR@FAR=0.01 frozen "
              f"{runs[-1]['frozen']['tar@far=0.01']:.3f}  fine-tuned "
              f"{runs[-1]['finetuned_last_epoch']['tar@far=0.01']:.3f}", flush=True)
    mean = {who: {k: round(float(np.mean([r[who][k] for r in runs])), 4) for k in KEYS}
            for who in ("frozen", "finetuned_last_epoch")}
    return {"setting": f"FaceNet, last 3 units fine-tuned {args.finetune_epochs} epochs × "
                       f"{args.finetune_batches} batches on 12/16/24-px chips of 15 people; 4 unseen people at 12 px",
            "mean": mean, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=3, help="batches of 32 timed for fine-tuning throughput")
    parser.add_argument("--threads", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    parser.add_argument("--skip-gain", action="store_true", help="only measure throughput")
    parser.add_argument("--finetune-gain", action="store_true",
                        help="also fine-tune FaceNet for the held-out gain (on by default with a GPU)")
    parser.add_argument("--finetune-epochs", type=int, default=8)
    parser.add_argument("--output", help="JSON to write (default: train.json, train_cuda.json on a GPU, in the "
                                          "results folder)")
    parser.add_argument("--finetune-batches", type=int, default=10)
    add_save_flag(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not (DEV_DATA / "faces").is_dir():
        raise SystemExit(f"dev set not found at {DEV_DATA}")

    folder = scan_people(DEV_DATA / "faces")
    paths = [s.path for s in folder.samples]
    chips, kept = FaceCache("dlib").many(paths, "chip")
    labels = np.array([s.label for s in folder.samples])[kept]
    results = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "torch_threads": args.threads, "device": args.device,
                           "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None},
               "dev_set": {"people": len(folder.people), "photos": len(paths)}}
    if not args.skip_gain:
        results["held_out_gain"] = held_out_gain(args, chips, labels, folder.people)
    all_labels = np.array([s.label for s in folder.samples])
    if args.finetune_gain or args.device.startswith("cuda"):
        try:
            results["finetune_gain_facenet"] = finetune_gain(args, paths, all_labels, folder.people)
        except Exception as exc:  # noqa: BLE001 -- report why rather than lose the other numbers
            results["finetune_gain_facenet"] = {"error": f"{type(exc).__name__}: {exc}"}
    results["throughput_images_per_s"] = {
        "head_on_encodings": results.get("held_out_gain", {}).get("runs", [{}])[0].get("samples_per_s"),
        "finetune_dlib_torch": finetune_throughput("dlib-torch", paths, all_labels, args),
        "finetune_facenet": finetune_throughput("facenet", paths, all_labels, args),
    }
    default = "train.json" if args.device == "cpu" else f"train_{args.device.split(':')[0]}.json"
    out = Path(args.output) if args.output else results_dir(args.save) / default
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    gain = results.get("held_out_gain")
    if gain:
        m = gain["mean"]
        print(f"\nheld-out TAR@FAR=0.01 (12-px faces): frozen {m['frozen']['tar@far=0.01']:.3f}  "
              f"visage {m['visage']['tar@far=0.01']:.3f}  peer {m['peer_torch_triplet_margin']['tar@far=0.01']:.3f}"
              f"  (sharp photos, frozen: {m['frozen_sharp_photos']['tar@far=0.01']:.3f})")
        print(f"held-out accuracy: frozen {m['frozen']['accuracy']:.3f}  visage {m['visage']['accuracy']:.3f}  "
              f"peer {m['peer_torch_triplet_margin']['accuracy']:.3f}")
    ft = results.get("finetune_gain_facenet")
    if ft and "mean" in ft:
        print(f"FaceNet fine-tuned, held-out TAR@FAR=0.01 (12-px faces): frozen {ft['mean']['frozen']['tar@far=0.01']:.3f}"
              f"  fine-tuned {ft['mean']['finetuned_last_epoch']['tar@far=0.01']:.3f}")
    elif ft:
        print(f"FaceNet fine-tune: {ft}")
    for name, row in results["throughput_images_per_s"].items():
        if isinstance(row, dict) and "visage" in row:
            ratio = row["visage"] / row["peer_torch_triplet_margin"]
            print(f"{name}: visage {row['visage']} img/s, peer {row['peer_torch_triplet_margin']} img/s "
                  f"(ratio {ratio:.2f})")
        else:
            print(f"{name}: {row}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
