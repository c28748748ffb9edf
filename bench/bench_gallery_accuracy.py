"""Open-set identification accuracy of the gallery on the dev set, visage vs face_recognition.

    .venv/bin/python bench/bench_gallery_accuracy.py [--data ../shared/data] [--splits 10]

For m = 1 (one-shot), 2, 3 and 5 photos enrolled per person (people with more than m photos;
random splits, repeated), every other photo of an enrolled person is a genuine probe, and:

- rank-1: the nearest person is the right one;
- DIR (detection and identification rate): rank-1 *and* within the threshold;
- FAR, leave-one-identity-out: each identity in turn is taken out of the gallery and all its photos
  are probes; a probe within the threshold of anyone is falsely accepted.

Rules compared: the shipped one (the fused encoder, each person's nearest face, a threshold that
follows the gallery's size: ``Calibration.open_set_threshold_for``, fitted on other photos by
scripts/fit_calibration.py, so every figure here is held out), the same encodings at the fixed 1:1
threshold, dlib alone by size, dlib alone at the old fixed 0.55 (which was chosen on this very set,
so its figures are fitted), each person's mean encoding for m > 1, and face_recognition's way,
``compare_faces`` / ``face_distance`` over the list of known encodings at its default tolerance 0.6,
on its own encodings. Writes bench/results/gallery_accuracy.json and gallery_accuracy.png (DIR against FAR
as the threshold moves) with --save, else the same names under bench/results/local/.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import DEV_DATA, add_save_flag, results_dir
from bench_gallery_data import load_dev_encodings
from visage.config import DEFAULT_ENCODER
from visage.encoders import get_encoder
from visage.evaluation.verification import default_calibration
from visage.gallery import ExactIndex

PEER_TOLERANCE = 0.6  # face_recognition.compare_faces' default
#: The identify threshold visage shipped before the gallery-size rule (chosen on this dev set).
OLD_DLIB_IDENTIFY_THRESHOLD = 0.55


def _face_distance():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import face_recognition
    return face_recognition.face_distance


def top1(vectors, labels, enrolled, probes, rule):
    """(predicted label, distance) of the nearest person for each probe row."""
    if rule == "peer":
        face_distance = _face_distance()
        known = [vectors[i] for i in enrolled]  # a list of known encodings, as in its examples
        out = []
        for p in probes:
            d = face_distance(known, vectors[p])
            best = int(np.argmin(d))
            out.append((labels[enrolled[best]], float(d[best])))
        return out
    names = sorted({labels[i] for i in enrolled})
    pid = {n: k for k, n in enumerate(names)}
    index = ExactIndex(vectors.shape[1])
    index.add(np.arange(len(enrolled)), [pid[labels[i]] for i in enrolled], vectors[enrolled])
    hits = index.search(vectors[probes], 1, match=rule)
    return [(names[h[0][0]], h[0][1]) for h in hits]


def evaluate(labels, vectors, m, rule, splits, thresholds):
    """Genuine (correct, distance) and impostor distances over ``splits`` random enrolments."""
    ok = ~np.isnan(vectors[:, 0])
    identities = sorted(set(labels[ok]))
    genuine_correct, genuine_d, impostor_d, genuine_n, impostor_n = [], [], [], [], []
    for split in range(splits):
        rng = np.random.default_rng(split)
        enrol, probe = {}, {}
        for ident in identities:
            rows = np.flatnonzero((labels == ident) & ok)
            rows = rng.permutation(rows)
            if len(rows) > m:
                enrol[ident], probe[ident] = list(rows[:m]), list(rows[m:])
        all_enrolled = [i for rows in enrol.values() for i in rows]
        genuine = [i for rows in probe.values() for i in rows]
        for (pred, d), i in zip(top1(vectors, labels, all_enrolled, genuine, rule), genuine):
            genuine_correct.append(pred == labels[i])
            genuine_d.append(d)
            genuine_n.append(len(enrol))
        for ident in identities:  # leave this identity out of the gallery; all its photos probe
            gallery = [i for other, rows in enrol.items() if other != ident for i in rows]
            rows = list(np.flatnonzero((labels == ident) & ok))
            impostor_d += [d for _, d in top1(vectors, labels, gallery, rows, rule)]
            impostor_n += [len(enrol) - (ident in enrol)] * len(rows)
    correct, gd, imp = np.array(genuine_correct), np.array(genuine_d), np.array(impostor_d)
    return correct, gd, imp, np.array(genuine_n), np.array(impostor_n)


def summary(correct, gd, imp, t, t_imp=None):
    """Rates at threshold ``t`` (a number, or one per genuine probe with ``t_imp`` one per impostor)."""
    below = imp.min()
    t_imp = t if t_imp is None else t_imp
    low, high = float(np.min(t)), float(np.max(t))
    shown = low if low == high else f"{low:.4f}-{high:.4f} (by gallery size)"
    return {"genuine_probes": int(len(gd)), "impostor_probes": int(len(imp)),
            "threshold": round(shown, 4) if isinstance(shown, float) else shown,
            "rank1": round(float(correct.mean()), 4),
            "dir_at_threshold": round(float(np.mean(correct & (gd <= t))), 4),
            "far_at_threshold": round(float(np.mean(imp <= t_imp)), 4),
            "dir_at_far0": round(float(np.mean(correct & (gd < below))), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEV_DATA)
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--out", type=Path, help="JSON to write, the PNG beside it (default: in the results folder)")
    add_save_flag(parser)
    args = parser.parse_args()
    if args.out is None:
        args.out = results_dir(args.save) / "gallery_accuracy.json"

    fused = load_dev_encodings(args.data, encoder=DEFAULT_ENCODER)
    dlib = load_dev_encodings(args.data, encoder="dlib-torch")
    cal_fused = default_calibration(get_encoder(DEFAULT_ENCODER).name)
    cal_dlib = default_calibration("dlib-resnet-v1")
    # (name, encodings, threshold for a gallery of n people); the shipped rule comes first.
    systems = [
        ("visage_fused_by_size", fused.visage, np.vectorize(cal_fused.open_set_threshold_for)),
        ("visage_fused_1to1", fused.visage, lambda n: np.full(len(n), cal_fused.threshold)),
        ("visage_dlib_by_size", dlib.visage, np.vectorize(cal_dlib.open_set_threshold_for)),
        ("visage_dlib_0.55_old", dlib.visage, lambda n: np.full(len(n), OLD_DLIB_IDENTIFY_THRESHOLD)),
        ("face_recognition", dlib.peer, lambda n: np.full(len(n), PEER_TOLERANCE)),
    ]
    t_visage = cal_fused.threshold
    results = {"machine": platform.platform(), "photos": int(len(fused.labels)),
               "identities": int(len(set(fused.labels))), "splits": args.splits,
               "encoder": DEFAULT_ENCODER, "visage_threshold_1to1": t_visage, "peer_tolerance": PEER_TOLERANCE,
               "open_set_far_target": cal_fused.open_set_far,
               "encode_s_per_photo": {"visage": round(fused.visage_s_per_photo, 4),
                                      "face_recognition": round(fused.peer_s_per_photo, 4)},
               "by_enrolled_photos": {}}
    curves = {}
    sweep = np.linspace(0.3, 1.0, 141)
    for m in (1, 2, 3, 5):
        row = {}
        for name, vectors, threshold_for in systems:
            rule = "peer" if name == "face_recognition" else "nearest"
            correct, gd, imp, gn, imp_n = evaluate(fused.labels, vectors, m, rule, args.splits, None)
            row[name] = summary(correct, gd, imp, threshold_for(gn), threshold_for(imp_n))
            curves[(m, name)] = ([float(np.mean(imp <= s)) for s in sweep],
                                 [float(np.mean(correct & (gd <= s))) for s in sweep])
        if m > 1:  # several photos: each person's mean encoding, the gallery's other match rule
            correct, gd, imp, gn, imp_n = evaluate(fused.labels, fused.visage, m, "mean", args.splits, None)
            threshold_for = systems[0][2]
            row["visage_fused_by_size_mean"] = summary(correct, gd, imp, threshold_for(gn), threshold_for(imp_n))
        results["by_enrolled_photos"][str(m)] = row

    # The rule: the one with the higher DIR at the shipped threshold, summed over m >= 2, FAR alike.
    score = {r: sum(results["by_enrolled_photos"][str(m)][r]["dir_at_threshold"]
                    - results["by_enrolled_photos"][str(m)][r]["far_at_threshold"] for m in (2, 3, 5))
             for r in ("visage_fused_by_size", "visage_fused_by_size_mean")}
    results["chosen_rule"] = "mean" if max(score, key=score.get).endswith("_mean") else "nearest"
    results["rule_scores_dir_minus_far"] = {k: round(v, 4) for k, v in score.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 4.2))
    for ax, m in zip(axes, (1, 2, 3, 5)):
        for (mm, name), (far, dir_) in curves.items():
            if mm == m:
                ax.plot(far, dir_, label=name)
        for s in results["by_enrolled_photos"][str(m)].values():  # each rule's operating point
            ax.plot(s["far_at_threshold"], s["dir_at_threshold"], "o", ms=5, color="black")
        ax.axhline(0.97, color="grey", ls=":", lw=1)
        ax.axvline(0.01, color="grey", ls=":", lw=1)
        ax.set_title(f"{m} photo(s) enrolled per person")
        ax.set_xlabel("strangers accepted (leave-one-identity-out)")
        ax.set_xlim(0, 0.1)
        ax.set_ylim(0.8, 1.005)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("enrolled people named correctly (DIR)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=90)

    print(f"{'m':>2} {'rule':<26} {'rank-1':>7} {'DIR@t':>7} {'FAR@t':>7} {'DIR@FAR0':>9}  threshold")
    for m, row in results["by_enrolled_photos"].items():
        for name, s in row.items():
            print(f"{m:>2} {name:<26} {s['rank1']:7.3f} {s['dir_at_threshold']:7.3f} {s['far_at_threshold']:7.3f} "
                  f"{s['dir_at_far0']:9.3f}  {s['threshold']}")
    one = results["by_enrolled_photos"]["1"]
    ours, peer = one["visage_fused_by_size"], one["face_recognition"]
    print(f"one-shot, shipped rule: {ours['dir_at_threshold']:.3f} named (target >= 0.97), "
          f"{ours['far_at_threshold']:.3f} strangers accepted (target <= 0.01); face_recognition "
          f"{peer['dir_at_threshold']:.3f} / {peer['far_at_threshold']:.3f}; ratio of strangers accepted "
          f"{ours['far_at_threshold'] / max(peer['far_at_threshold'], 1e-9):.2f}")
    print(f"chosen rule for several photos: {results['chosen_rule']} ({results['rule_scores_dir_minus_far']})")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
