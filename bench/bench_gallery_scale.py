"""Identification at 10k, 100k and 1M gallery encodings: exact vs IVF vs face_recognition's list.

    .venv/bin/python bench/bench_gallery_scale.py [--sizes 10000 100000 1000000] [--store]

Each gallery is random unit vectors with the real dev-set encodings planted inside: the first photo
of every identity is enrolled, and every other photo of an enrolled identity is a probe. For
each size, in one run:

- exact: visage's ExactIndex, one matrix product per query;
- ivf: visage's IvfIndex (FAISS IVF-Flat, √n cells) at several ``nprobe``;
- face_recognition: ``face_distance`` (what ``compare_faces`` computes) over a Python list of
  known encodings, as its examples do, then the argmin.

Measures top-1 latency (p50, p99, one query at a time), recall@1 against exact search, accuracy
against the truth, build time, and memory (the index's arrays and the process's RSS growth).
``--store`` also times the SQLite store at each size: bulk filling, the commit of one more
enrolled person, a cold start (a new process's first search loads every encoding and, from 50k
faces on, saves a snapshot) and a second start (which memory-maps that snapshot).
Writes bench/results/gallery_scale.json with --save (else bench/results/local/). On a shared machine run it with OPENBLAS_NUM_THREADS=1:
a contended multi-threaded BLAS makes one small matrix-vector product ten times slower.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import add_save_flag, results_dir  # noqa: E402
from bench_gallery_data import DEFAULT_DATA, load_dev_encodings  # noqa: E402

from visage.gallery import ExactIndex, FaceRecord, Gallery, IvfIndex  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentiles(times: list[float]) -> dict:
    ms = np.array(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "queries": len(ms)}


def timed_search(index, probes: np.ndarray) -> tuple[list[int], list[float]]:
    tops, times = [], []
    for q in probes:
        t = time.perf_counter()
        hits = index.search(q[None, :], 1)
        times.append(time.perf_counter() - t)
        tops.append(hits[0][0][0])
    return tops, times


def gallery_of(n: int, planted: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    filler = rng.standard_normal((n - len(planted), planted.shape[1]), dtype=np.float32)
    filler /= np.linalg.norm(filler, axis=1, keepdims=True)
    vectors = np.concatenate([planted, filler])
    persons = np.concatenate([np.arange(len(planted)), 1000 + np.arange(len(filler))])
    return vectors, persons


def store_timings(vectors: np.ndarray, persons: np.ndarray, probes: np.ndarray) -> dict:
    """Fill an SQLite gallery, time one more person's commit and a cold start's first search."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.db"
        t = time.perf_counter()
        with Gallery(path, index="exact") as g:
            chunk = 1000  # bulk: 1000 faces per transaction
            for start in range(0, len(vectors), chunk):
                records = [FaceRecord(v, f"sha-{start + i}", "") for i, v in enumerate(vectors[start:start + chunk])]
                g.add(f"bulk-{start}", records, encoder_name="dlib-resnet-v1", dim=vectors.shape[1])
            fill_s = time.perf_counter() - t
            commits = []
            for k in range(50):  # the real path: one person, one photo, one transaction
                t = time.perf_counter()
                g.add(f"late-{k}", [FaceRecord(probes[k % len(probes)], f"late-{k}", "")],
                      encoder_name="dlib-resnet-v1", dim=vectors.shape[1])
                commits.append(time.perf_counter() - t)
        size_mb = path.stat().st_size / 1e6
        t = time.perf_counter()
        with Gallery(path, index="exact") as g:
            g.search(probes[0], top=1, threshold=10.0)
            cold = time.perf_counter() - t  # includes writing the snapshot (from 50k faces on)
        t = time.perf_counter()
        with Gallery(path, index="exact") as g:
            g.search(probes[0], top=1, threshold=10.0)
            from_snapshot = time.perf_counter() - t
            used_snapshot = g._search.from_snapshot
            warm = []
            for q in probes[:20]:
                t = time.perf_counter()
                g.search(q, top=1)
                warm.append(time.perf_counter() - t)
    return {"bulk_fill_s": round(fill_s, 2), "bulk_faces_per_s": round(len(vectors) / fill_s),
            "commit_one_person": percentiles(commits), "file_mb": round(size_mb, 1),
            "cold_start_first_search_s": round(cold, 3),
            "second_start_first_search_s": round(from_snapshot, 3), "second_start_used_snapshot": used_snapshot,
            "gallery_search_warm": percentiles(warm)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--store", action="store_true", help="also time the SQLite store at each size")
    parser.add_argument("--out", type=Path, help="JSON to write (default: gallery_scale.json in the results folder)")
    add_save_flag(parser)
    args = parser.parse_args()
    if args.out is None:
        args.out = results_dir(args.save) / "gallery_scale.json"

    import faiss

    faiss.omp_set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import face_recognition

    dev = load_dev_encodings(args.data)
    ok = ~np.isnan(dev.visage[:, 0])
    labels, vecs = dev.labels[ok], dev.visage[ok]
    identities = sorted(set(labels))
    first = [int(np.flatnonzero(labels == ident)[0]) for ident in identities]
    probe_rows = [i for i in range(len(labels)) if i not in set(first)]
    planted = vecs[first]
    probes = vecs[probe_rows]
    truth = [identities.index(labels[i]) for i in probe_rows]
    results = {"machine": platform.platform(), "threads": args.threads,
               "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
               "load_average_at_start": os.getloadavg()[0], "planted": len(planted),
               "probes": len(probes), "encode_s_per_photo": round(dev.visage_s_per_photo, 4), "sizes": {}}
    if args.out.exists():  # a run over some sizes keeps the other sizes' earlier results
        results["sizes"] = {k: v for k, v in json.loads(args.out.read_text()).get("sizes", {}).items()
                            if int(k) not in args.sizes}
    rng = np.random.default_rng(0)
    for n in args.sizes:
        print(f"--- {n:,} encodings", flush=True)
        vectors, persons = gallery_of(n, planted, rng)
        row = {}
        gc.collect()
        before = rss_mb()
        t = time.perf_counter()
        exact = ExactIndex(vectors.shape[1], capacity=n)
        exact.add(np.arange(n), persons, vectors)
        row["exact"] = {"build_s": round(time.perf_counter() - t, 2), "index_mb": round(exact.nbytes / 1e6, 1),
                        "rss_growth_mb": round(rss_mb() - before, 1)}
        exact_top, times = timed_search(exact, probes)
        row["exact"].update(percentiles(times))
        row["exact"]["accuracy"] = round(float(np.mean(np.array(exact_top) == truth)), 4)
        print("exact", row["exact"], flush=True)
        del exact
        gc.collect()

        before = rss_mb()
        t = time.perf_counter()
        ivf = IvfIndex(vectors.shape[1], train_size=min(n, 20_000))
        ivf.add(np.arange(n), persons, vectors)
        gc.collect()
        build = time.perf_counter() - t
        for nprobe in args.nprobe:
            ivf._ivf.nprobe = nprobe
            top, times = timed_search(ivf, probes)
            row[f"ivf_nprobe{nprobe}"] = {
                "build_s": round(build, 2), "index_mb": round(ivf.nbytes / 1e6, 1),
                "rss_growth_mb": round(rss_mb() - before, 1), **percentiles(times),
                "recall_at_1": round(float(np.mean(np.array(top) == exact_top)), 4),
                "accuracy": round(float(np.mean(np.array(top) == truth)), 4)}
            print(f"ivf nprobe={nprobe}", row[f"ivf_nprobe{nprobe}"], flush=True)
        del ivf
        gc.collect()

        before = rss_mb()
        known = [v.copy() for v in vectors]  # face_recognition keeps a list of arrays
        known_mb = rss_mb() - before
        peer_probes = probes[: (20 if n <= 100_000 else 5)]
        times, top = [], []
        for q in peer_probes:
            t = time.perf_counter()
            d = face_recognition.face_distance(known, q)
            matches = list(d <= 0.6)  # what compare_faces returns
            best = int(np.argmin(d))
            times.append(time.perf_counter() - t)
            top.append(int(persons[best]) if matches[best] else -1)
        row["face_recognition"] = {**percentiles(times), "rss_growth_mb": round(known_mb, 1),
                                   "recall_at_1": round(float(np.mean(np.array(top) == exact_top[: len(top)])), 4)}
        print("face_recognition", row["face_recognition"], flush=True)
        del known
        gc.collect()

        if args.store:
            row["sqlite_store"] = store_timings(vectors, persons, probes)
            print("sqlite", row["sqlite_store"], flush=True)
        best_ivf = min((k for k in row if k.startswith("ivf") and row[k]["recall_at_1"] >= 0.99),
                       key=lambda k: row[k]["p50_ms"], default=None)
        row["summary"] = {
            "best_ivf_with_recall_0.99": best_ivf,
            "speedup_exact_over_face_recognition_p50": round(row["face_recognition"]["p50_ms"] / row["exact"]["p50_ms"], 1),
            "speedup_ivf_over_exact_p50": round(row["exact"]["p50_ms"] / row[best_ivf]["p50_ms"], 1) if best_ivf else None}
        print("summary", row["summary"], flush=True)
        results["sizes"][str(n)] = row
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
