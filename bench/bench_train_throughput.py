"""Training throughput (images/s through mining + forward + backward + step) of visage's trainer.

    python bench/bench_train_throughput.py [--device cuda] [--steps 20]

Times the real :class:`visage.train.TripletTrainer` (semi-hard mining, P×K = 8×4 batches) on
synthetic chips, since throughput does not depend on what the pixels show; it needs no dev set, so
it runs on a GPU machine too. Beside each, PyTorch's ``nn.TripletMarginLoss`` on random triplets
(the nearest peer) on the same network and batches. Networks: dlib's ResNet (pretrained weights
when the model file is installed), FaceNet's Inception-ResNet-v1 architecture (all layers
trained), and the small 2D ConvEncoder. Writes bench/results/train_throughput_<device>.json with
--save, else the same name under bench/results/local/.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from _results import add_save_flag, results_dir  # bench/_results.py
from visage.nets.inception_resnet_v1 import InceptionResnetV1
from visage.train import TrainConfig, TripletTrainer
from visage.train.nets import ConvEncoder


def dlib_resnet():
    from visage.errors import ModelError
    from visage.nets.dlib_resnet import DlibFaceResNet, load_dlib_resnet

    try:
        return load_dlib_resnet(), "pretrained"
    except ModelError:
        return DlibFaceResNet(), "random init (model file not installed)"


def chips_to_tensor(scale: float, shift: float):
    def transform(chips: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(chips)).permute(0, 3, 1, 2).float()
        return (x - shift) * scale
    return transform


def peer_images_per_s(net, x, y, device, steps: int, transform) -> float:
    """nn.TripletMarginLoss on one random valid triplet per anchor, same batch shape."""
    net.to(device).train()
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    loss_fn = torch.nn.TripletMarginLoss(margin=0.2)
    rng = np.random.default_rng(0)
    people = np.unique(y)

    def step():
        chosen = rng.choice(people, 8, replace=False)
        idx = np.concatenate([rng.choice(np.flatnonzero(y == p), 4, replace=False) for p in chosen])
        emb = torch.nn.functional.normalize(net(transform(x[idx]).to(device)), dim=1)
        labels = y[idx]
        a, p, n = [], [], []
        for i, lab in enumerate(labels):
            a.append(i)
            p.append(rng.choice([j for j in range(len(idx)) if labels[j] == lab and j != i]))
            n.append(rng.choice(np.flatnonzero(labels != lab)))
        loss = loss_fn(emb[a], emb[p], emb[n])
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * 32 / (time.perf_counter() - t)


def measure(name: str, make, size: int, transform, device, steps: int) -> dict:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16 * 8, size, size, 3), dtype=np.uint8)
    y = np.repeat(np.arange(16), 8)
    net, weights = make()
    net.requires_grad_(True)  # every layer trains: the heaviest case
    config = TrainConfig(epochs=1, batches_per_epoch=steps, people_per_batch=8, per_person=4, device=str(device))
    trainer = TripletTrainer(net, x, y, x[:8], y[:8], config, transform=transform)
    trainer.train_epoch(0, progress=False)  # warm-up: allocations, cuDNN autotuning
    visage_rate = trainer.train_epoch(1, progress=False).samples_per_s
    peer_net, _ = make()
    peer_net.requires_grad_(True)
    peer_rate = peer_images_per_s(peer_net, x, y, device, steps, transform)
    row = {"network": name, "weights": weights, "chip": size, "visage_images_per_s": round(visage_rate, 1),
           "peer_images_per_s": round(peer_rate, 1), "ratio": round(visage_rate / peer_rate, 2)}
    print(f"{name:<22} {size:>3}px  visage {visage_rate:8.1f} img/s   TripletMarginLoss {peer_rate:8.1f} img/s"
          f"   ratio {row['ratio']}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="JSON to write (default: in the results folder)")
    add_save_flag(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = [
        measure("dlib ResNet (all)", dlib_resnet, 150, chips_to_tensor(1.0, 0.0), device, args.steps),
        measure("FaceNet Inc-ResNet-v1", lambda: (InceptionResnetV1(), "random init (architecture only)"), 160,
                chips_to_tensor(1 / 128, 127.5), device, args.steps),
        measure("ConvEncoder 2D", lambda: (ConvEncoder(2, in_channels=3), "random init"), 64,
                chips_to_tensor(1 / 127.5, 127.5), device, args.steps),
    ]
    result = {"machine": {"device": args.device, "cpu": platform.processor() or platform.machine(),
                          "torch_threads": args.threads, "torch": torch.__version__,
                          "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None},
              "steps": args.steps, "batch": "8 people x 4 chips", "rows": rows}
    out = args.out or results_dir(args.save) / f"train_throughput_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
