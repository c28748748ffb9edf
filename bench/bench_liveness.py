#!/usr/bin/env python
"""Liveness benchmark on real attacks from sources a model never saw, three models side by side.

* **visage v3** — the shipped CNN. On the groups it was trained on, its scores are the
  leave-one-source-out ones of ``scripts/train_liveness.py`` (a model trained without that group;
  read from the training cache); on ``TEST_SOURCES`` they are the shipped model's own, which never
  saw them.
* **MiniFASNet (the anchor)** — Silent-Face-Anti-Spoofing's two released networks, run as their
  own code runs them (BGR 0–255, 2.7× and 4× crops, mean of the two softmax "real" outputs), on
  visage's face boxes (their RetinaFace detector is not installable here). Read from
  ../shared/anchors/silent-face, which only the bench uses. Whether its own training data held
  any of these sources is unknown.
* **visage v2** — the cue model trained on simulated attacks only, which v3 replaces. Its cues
  cost about a second per image here, so it is scored on every test-source image and on a fixed
  sample (seed 0) of at most :data:`V2_PER_GROUP` images of each training group.

Per held-out group: equal-error rate, and the worst attack type's APCER at the threshold where
that group's BPCER is 10% (an oracle threshold per group); for v3 also APCER and BPCER at its one
shipped threshold. Then: a fusion of v3 with the v2 cues (weight fitted on the other groups),
and the time per face of each model, besides detection.

    .venv/bin/python bench/bench_liveness.py           # prints, writes bench/results/local/liveness.json and plots
    .venv/bin/python bench/bench_liveness.py --save    # writes bench/results/liveness.json and plots
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from _results import add_save_flag, results_dir  # noqa: E402
from liveness_data import CACHE, PAD, SCALES, TEST_SOURCES, load_crops  # noqa: E402
from train_liveness import ANCHORS, FOLDS, INIT, fold_summary  # noqa: E402

V2_PER_GROUP = 150


def anchor_scores(crops: np.ndarray) -> np.ndarray:
    """MiniFASNet's real score (mean of the two networks' softmax index 1) for (N, 2, 80, 80, 3) crops."""
    import torch

    from visage.liveness.passive import to_network_input
    from visage.nets.minifasnet import REAL_INDEX, from_state_dict

    nets = [from_state_dict(torch.load(ANCHORS / INIT[s][0], map_location="cpu", weights_only=True)) for s in SCALES]
    out = []
    with torch.inference_mode():
        for i in range(0, len(crops), 512):
            p = sum(torch.softmax(net(to_network_input(crops[i:i + 512, k])), 1)[:, REAL_INDEX]
                    for k, net in enumerate(nets))
            out.append((p / len(nets)).numpy())
    return np.concatenate(out)


def in_group(data: dict, members: list[str]) -> np.ndarray:
    """Mask of the images with a judged face whose group or source is one of ``members``."""
    return (data["detected"] >= 0) & (np.isin(data["group"], members) | np.isin(data["source"], members))


def v2_scores(data: dict) -> np.ndarray:
    """v2 log-odds on every test-source image with a judged face and on a fixed sample of at most
    V2_PER_GROUP of each training group's; NaN elsewhere."""
    rng = np.random.default_rng(0)
    chosen = in_group(data, list(TEST_SOURCES))
    for members in FOLDS.values():
        where = np.flatnonzero(in_group(data, members))
        chosen[rng.choice(where, min(V2_PER_GROUP, len(where)), replace=False)] = True
    out = np.full(len(chosen), np.nan)
    out[chosen] = v2_logits(data["path"][chosen])
    return out


def v2_logits(paths: np.ndarray) -> np.ndarray:
    """The v2 cue model's log-odds on each image's face (the region v3 judges), cached."""
    from tqdm import tqdm

    from visage.faces.detect import detect_boxes, get_detector
    from visage.liveness.cues import load_model
    from visage.liveness.features import face_features
    from visage.liveness.passive import face_region
    from visage.media.images import load_image

    cache = CACHE / "v2_logits.npz"
    if cache.exists():
        with np.load(cache) as f:
            if list(f["paths"]) == list(paths):
                return f["logits"]
    model = load_model()
    out = np.full(len(paths), np.nan)
    for i, p in enumerate(tqdm(paths, desc="v2 cues", unit="image")):
        pixels = load_image(PAD / p).pixels
        region = face_region(pixels, [b for b, _ in detect_boxes(pixels, get_detector("hog"))])
        if region is not None:
            out[i] = model.logit(face_features(pixels, region.box)) - model.threshold
    np.savez(cache, paths=paths, logits=out)
    return out


def v3_held_out_scores(data: dict, tag: str) -> np.ndarray:
    """v3 log-odds for every image: out-of-fold for trained-on groups, the shipped model for TEST_SOURCES."""
    from visage.liveness.passive import load_model

    model = load_model()
    scores = np.full(len(data["path"]), np.nan)
    where = {p: i for i, p in enumerate(data["path"])}
    for fold in FOLDS:
        with np.load(CACHE / "cv" / tag / f"{fold}.npz") as f:
            row = list(f["alphas"]).index(model.info["alpha"])
            for p, s in zip(f["paths"], f["logits"][row]):
                scores[where[p]] = s
    test = np.isin(data["source"], TEST_SOURCES) & (data["detected"] >= 0)
    crops = data["crops"][test]
    scores[test] = np.concatenate([model.logits({s: crops[i:i + 512, k] for k, s in enumerate(SCALES)})
                                   for i in range(0, len(crops), 512)])
    return scores


def per_ms(fn, repeats: int = 50) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats * 1000


def speed(data: dict) -> dict:
    """Milliseconds per face, one face at a time, besides detection (2 torch threads)."""
    import torch

    from visage.faces.types import Box
    from visage.liveness.cues import load_model as load_v2
    from visage.liveness.features import face_features
    from visage.liveness.passive import load_model, passive_check, to_network_input
    from visage.media.images import load_image
    from visage.nets.minifasnet import from_state_dict

    torch.set_num_threads(2)
    pixels = load_image(PAD / data["path"][0]).pixels
    h, w = pixels.shape[:2]
    box = Box(w // 5, h // 5, w * 4 // 5, h * 4 // 5)
    v3, v2 = load_model(), load_v2()
    nets = [from_state_dict(torch.load(ANCHORS / INIT[s][0], map_location="cpu", weights_only=True)) for s in SCALES]

    def anchor_one():
        from visage.liveness.crops import context_crop

        with torch.inference_mode():
            for s, net in zip(SCALES, nets):
                net(to_network_input(context_crop(pixels, box, s)[None]))

    return {"v3_ms": per_ms(lambda: passive_check(pixels, box, v3)),
            "anchor_ms": per_ms(anchor_one),
            "v2_ms": per_ms(lambda: v2.logit(face_features(pixels, box)), repeats=10)}


def main() -> int:
    from visage.evaluation.plots import plot_det
    from visage.liveness.passive import load_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tag", default=None, help="training cache of the CV scores (default: the shipped model's)")
    add_save_flag(ap)
    args = ap.parse_args()
    results = results_dir(args.save)
    model = load_model()
    tag = args.tag or model.info["cv_tag"]
    data = load_crops()
    judged = data["detected"] >= 0
    labels = data["label"]
    models = {"visage_v3": v3_held_out_scores(data, tag), "minifasnet_anchor": anchor_scores(data["crops"]),
              "visage_v2_cues": v2_scores(data)}
    groups = {**FOLDS, **{s: [s] for s in TEST_SOURCES}}
    report: dict = {"cv_tag": tag, "threshold_v3": model.threshold, "groups": {}, "judged_images": int(judged.sum()),
                    "unjudged_images": int((~judged).sum())}
    print(f"{'held-out group':<32}" + "".join(f"{m:>26}" for m in models))
    print(f"{'':<32}" + "".join(f"{'EER  worst APCER@BPCER10':>26}" for _ in models))
    for name, members in groups.items():
        m = in_group(data, members)
        row = {}
        for model_name, s in models.items():
            ok = m & np.isfinite(s)
            row[model_name] = fold_summary(s[ok], labels[ok], model.threshold if model_name == "visage_v3" else None)
        report["groups"][name] = {"held_out_by": "shipped model" if name in TEST_SOURCES else "cross-validation", **row}
        print(f"{name:<32}" + "".join(f"{r['eer']:>10.1%}{r['at_bpcer_10']['apcer_worst']:>16.1%}" for r in row.values()))
        plot_det({lab: list(models["visage_v3"][m][labels[m] == lab]) for lab in sorted(set(labels[m]))},
                 results / "liveness" / f"det_v3_{name}.png", threshold=model.threshold,
                 title=f"DET: visage liveness v3 on {name} (never trained on it)")
    means = {k: {"eer": float(np.mean([g[k]["eer"] for g in report["groups"].values()])),
                 "worst_apcer_at_bpcer_10": float(np.mean([g[k]["at_bpcer_10"]["apcer_worst"]
                                                           for g in report["groups"].values()]))} for k in models}
    report["mean_over_groups"] = means
    worst = max(report["groups"], key=lambda g: report["groups"][g]["visage_v3"]["at_bpcer_10"]["apcer_worst"])
    report["worst_group_v3"] = worst
    print(f"{'mean':<32}" + "".join(f"{v['eer']:>10.1%}{v['worst_apcer_at_bpcer_10']:>16.1%}" for v in means.values()))
    print(f"worst group for v3: {worst}")
    shipped = [g["visage_v3"]["at_shipped_threshold"] for g in report["groups"].values()]
    report["v3_at_shipped_threshold_mean"] = {"apcer_worst": float(np.mean([r["apcer_worst"] for r in shipped])),
                                              "bpcer": float(np.mean([r["bpcer"] for r in shipped]))}
    print("v3 at its shipped threshold, mean over groups: worst APCER {apcer_worst:.1%}, BPCER {bpcer:.1%}".format(
        **report["v3_at_shipped_threshold_mean"]))
    ratio = means["minifasnet_anchor"]["eer"] / max(means["visage_v3"]["eer"], 1e-9)
    v2_ratio = means["visage_v2_cues"]["eer"] / means["visage_v3"]["eer"]
    print(f"anchor EER / v3 EER = {ratio:.2f}; v2 EER / v3 EER = {v2_ratio:.2f}")
    report["fusion_with_v2"] = fusion_with_v2(models, data, groups)
    print("on the images v2 scored, v3 + w·v2 (w fitted on the other groups): mean EER {eer:.1%}, mean worst "
          "APCER@BPCER10 {apcer:.1%}; v3 alone {v3_alone_eer:.1%}, {v3_alone_apcer:.1%}".format(**report["fusion_with_v2"]))
    report["speed"] = speed(data)
    print("ms per face besides detection: " + ", ".join(f"{k} {v:.1f}" for k, v in report["speed"].items()))
    out = results / "liveness.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


def fusion_with_v2(models: dict, data: dict, groups: dict) -> dict:
    """Does adding the v2 cue log-odds help v3 on held-out groups (on the images v2 scored)? The
    weight for each group is the one of a small grid with the lowest mean EER on the other groups."""
    v3, v2 = models["visage_v3"], models["visage_v2_cues"]
    scored = np.isfinite(v2) & np.isfinite(v3)
    masks = {g: scored & in_group(data, m) for g, m in groups.items()}
    grid = [0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0]
    eer = {(g, w): fold_summary(v3[m] + w * v2[m], data["label"][m], None) for g, m in masks.items() for w in grid}
    chosen, rows = {}, []
    for g in masks:
        w = min(grid, key=lambda w: np.mean([eer[(o, w)]["eer"] for o in masks if o != g]))
        chosen[g] = w
        rows.append(eer[(g, w)])
    alone = [eer[(g, 0.0)] for g in masks]
    return {"eer": float(np.mean([r["eer"] for r in rows])),
            "apcer": float(np.mean([r["at_bpcer_10"]["apcer_worst"] for r in rows])), "weights": chosen,
            "v3_alone_eer": float(np.mean([r["eer"] for r in alone])),
            "v3_alone_apcer": float(np.mean([r["at_bpcer_10"]["apcer_worst"] for r in alone]))}


if __name__ == "__main__":
    raise SystemExit(main())
