"""Search indexes over enrolled encodings: exact (one matrix product) and approximate (HNSW).

Both take faces in and out one batch at a time, so enrolling or removing a person never rebuilds
the whole index. Both rank *people*: a person's distance to a probe is the distance to their
nearest face (``match="nearest"``) or, for the exact index, to the mean of their faces
(``match="mean"``). Distances are Euclidean, as in :mod:`visage.verify`.
"""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np

from ..errors import GalleryError

Match = Literal["nearest", "mean"]
#: A ranked hit: (person id, Euclidean distance).
Hit = tuple[int, float]


class Index(Protocol):
    """What a gallery needs from a search index."""

    dim: int

    def __len__(self) -> int: ...

    def add(self, face_ids: np.ndarray, person_ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add faces (ids unique across the index's life)."""
        ...

    def remove(self, face_ids: np.ndarray) -> None:
        """Forget faces; unknown ids are ignored."""
        ...

    def search(self, queries: np.ndarray, k: int, match: Match = "nearest") -> list[list[Hit]]:
        """For each query row, up to ``k`` distinct people, nearest first."""
        ...


def _top_people(face_rows: np.ndarray, sq_dist: np.ndarray, person_of_row: np.ndarray, k: int) -> list[Hit]:
    """Walk faces nearest first (``sq_dist[i]`` belongs to ``face_rows[i]``) and keep each person's
    first, nearest, face, up to ``k`` people."""
    hits: list[Hit] = []
    seen: set[int] = set()
    for pid, sq in zip(person_of_row[face_rows].tolist(), sq_dist.tolist()):
        if pid in seen:
            continue
        seen.add(pid)
        hits.append((pid, float(np.sqrt(max(sq, 0.0)))))
        if len(hits) == k:
            break
    return hits


class ExactIndex:
    """Every encoding in one float32 array; a query is one matrix product.

    Squared distances come from ‖a−b‖² = ‖a‖² + ‖b‖² − 2a·b with the stored squared norms, so a
    search costs one (n × d) · d product. Rows are appended into spare capacity and removed by
    moving the last row into the hole, so both are O(batch), not O(n).
    """

    def __init__(self, dim: int, capacity: int = 1024):
        self.dim = dim
        self._vectors = np.zeros((capacity, dim), np.float32)
        self._sq_norms = np.zeros(capacity, np.float32)
        self._face_ids = np.zeros(capacity, np.int64)
        self._person_ids = np.zeros(capacity, np.int64)
        self._row_of: dict[int, int] = {}
        self._n = 0
        # Per-person sums for mean matching, kept up to date on add and remove.
        self._sums: dict[int, np.ndarray] = {}
        self._counts: dict[int, int] = {}
        self._centroids: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays, in bytes."""
        return sum(a.nbytes for a in (self._vectors, self._sq_norms, self._face_ids, self._person_ids))

    def add(self, face_ids: np.ndarray, person_ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, np.float32).reshape(-1, self.dim)
        face_ids = np.asarray(face_ids, np.int64)
        person_ids = np.asarray(person_ids, np.int64)
        m = len(vectors)
        if m == 0:
            return
        self._reserve(self._n + m)
        rows = slice(self._n, self._n + m)
        self._vectors[rows] = vectors
        self._sq_norms[rows] = np.einsum("ij,ij->i", vectors, vectors)
        self._face_ids[rows] = face_ids
        self._person_ids[rows] = person_ids
        for i, fid in enumerate(face_ids.tolist()):
            self._row_of[fid] = self._n + i
        for pid in np.unique(person_ids).tolist():
            mine = vectors[person_ids == pid].astype(np.float64)
            self._sums[pid] = self._sums.get(pid, np.zeros(self.dim)) + mine.sum(0)
            self._counts[pid] = self._counts.get(pid, 0) + len(mine)
        self._n += m
        self._centroids = None

    def remove(self, face_ids: np.ndarray) -> None:
        for fid in np.asarray(face_ids, np.int64).tolist():
            row = self._row_of.pop(fid, None)
            if row is None:
                continue
            pid = int(self._person_ids[row])
            self._counts[pid] -= 1
            if self._counts[pid] == 0:
                del self._counts[pid], self._sums[pid]
            else:
                self._sums[pid] -= self._vectors[row]
            last = self._n - 1
            if row != last:
                for arr in (self._vectors, self._sq_norms, self._face_ids, self._person_ids):
                    arr[row] = arr[last]
                self._row_of[int(self._face_ids[row])] = row
            self._n = last
        self._centroids = None

    def vectors_of(self, person_id: int) -> np.ndarray:
        """The encodings of one person, (m, dim)."""
        return self._vectors[: self._n][self._person_ids[: self._n] == person_id].copy()

    def search(self, queries: np.ndarray, k: int, match: Match = "nearest") -> list[list[Hit]]:
        queries = np.asarray(queries, np.float32).reshape(-1, self.dim)
        if self._n == 0 or k <= 0:
            return [[] for _ in queries]
        if match == "mean":
            return self._search_means(queries, k)
        if match != "nearest":
            raise GalleryError(f"match must be 'nearest' or 'mean', not {match!r}")
        vectors, persons = self._vectors[: self._n], self._person_ids[: self._n]
        q_sq = np.einsum("ij,ij->i", queries, queries)
        sq = self._sq_norms[: self._n][None, :] + q_sq[:, None] - 2.0 * (queries @ vectors.T)
        results = []
        for row_d in sq:
            results.append(self._rank(row_d, persons, k))
        return results

    def _rank(self, sq: np.ndarray, persons: np.ndarray, k: int) -> list[Hit]:
        n = len(sq)
        # Usually the k nearest people are among the few nearest faces; fall back to all faces.
        take = min(n, 4 * k + 16)
        while True:
            part = np.argpartition(sq, take - 1)[:take] if take < n else np.arange(n)
            rows = part[np.argsort(sq[part], kind="stable")]
            hits = _top_people(rows, sq[rows], persons, k)
            if len(hits) == k or take >= n:
                return hits
            take = min(n, take * 8)

    def _search_means(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        if self._centroids is None:
            pids = np.fromiter(self._sums, np.int64, len(self._sums))
            means = np.stack([self._sums[p] / self._counts[p] for p in pids.tolist()]).astype(np.float32)
            self._centroids = (pids, means)
        pids, means = self._centroids
        sq = (np.einsum("ij,ij->i", means, means)[None, :] + np.einsum("ij,ij->i", queries, queries)[:, None]
              - 2.0 * (queries @ means.T))
        out = []
        for row in sq:
            order = np.argsort(row, kind="stable")[:k]
            out.append([(int(pids[i]), float(np.sqrt(max(row[i], 0.0)))) for i in order])
        return out

    def _reserve(self, size: int) -> None:
        capacity = len(self._vectors)
        if size <= capacity:
            return
        new = max(size, capacity * 2)
        self._vectors = _grow(self._vectors, new)
        self._sq_norms = _grow(self._sq_norms, new)
        self._face_ids = _grow(self._face_ids, new)
        self._person_ids = _grow(self._person_ids, new)


def _grow(array: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows,) + array.shape[1:], array.dtype)
    out[: len(array)] = array
    return out


class HnswIndex:
    """Approximate nearest-face search with FAISS's HNSW graph, for large galleries.

    Faces are added to the graph as they come. HNSW cannot delete, so removed faces are hidden
    from results and the graph is rebuilt only when they pass a quarter of it. ``ef_search``
    trades speed for recall (measured in ``bench/bench_gallery_scale.py``).
    """

    def __init__(self, dim: int, m: int = 32, ef_construction: int = 80, ef_search: int = 64):
        try:
            import faiss
        except ImportError:
            raise GalleryError("the approximate index needs faiss: pip install faiss-cpu") from None
        self._faiss = faiss
        self.dim, self.m, self.ef_construction, self.ef_search = dim, m, ef_construction, ef_search
        self._new_graph()
        self._face_ids = np.zeros(0, np.int64)
        self._person_ids = np.zeros(0, np.int64)
        self._live = np.zeros(0, bool)
        self._row_of: dict[int, int] = {}
        self._removed = 0

    def _new_graph(self) -> None:
        self._graph = self._faiss.IndexHNSWFlat(self.dim, self.m)
        self._graph.hnsw.efConstruction = self.ef_construction
        self._graph.hnsw.efSearch = self.ef_search

    def __len__(self) -> int:
        return len(self._row_of)

    @property
    def nbytes(self) -> int:
        """Approximate memory: vectors plus graph links plus id arrays, in bytes."""
        n = self._graph.ntotal
        return n * (self.dim * 4 + 2 * self.m * 4 + 4) + self._face_ids.nbytes * 2 + self._live.nbytes

    def add(self, face_ids: np.ndarray, person_ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(np.asarray(vectors, np.float32).reshape(-1, self.dim))
        if len(vectors) == 0:
            return
        start = self._graph.ntotal
        self._graph.add(vectors)
        self._face_ids = np.concatenate([self._face_ids, np.asarray(face_ids, np.int64)])
        self._person_ids = np.concatenate([self._person_ids, np.asarray(person_ids, np.int64)])
        self._live = np.concatenate([self._live, np.ones(len(vectors), bool)])
        for i, fid in enumerate(np.asarray(face_ids, np.int64).tolist()):
            self._row_of[fid] = start + i

    def remove(self, face_ids: np.ndarray) -> None:
        for fid in np.asarray(face_ids, np.int64).tolist():
            row = self._row_of.pop(fid, None)
            if row is not None:
                self._live[row] = False
                self._removed += 1
        if self._removed > max(1000, self._graph.ntotal // 4):
            self._rebuild()

    def _rebuild(self) -> None:
        keep = np.flatnonzero(self._live)
        vectors = self._graph.reconstruct_n(0, self._graph.ntotal)[keep]
        face_ids, person_ids = self._face_ids[keep], self._person_ids[keep]
        self._new_graph()
        self._face_ids = np.zeros(0, np.int64)
        self._person_ids = np.zeros(0, np.int64)
        self._live = np.zeros(0, bool)
        self._row_of = {}
        self._removed = 0
        self.add(face_ids, person_ids, vectors)

    def search(self, queries: np.ndarray, k: int, match: Match = "nearest") -> list[list[Hit]]:
        if match != "nearest":
            raise GalleryError("the approximate index matches the nearest face only; use index='exact' for 'mean'")
        queries = np.ascontiguousarray(np.asarray(queries, np.float32).reshape(-1, self.dim))
        if len(self) == 0 or k <= 0:
            return [[] for _ in queries]
        want = min(self._graph.ntotal, 4 * k + 16 + self._removed)
        sq, rows = self._graph.search(queries, want)
        out = []
        for sq_row, idx_row in zip(sq, rows):
            ok = idx_row >= 0
            idx_row, sq_row = idx_row[ok], sq_row[ok]
            ok = self._live[idx_row]
            idx_row, sq_row = idx_row[ok], sq_row[ok]
            out.append(_top_people(idx_row, sq_row, self._person_ids, k))
        return out
