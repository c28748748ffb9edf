#!/usr/bin/env python
"""Train the passive liveness model that ships in src/visage/data/liveness_cnn_v3.npz.

Data: the real bona-fide and attack stills of ../shared/data/pad (see its README), cropped as
``visage liveness`` crops at run time (scripts/liveness_data.py). The sources in
``liveness_data.TEST_SOURCES`` are never used here: the tests measure the model on them.

Model: two MiniFASNet branches (2.7× and 4× context crops), initialised from Silent-Face-Anti-
Spoofing's released weights (../shared/anchors/silent-face, Apache-2.0) and fine-tuned on the
real stills. The high-resolution layers (up to and including ``conv_3``) stay frozen: they already
detect recapture texture, and freezing halves the CPU cost and keeps the net from learning each
source's camera. Batches are source-balanced (each source's share grows with the square root of
its size, split evenly between bona fide and attack), and every crop goes through photometric,
blur, resize, noise and JPEG augmentation, so the camera of a source is a weak shortcut.

Protocol:
1. leave-one-source-out cross-validation over the groups in :data:`FOLDS` (every large source,
   the webcam sets as one group, the other small sources as one): train without the group, score
   it. The table gives, per held-out group, the equal-error rate and the worst attack type's APCER
   at the threshold where that group's BPCER is 10% (an oracle threshold per group), and APCER
   and BPCER at the one shipped threshold (chosen from the *other* groups' scores: fair);
2. how far from the anchor to go: every fold's fine-tuned weights are interpolated with the
   anchor's (``alpha`` 0 = anchor, 1 = fine-tuned; see :func:`interpolate`), and the ``alpha``
   with the best mean of EER and worst APCER over the held-out groups is kept;
3. the operating threshold: where the mean BPCER over held-out groups equals their mean worst
   APCER, on the out-of-fold scores;
4. the shipped model: trained the same way on every group, interpolated at that ``alpha``.

Fixed seeds; each fold's scores and weights are cached under ``~/.cache/visage/
liveness_pad_crops_v3/cv/<tag>/``, so an interrupted run resumes at the fold it was in.

    .venv/bin/python scripts/train_liveness.py                   # CV + final model (about 60–80 min)
    .venv/bin/python scripts/train_liveness.py --skip-cv         # final model, threshold from cached CV
    .venv/bin/python scripts/train_liveness.py --folds oulu,celeba --no-final   # a quick trial
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from liveness_data import CACHE, SCALES, TEST_SOURCES, load_crops  # noqa: E402
from visage.evaluation.metrics import BONA_FIDE, pad_eer, pad_error_rates  # noqa: E402

ANCHORS = ROOT.parent / "shared" / "anchors" / "silent-face"
#: Initial weights per context scale, with their sha256 (as ../shared/anchors/silent-face/README.md).
INIT = {2.7: ("2.7_80x80_MiniFASNetV2.pth", "a5eb02e1843f19b5386b953cc4c9f011c3f985d0ee2bb9819eea9a142099bec0"),
        4.0: ("4_0_0_80x80_MiniFASNetV1SE.pth", "84ee1d37d96894d5e82de5a57df044ef80a58be2b218b5ed7cdfd875ec2f5990")}
FROZEN = ("conv1", "conv2_dw", "conv_23", "conv_3")
VERSION = "3"
#: Cross-validation folds: name → the groups (liveness_data.group_of) it holds out.
FOLDS = {"celeba": ["fas_jonathansuryas-celeba"], "oulu": ["fas_jonathansuryas-oulu"],
         "lccfasd": ["lccfasd_dtruong46me"], "vt_thuytrang": ["vt_thuytrang"],
         "casiafasd": ["casiafasd_howdoyoueven"], "axon": ["fas_jonathansuryas-axon"],
         "webcam_sets": ["webcam_sets"],
         "other_sources": ["vinaybr03", "neonipun_cvproject", "nguyengiahy", "ydf1014_conditions", "small_sources"]}
#: Weight interpolations between the anchor (0) and the fine-tuned net (1) tried in cross-validation.
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
MODEL_OUT = ROOT / "src" / "visage" / "data" / "liveness_cnn_v3.npz"


# -- sampling and augmentation ----------------------------------------------------------------------

def sampling_weights(source: np.ndarray, live: np.ndarray) -> np.ndarray:
    """Per-image probabilities: a source's share ∝ √(its size), half bona fide and half attack."""
    weights = np.zeros(len(source))
    for s in np.unique(source):
        in_source = source == s
        share = math.sqrt(in_source.sum())
        for cls in (True, False):
            m = in_source & (live == cls)
            if m.any():
                present = 2 if (in_source & (live != cls)).any() else 1
                weights[m] = share / present / m.sum()
    return weights / weights.sum()


def augment(crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Randomly degraded copies of (N, scales, 80, 80, 3) RGB uint8 crops. One sample's crops share
    the photometric change (one camera); flips, shifts and resampling are drawn per crop."""
    import cv2

    out = np.empty_like(crops)
    for i in range(len(crops)):
        gain = rng.uniform(0.75, 1.3) * rng.uniform(0.9, 1.1, 3)  # exposure and white balance
        gamma = rng.uniform(0.7, 1.4)
        contrast = rng.uniform(0.7, 1.25)
        saturation = rng.uniform(0.6, 1.35)
        blur = rng.uniform(0.3, 1.3) if rng.random() < 0.3 else 0.0
        shrink = rng.uniform(0.35, 0.9) if rng.random() < 0.35 else 1.0
        noise = rng.uniform(1.0, 6.0) if rng.random() < 0.3 else 0.0
        quality = int(rng.integers(30, 96)) if rng.random() < 0.6 else 0
        for k in range(crops.shape[1]):
            img = crops[i, k]
            if rng.random() < 0.5:
                img = img[:, ::-1]
            zoom = rng.uniform(0.85, 1.0)
            side = int(round(80 * zoom))
            x0, y0 = rng.integers(0, 81 - side, 2)
            img = cv2.resize(np.ascontiguousarray(img[y0:y0 + side, x0:x0 + side]), (80, 80))
            f = img.astype(np.float32) / 255.0
            f = np.clip(f * gain, 0, 1) ** gamma
            grey = f.mean(axis=2, keepdims=True)
            f = grey + (f - grey) * saturation
            f = f.mean() + (f - f.mean()) * contrast
            img = np.clip(f * 255.0, 0, 255).astype(np.uint8)
            if blur:
                img = cv2.GaussianBlur(img, (0, 0), blur)
            if shrink < 1:
                small = max(8, int(80 * shrink))
                img = cv2.resize(cv2.resize(img, (small, small), interpolation=cv2.INTER_AREA), (80, 80))
            if noise:
                img = np.clip(img + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
            if quality:
                _, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
                img = cv2.imdecode(enc, cv2.IMREAD_UNCHANGED)
            out[i, k] = img
    return out


# -- the networks -----------------------------------------------------------------------------------

def initial_branches() -> dict:
    """scale → MiniFASNet with the anchor's weights (sha256 checked)."""
    import hashlib

    import torch

    from visage.nets.minifasnet import from_state_dict

    branches = {}
    for scale, (name, sha) in INIT.items():
        path = ANCHORS / name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != sha:
            raise SystemExit(f"{path}: sha256 {digest}, expected {sha}")
        branches[scale] = from_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return branches


def set_training(net, training: bool) -> None:
    """Train mode for the trainable part; frozen layers keep their batch-norm statistics."""
    net.train(training)
    for name in FROZEN:
        getattr(net, name).eval()


def train_branches(crops: np.ndarray, live: np.ndarray, source: np.ndarray, steps: int, batch: int,
                   seed: int, lr: float, desc: str) -> dict:
    """Fine-tune both branches on the given crops; returns scale → MiniFASNet in eval mode."""
    import torch
    from tqdm import tqdm

    from visage.liveness.passive import to_network_input
    from visage.nets.minifasnet import live_logit

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    branches = initial_branches()
    params = []
    for net in branches.values():
        for name, p in net.named_parameters():
            p.requires_grad = name.split(".")[0] not in FROZEN
            if p.requires_grad:
                params.append(p)
        set_training(net, True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    p = sampling_weights(source, live)
    bar = tqdm(range(steps), desc=desc, unit="step")
    for _ in bar:
        idx = rng.choice(len(p), size=batch, p=p)
        x = augment(crops[idx], rng)
        y = torch.from_numpy(live[idx].astype(np.float32))
        logits = [live_logit(net(to_network_input(x[:, k]))) for k, net in enumerate(branches.values())]
        mean = torch.stack(logits).mean(0)
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        loss = sum(bce(z, y) for z in logits) / len(logits) + bce(mean, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    for net in branches.values():
        net.eval()
    return branches


def interpolate(initial: dict, tuned: dict, alpha: float) -> dict:
    """Branches with weights (1 − alpha)·initial + alpha·tuned (WiSE-FT): part of the way from the
    anchor to the fine-tuned net, which keeps more of what the anchor knew about unseen cameras."""
    from visage.nets.minifasnet import from_state_dict

    out = {}
    for scale, net in tuned.items():
        start, end = initial[scale].state_dict(), net.state_dict()
        out[scale] = from_state_dict({k: (1 - alpha) * start[k] + alpha * v if v.is_floating_point() else v
                                      for k, v in end.items()})
    return out


def score(branches: dict, crops: np.ndarray, batch: int = 512) -> np.ndarray:
    """(N, branches) live log-odds of each branch, the way the shipped model scores."""
    from visage.liveness.passive import PassiveModel

    model = PassiveModel(branches, 0.0, VERSION)
    out = [model.branch_logits({s: crops[i:i + batch, k] for k, s in enumerate(SCALES)})
           for i in range(0, len(crops), batch)]
    return np.concatenate(out)


# -- metrics ----------------------------------------------------------------------------------------

def by_label(scores: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Label → its scores, as :mod:`visage.evaluation.metrics` takes them ("real" is bona fide)."""
    return {lab: scores[labels == lab] for lab in sorted(set(labels))}


def group_rates(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Per attack type APCER, worst APCER and BPCER at ``threshold`` (live when score ≥ threshold)."""
    apcers, bpcer = pad_error_rates(by_label(scores, labels), threshold, BONA_FIDE)
    apcer = {t: float(rate) for t, rate in apcers.items()}
    return {"apcer": apcer, "apcer_worst": max(apcer.values()), "bpcer": float(bpcer)}


def fold_summary(scores: np.ndarray, labels: np.ndarray, shipped_threshold: float | None) -> dict:
    live = labels == BONA_FIDE
    at_bpcer10 = float(np.quantile(scores[live], 0.10))
    out = {"n": int(len(scores)), "counts": {t: int(np.sum(labels == t)) for t in sorted(set(labels))},
           "eer": pad_eer(by_label(scores, labels), BONA_FIDE), "at_bpcer_10": group_rates(scores, labels, at_bpcer10)}
    if shipped_threshold is not None:
        out["at_shipped_threshold"] = group_rates(scores, labels, shipped_threshold)
    return out


def balanced_threshold(fold_scores: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    """The threshold where the mean over folds of BPCER equals the mean of the worst-type APCER."""
    everything = np.unique(np.concatenate([s for s, _ in fold_scores.values()]))
    grid = np.quantile(everything, np.linspace(0.01, 0.99, 393))
    worst, bpcer = [], []  # per fold, at every threshold of the grid
    for s, lab in fold_scores.values():
        apcers, b = pad_error_rates(by_label(s, lab), grid, BONA_FIDE)
        worst.append(np.max(np.stack(list(apcers.values())), axis=0))
        bpcer.append(b)
    gaps = [abs(np.mean([w[k] for w in worst]) - np.mean([b[k] for b in bpcer])) for k in range(len(grid))]
    return float(grid[int(np.argmin(gaps))])


def print_table(rows: dict[str, dict], title: str) -> None:
    print(f"\n{title}")
    print(f"{'held-out group':<16}{'n':>6}{'EER':>7}   {'worst APCER @ BPCER 10%':<26}{'APCER / BPCER at shipped t':<28}")
    for name, r in rows.items():
        shipped = r.get("at_shipped_threshold")
        ship = f"{shipped['apcer_worst']:.1%} / {shipped['bpcer']:.1%}" if shipped else "-"
        print(f"{name:<16}{r['n']:>6}{r['eer']:>7.1%}   {r['at_bpcer_10']['apcer_worst']:<26.1%}{ship:<28}")
    mean = lambda key: np.mean([key(r) for r in rows.values()])
    print(f"{'mean':<16}{'':>6}{mean(lambda r: r['eer']):>7.1%}   {mean(lambda r: r['at_bpcer_10']['apcer_worst']):<26.1%}")
    worst = max(rows, key=lambda k: rows[k]["at_bpcer_10"]["apcer_worst"])
    print(f"worst group: {worst}")


# -- main -------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    import torch

    from visage.evaluation.plots import plot_det
    from visage.liveness.passive import PassiveModel

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300, help="training steps per model (default: 300)")
    ap.add_argument("--batch", type=int, default=64, help="batch size (default: 64)")
    ap.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (default: 3e-4)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    ap.add_argument("--folds", default="all", help="comma-separated folds to run, or 'all' (default)")
    ap.add_argument("--skip-cv", action="store_true", help="use cached fold results only")
    ap.add_argument("--no-final", action="store_true", help="do not train or write the shipped model")
    ap.add_argument("--tag", default="", help="name of this configuration's cache (for trials)")
    ap.add_argument("--report", default="visage-liveness-train", help="folder for DET plots and the summary")
    ap.add_argument("--out", default=str(MODEL_OUT), help=f"where to write the model (default: {MODEL_OUT})")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)

    data = load_crops()
    train_pool = ~np.isin(data["source"], TEST_SOURCES) & (data["detected"] >= 0)
    live = data["label"] == "real"
    config = {"steps": args.steps, "batch": args.batch, "lr": args.lr, "seed": args.seed, "frozen": FROZEN,
              "version": VERSION}
    tag = args.tag or f"s{args.steps}_b{args.batch}_lr{args.lr:g}_seed{args.seed}"
    cv_dir = CACHE / "cv" / tag
    cv_dir.mkdir(parents=True, exist_ok=True)
    report = Path(args.report)
    report.mkdir(parents=True, exist_ok=True)
    chosen = list(FOLDS) if args.folds == "all" else args.folds.split(",")

    by_alpha: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # fold → ((alphas, N) log-odds, labels)
    for fold in chosen:
        held = train_pool & np.isin(data["group"], FOLDS[fold])
        cached = cv_dir / f"{fold}.npz"
        if not cached.exists():
            if args.skip_cv:
                continue
            train = train_pool & ~held
            t0 = time.time()
            branches = train_branches(data["crops"][train], live[train], data["source"][train], args.steps,
                                      args.batch, args.seed, args.lr, desc=f"without {fold}")
            seconds = time.time() - t0
            PassiveModel(branches, 0.0, VERSION).save(cv_dir / f"{fold}_model.npz")
            initial = initial_branches()
            logits = np.stack([score(interpolate(initial, branches, a), data["crops"][held]).mean(1) for a in ALPHAS])
            np.savez(cached, logits=logits, alphas=np.array(ALPHAS), paths=data["path"][held], seconds=seconds)
        with np.load(cached) as f:
            by_alpha[fold] = (f["logits"], data["label"][held])
    if not by_alpha:
        raise SystemExit("no cross-validation results: run without --skip-cv first")

    print("\nmean over held-out groups, by how far from the anchor the weights go (alpha):")
    quality = []
    for i, alpha in enumerate(ALPHAS):
        rows_a = [fold_summary(logits[i], labels, None) for logits, labels in by_alpha.values()]
        eer, worst = np.mean([r["eer"] for r in rows_a]), np.mean([r["at_bpcer_10"]["apcer_worst"] for r in rows_a])
        quality.append((eer + worst) / 2)
        print(f"  alpha {alpha:<5g} EER {eer:.1%}   worst APCER at BPCER 10% {worst:.1%}")
    best = int(np.argmin(quality))
    alpha = ALPHAS[best]
    print(f"chosen alpha: {alpha:g}")
    fold_scores = {fold: (logits[best], labels) for fold, (logits, labels) in by_alpha.items()}

    threshold = balanced_threshold(fold_scores) if len(fold_scores) > 1 else 0.0
    rows = {}
    for fold, (s, labels) in fold_scores.items():
        others = {k: v for k, v in fold_scores.items() if k != fold}
        fair = balanced_threshold(others) if len(others) > 1 else None
        rows[fold] = fold_summary(s, labels, fair)
        plot_det({lab: list(s[labels == lab]) for lab in sorted(set(labels))}, report / f"det_{fold}.png",
                 threshold=fair, title=f"DET: liveness v{VERSION}, {fold} held out of training")
    print_table(rows, f"leave-one-source-out ({tag}); 'shipped t' is chosen on the other groups only")
    summary = {"config": config, "tag": tag, "threshold": threshold, "alpha": alpha, "folds": rows,
               "mean_eer": float(np.mean([r["eer"] for r in rows.values()])),
               "mean_worst_apcer_at_bpcer_10": float(np.mean([r["at_bpcer_10"]["apcer_worst"] for r in rows.values()]))}
    (report / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\noperating threshold (log-odds): {threshold:.4f}; summary in {report / 'summary.json'}")

    if args.no_final:
        return 0
    train = train_pool
    t0 = time.time()
    tuned = train_branches(data["crops"][train], live[train], data["source"][train], args.steps, args.batch,
                           args.seed, args.lr, desc="final model")
    branches = interpolate(initial_branches(), tuned, alpha)
    sources = sorted(set(data["source"][train]))
    info = {"trained_on": "real attack and bona-fide stills of ../shared/data/pad (research use only)",
            "initialised_from": "Silent-Face-Anti-Spoofing MiniFASNetV2 (2.7x) and MiniFASNetV1SE (4x), Apache-2.0",
            "sources": sources, "held_out_for_tests": list(TEST_SOURCES), "images": int(train.sum()),
            "training_seconds": round(time.time() - t0, 1), "config": config, "cv_tag": tag, "alpha": alpha,
            "cv": {"mean_eer": summary["mean_eer"],
                   "mean_worst_apcer_at_bpcer_10": summary["mean_worst_apcer_at_bpcer_10"]}}
    PassiveModel(branches, threshold, VERSION, info).save(args.out)
    print(f"model written to {args.out} ({Path(args.out).stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
