"""Identification among 100k and 1M fused (dlib+facenet, 640-d) encodings whose distractors look like faces.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_gallery_scale.py [--sizes 100000 1000000] [--store] [--save]

Uniform random unit vectors are far easier to search than faces: they spread over every
direction, while faces crowd into a few. So here the distractors are drawn from a Gaussian fitted
to real encodings. The dev set's photos (``<data>/faces/*/*``) are encoded with ``dlib+facenet``
(cached in bench/results/local/, keyed by the photos and the encoder's name), and their mean and
covariance give the Gaussian. 114 photos give a covariance of rank 113 in 640 dimensions, which
would confine every distractor to a 113-d slice; the Ledoit-Wolf estimate shrinks it towards a
multiple of the identity instead (by the amount Ledoit and Wolf's formula picks). Each drawn
vector's dlib and FaceNet parts are then scaled back to the lengths the encoder gives them
(√w and √(1−w)), as for a real fused encoding.

Among the distractors, the first photo of each dev-set identity is planted (enrolled); the other
photos of those identities are the probes. 500 more vectors drawn from the Gaussian are
"stranger" probes: their nearest neighbour is a distractor, with a small margin over the next
one, so they are a larger and harder sample for recall. recall@1 is the share of probes whose
exact nearest vector (over all the vectors, by a float32 matrix product) a method ranks first.

Methods, one query at a time, in one run:

- numpy: the plain peer, a float32 matrix product of the query with every vector, then argmin;
- faiss-flat: FAISS IndexFlatL2, exact;
- visage-exact: ExactIndex, which the gallery uses below 200,000 faces;
- visage-ivf: IvfIndex (a FAISS IVF of 4-bit fast-scan PQ codes; its ``rerank`` best candidates
  re-ranked by 8-bit codes held in memory; the best 16 of those by their exact distance, from
  float32 rows in a memory-mapped file), at several ``nprobe`` and ``rerank``; also with the page
  cache of that file dropped first (a cold start), and trained at 200k and grown to the size (the
  gallery's incremental path, which retrains only at 16-fold growth).

Memory: the index's own bytes (``nbytes``: codes, ids, centroids, lookups), and the process's RSS
growth, split into anonymous memory and file-backed pages (the memory-mapped float32 rows that
searches have read, which the OS may drop and read again); RSS figures are MiB, index sizes MB
(10^6 bytes). Latency of the exact methods is over
the 95 real probes, of the IVF over all the probes. ``--store`` also times the SQLite store.

Writes bench/results/gallery_scale.json with --save (else bench/results/local/). Run it with
OPENBLAS_NUM_THREADS=1 on a shared machine: a contended multi-threaded BLAS makes one small
matrix-vector product ten times slower.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import DEV_DATA, LOCAL, add_save_flag, results_dir
from visage.gallery import ExactIndex, FaceRecord, Gallery, IvfIndex

ENCODER = "dlib+facenet"
#: Lengths of the fused encoder's parts: dlib's 128 values, then FaceNet's 512.
PARTS = ((0, 128), (128, 640))
#: The gallery's exact/IVF switch (gallery.AUTO_IVF_FACES): where the grown index was trained.
GROWN_FROM = 200_000


def memory_mb() -> dict[str, float]:
    """The process's resident memory, in MB: total, anonymous and file-backed (memory-mapped files)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss": fields.get("VmRSS", float("nan")), "anon": fields.get("RssAnon", float("nan")),
            "file": fields.get("RssFile", float("nan"))}


def growth(before: dict[str, float]) -> dict[str, float]:
    """RSS growth since ``before``, in MB: anonymous and file-backed."""
    now = memory_mb()
    return {"rss_anon_growth_mb": round(now["anon"] - before["anon"], 1),
            "rss_file_growth_mb": round(now["file"] - before["file"], 1)}


def percentiles(times: list[float]) -> dict:
    """p50 and p99 of ``times`` (seconds) in ms, and how many there were."""
    ms = np.array(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "queries": len(ms)}


def timed(search_one: Callable[[np.ndarray], int], probes: np.ndarray, desc: str) -> tuple[np.ndarray, list[float]]:
    """(top-1 row per probe, seconds per probe), one probe at a time."""
    tops, times = [], []
    for q in tqdm(probes, desc=desc, unit="query", leave=False):
        t = time.perf_counter()
        tops.append(search_one(q))
        times.append(time.perf_counter() - t)
    return np.array(tops), times


def dev_encodings(data: Path) -> tuple[np.ndarray, np.ndarray, str, float]:
    """(identity per photo, fused encoding per photo, encoder name, seconds per photo) of the dev set,
    photos without a face left out; cached under bench/results/local/."""
    from visage.encoders import get_encoder
    from visage.pipeline import encode_many

    paths = sorted(p for p in (data / "faces").glob("*/*") if p.is_file())
    if not paths:
        raise SystemExit(f"no dev-set photos under {data / 'faces'}")
    name = get_encoder(ENCODER).name  # carries the fusion weight: another weight is another cache
    key = hashlib.sha256("\n".join([name] + [f"{p}:{p.stat().st_size}" for p in paths]).encode()).hexdigest()[:16]
    cache = LOCAL / f"gallery_dev_{ENCODER}_{key}.npz"
    if not cache.exists():
        t = time.perf_counter()
        photos = list(encode_many(paths, which="largest", encoder=ENCODER, progress=True, desc="encoding dev set"))
        seconds = (time.perf_counter() - t) / len(paths)
        found = [i for i, p in enumerate(photos) if p.ok and p.encodings]
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, labels=np.array([paths[i].parent.name for i in found]),
                 vectors=np.stack([photos[i].encodings[0].encoding for i in found]).astype(np.float32),
                 encoder=name, s_per_photo=seconds)
    z = np.load(cache)
    return z["labels"], z["vectors"], str(z["encoder"]), float(z["s_per_photo"])


class FaceLikeGaussian:
    """Vectors drawn like the dev set's encodings: its mean, its Ledoit-Wolf-shrunk covariance, and
    each fused part scaled back to its length."""

    def __init__(self, encodings: np.ndarray, seed: int = 0):
        from sklearn.covariance import LedoitWolf

        fit = LedoitWolf().fit(encodings.astype(np.float64))
        eigenvalues, eigenvectors = np.linalg.eigh(fit.covariance_)
        self.shrinkage = float(fit.shrinkage_)
        self._mean = fit.location_.astype(np.float32)
        self._factor = (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))).astype(np.float32).T
        self._part_lengths = [float(np.median(np.linalg.norm(encodings[:, a:b], axis=1))) for a, b in PARTS]
        self._rng = np.random.default_rng(seed)

    def draw(self, n: int, desc: str | None = None) -> np.ndarray:
        """``n`` vectors, (n, 640) float32."""
        out = np.empty((n, len(self._mean)), np.float32)
        chunk = 50_000
        for start in tqdm(range(0, n, chunk), desc=desc, unit="50k", leave=False, disable=desc is None):
            rows = self._rng.standard_normal((min(chunk, n - start), len(self._mean)), dtype=np.float32)
            rows = rows @ self._factor + self._mean
            for (a, b), length in zip(PARTS, self._part_lengths):
                rows[:, a:b] *= length / np.linalg.norm(rows[:, a:b], axis=1, keepdims=True)
            out[start:start + len(rows)] = rows
        return out


def exact_nearest(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The row of ``vectors`` nearest to each query (squared Euclidean, float32), in chunks of rows."""
    best = np.full(len(queries), np.inf, np.float32)
    arg = np.zeros(len(queries), np.int64)
    chunk = 65_536
    for start in tqdm(range(0, len(vectors), chunk), desc="exact ground truth", unit="64k", leave=False):
        block = vectors[start:start + chunk]
        sq = np.einsum("ij,ij->i", block, block)[None, :] - 2.0 * (queries @ block.T)
        rows = np.argmin(sq, axis=1)
        values = sq[np.arange(len(queries)), rows]
        better = values < best
        best[better], arg[better] = values[better], rows[better] + start
    return arg


def distance_context(vectors: np.ndarray, probes: np.ndarray, truth: np.ndarray, nearest: np.ndarray) -> dict:
    """How hard the distractors make the real probes: genuine distance, nearest vector's distance."""
    genuine = np.linalg.norm(vectors[truth] - probes, axis=1)
    nearest_d = np.linalg.norm(vectors[nearest] - probes, axis=1)
    return {"genuine_distance_median": round(float(np.median(genuine)), 4),
            "nearest_distance_median": round(float(np.median(nearest_d)), 4),
            "probes_whose_nearest_is_a_distractor": round(float(np.mean(nearest != truth)), 4)}


def recall(tops: np.ndarray, nearest: np.ndarray) -> float:
    return round(float(np.mean(tops == nearest)), 4)


def ivf_rows(index: IvfIndex, probes: np.ndarray, nearest: np.ndarray, real: int, build: dict) -> dict:
    """Latency and recall of ``index`` at its settings: over all probes, and the real ones apart."""
    tops, times = timed(lambda q: index.search(q[None, :], 1)[0][0][0], probes,
                        f"ivf nprobe {index.nprobe} rerank {index.rerank}")
    return {**build, **percentiles(times), "real_probes": percentiles(times[:real]),
            "recall_at_1": recall(tops[:real], nearest[:real]),
            "recall_at_1_strangers": recall(tops[real:], nearest[real:]),
            "nprobe": index.nprobe, "rerank": index.rerank, "cells": index.cells}


def bench_numpy(vectors: np.ndarray, probes: np.ndarray, nearest: np.ndarray, truth: np.ndarray) -> dict:
    """The plain peer: a float32 matrix product with every vector, then argmin."""
    sq_norms = np.einsum("ij,ij->i", vectors, vectors)
    tops, times = timed(lambda q: int(np.argmin(sq_norms - 2.0 * (vectors @ q))), probes, "numpy exact")
    return {"index_mb": round((vectors.nbytes + sq_norms.nbytes) / 1e6, 1), **percentiles(times),
            "recall_at_1": recall(tops, nearest), "accuracy": round(float(np.mean(tops == truth)), 4)}


def bench_faiss_flat(vectors: np.ndarray, probes: np.ndarray, nearest: np.ndarray) -> dict:
    """FAISS's exact IndexFlatL2."""
    import faiss

    gc.collect()
    before = memory_mb()
    t = time.perf_counter()
    flat = faiss.IndexFlatL2(vectors.shape[1])
    flat.add(vectors)
    build = {"build_s": round(time.perf_counter() - t, 2), "index_mb": round(flat.ntotal * flat.d * 4 / 1e6, 1),
             **growth(before)}
    tops, times = timed(lambda q: int(flat.search(q[None, :], 1)[1][0, 0]), probes, "faiss flat")
    return {**build, **percentiles(times), "recall_at_1": recall(tops, nearest)}


def bench_visage_exact(vectors: np.ndarray, probes: np.ndarray, nearest: np.ndarray) -> dict:
    """visage's ExactIndex, which the gallery uses below 200,000 faces."""
    gc.collect()
    before = memory_mb()
    t = time.perf_counter()
    exact = ExactIndex(vectors.shape[1], capacity=len(vectors))
    exact.add(np.arange(len(vectors)), np.arange(len(vectors)), vectors)
    build = {"build_s": round(time.perf_counter() - t, 2), "index_mb": round(exact.nbytes / 1e6, 1), **growth(before)}
    tops, times = timed(lambda q: exact.search(q[None, :], 1)[0][0][0], probes, "visage exact")
    return {**build, **percentiles(times), "recall_at_1": recall(tops, nearest)}


def bench_visage_ivf(vectors: np.ndarray, queries: np.ndarray, nearest: np.ndarray, real: int,
                     args: argparse.Namespace) -> dict:
    """visage's IvfIndex built in one batch (a cold start over a full gallery): its defaults, a sweep of
    nprobe and rerank, and searches with the float32 file's cached pages dropped first."""
    gc.collect()
    before = memory_mb()
    t = time.perf_counter()
    ivf = IvfIndex(vectors.shape[1], train_size=min(len(vectors), 20_000), spill_dir=args.spill_dir)
    ivf.add(np.arange(len(vectors)), np.arange(len(vectors)), vectors)
    gc.collect()
    build = {"build_s": round(time.perf_counter() - t, 2), "index_mb": round(ivf.nbytes / 1e6, 1),
             "rerank_file_mb": round(ivf.disk_bytes / 1e6, 1), "after_build": growth(before)}
    default_nprobe, default_rerank = ivf.nprobe, ivf.rerank
    sweep = {}
    for nprobe in args.nprobe:
        ivf.nprobe = nprobe
        sweep[f"nprobe{nprobe}_rerank{default_rerank}"] = ivf_rows(ivf, queries, nearest, real, {})
    ivf.nprobe = default_nprobe
    for rerank in args.rerank:
        ivf.rerank = rerank
        sweep[f"nprobe{default_nprobe}_rerank{rerank}"] = ivf_rows(ivf, queries, nearest, real, {})
    ivf.rerank = default_rerank
    for key, value in sweep.items():
        print(f"visage-ivf {key}", value, flush=True)
    out = {**build, "after_searches": growth(before), **sweep[f"nprobe{default_nprobe}_rerank{default_rerank}"],
           "sweep": sweep}
    ivf.drop_page_cache()
    out["after_dropping_page_cache"] = growth(before)
    tops, times = timed(lambda q: ivf.search(q[None, :], 1)[0][0][0], queries[:real], "ivf, page cache dropped")
    out["page_cache_dropped"] = {**percentiles(times), "recall_at_1": recall(tops, nearest[:real]), "after": growth(before)}
    return out


def bench_visage_ivf_grown(vectors: np.ndarray, queries: np.ndarray, nearest: np.ndarray, real: int,
                           args: argparse.Namespace) -> dict:
    """IvfIndex trained at 200k faces and grown to the size in batches: the gallery's incremental path."""
    gc.collect()
    t = time.perf_counter()
    n = len(vectors)
    grown = IvfIndex(vectors.shape[1], train_size=GROWN_FROM, spill_dir=args.spill_dir)
    grown.add(np.arange(GROWN_FROM), np.arange(GROWN_FROM), vectors[:GROWN_FROM])
    batch = 50_000
    for start in tqdm(range(GROWN_FROM, n, batch), desc="growing the 200k index", unit="50k", leave=False):
        stop = min(n, start + batch)
        grown.add(np.arange(start, stop), np.arange(start, stop), vectors[start:stop])
    build = {"build_s": round(time.perf_counter() - t, 2), "index_mb": round(grown.nbytes / 1e6, 1)}
    return ivf_rows(grown, queries, nearest, real, build)


def bench_size(n: int, planted: np.ndarray, probes: np.ndarray, truth: np.ndarray, strangers: np.ndarray,
               gaussian: FaceLikeGaussian, args: argparse.Namespace) -> dict:
    """Every method over ``n`` vectors (the planted first, then distractors)."""
    vectors = np.concatenate([planted, gaussian.draw(n - len(planted), desc=f"drawing {n:,} distractors")])
    queries = np.concatenate([probes, strangers])
    real = len(probes)
    nearest = exact_nearest(vectors, queries)
    row: dict = {"context": distance_context(vectors, probes, truth, nearest[:real]),
                 "float32_mb": round(vectors.nbytes / 1e6, 1)}
    print("context", row["context"], flush=True)
    row["numpy"] = bench_numpy(vectors, probes, nearest[:real], truth)
    print("numpy", row["numpy"], flush=True)
    row["faiss_flat"] = bench_faiss_flat(vectors, probes, nearest[:real])
    print("faiss-flat", row["faiss_flat"], flush=True)
    row["visage_exact"] = bench_visage_exact(vectors, probes, nearest[:real])
    print("visage-exact", row["visage_exact"], flush=True)
    row["visage_ivf"] = bench_visage_ivf(vectors, queries, nearest, real, args)
    print("visage-ivf", {k: v for k, v in row["visage_ivf"].items() if k != "sweep"}, flush=True)
    if n > GROWN_FROM:
        row["visage_ivf_grown_from_200k"] = bench_visage_ivf_grown(vectors, queries, nearest, real, args)
        print("visage-ivf grown", row["visage_ivf_grown_from_200k"], flush=True)
    if args.store:
        row["sqlite_store"] = store_timings(vectors, probes, args.encoder_name)
        print("sqlite", row["sqlite_store"], flush=True)

    ivf = row["visage_ivf"]
    row["summary"] = {
        "ivf_p50_ms": ivf["p50_ms"], "ivf_p99_ms": ivf["p99_ms"], "ivf_recall_at_1": ivf["recall_at_1"],
        "ivf_recall_at_1_strangers": ivf["recall_at_1_strangers"], "ivf_index_mb": ivf["index_mb"],
        "ivf_build_s": ivf["build_s"],
        "speedup_ivf_over_numpy_p50": round(row["numpy"]["p50_ms"] / ivf["p50_ms"], 1),
        "speedup_ivf_over_faiss_flat_p50": round(row["faiss_flat"]["p50_ms"] / ivf["p50_ms"], 1),
        "speedup_ivf_over_visage_exact_p50": round(row["visage_exact"]["p50_ms"] / ivf["p50_ms"], 1),
        "memory_ivf_over_float32": round(ivf["index_mb"] / row["float32_mb"], 4),
        "exact_accuracy_on_real_probes": row["numpy"]["accuracy"]}
    print("summary", row["summary"], flush=True)
    return row


def store_timings(vectors: np.ndarray, probes: np.ndarray, encoder_name: str) -> dict:
    """Fill an SQLite gallery, time one more person's commit and a cold start's first search."""
    dim = vectors.shape[1]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.db"
        t = time.perf_counter()
        with Gallery(path, index="exact") as g:
            chunk = 1000  # bulk: 1000 faces per transaction
            for start in tqdm(range(0, len(vectors), chunk), desc="filling the store", unit="1k", leave=False):
                records = [FaceRecord(v, f"sha-{start + i}", "") for i, v in enumerate(vectors[start:start + chunk])]
                g.add(f"bulk-{start}", records, encoder_name=encoder_name, dim=dim)
            fill_s = time.perf_counter() - t
            commits = []
            for k in range(50):  # the real path: one person, one photo, one transaction
                t = time.perf_counter()
                g.add(f"late-{k}", [FaceRecord(probes[k % len(probes)], f"late-{k}", "")],
                      encoder_name=encoder_name, dim=dim)
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
    parser.add_argument("--data", type=Path, default=DEV_DATA)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--rerank", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--strangers", type=int, default=500, help="probes drawn from the Gaussian")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--spill-dir", type=Path, help="folder of the IVF's re-rank file (default: $TMPDIR)")
    parser.add_argument("--store", action="store_true", help="also time the SQLite store at each size")
    parser.add_argument("--out", type=Path, help="JSON to write (default: gallery_scale.json in the results folder)")
    add_save_flag(parser)
    args = parser.parse_args()
    if args.out is None:
        args.out = results_dir(args.save) / "gallery_scale.json"

    import faiss

    faiss.omp_set_num_threads(args.threads)
    labels, encodings, args.encoder_name, s_per_photo = dev_encodings(args.data)
    identities = sorted(set(labels))
    first = [int(np.flatnonzero(labels == ident)[0]) for ident in identities]
    probe_rows = [i for i in range(len(labels)) if i not in set(first)]
    planted, probes = encodings[first], encodings[probe_rows]
    truth = np.array([identities.index(labels[i]) for i in probe_rows])  # the planted row of each probe
    gaussian = FaceLikeGaussian(encodings)
    strangers = gaussian.draw(args.strangers)
    results = {"machine": platform.platform(), "threads": args.threads,
               "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
               "load_average_at_start": os.getloadavg()[0], "encoder": args.encoder_name,
               "dim": int(encodings.shape[1]), "dev_photos_encoded": len(labels), "planted": len(planted),
               "probes": len(probes), "stranger_probes": len(strangers), "encode_s_per_photo": round(s_per_photo, 4),
               "distractors": {"kind": "Gaussian fitted to the dev set's encodings (Ledoit-Wolf), parts renormalised",
                               "ledoit_wolf_shrinkage": round(gaussian.shrinkage, 4)},
               "sizes": {}}
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    if "distractors" in previous:  # a run over some sizes keeps the other sizes' earlier results
        results["sizes"] = {k: v for k, v in previous["sizes"].items() if int(k) not in args.sizes}
        previous = previous.get("previous_uniform_random_128d", {})
    if previous:  # the old bench's figures (uniform random distractors, 128-d), which the docs still quote
        results["previous_uniform_random_128d"] = previous
    for n in args.sizes:
        print(f"--- {n:,} encodings of {encodings.shape[1]} values", flush=True)
        results["sizes"][str(n)] = bench_size(n, planted, probes, truth, strangers, gaussian, args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
