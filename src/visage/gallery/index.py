"""Search indexes over enrolled encodings: exact (one matrix product) and approximate (HNSW).

Both take faces in and out one batch at a time, so enrolling or removing a person never rebuilds
the whole index. Both rank *people*: a person's distance to a probe is the distance to their
nearest face (``match="nearest"``) or, for the exact index, to the mean of their faces
(``match="mean"``). Distances are Euclidean, as in :mod:`visage.verification`.
"""

from __future__ import annotations

import json
from pathlib import Path
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
        self._row_of = np.full(capacity, -1, np.int64)  # face id → row (-1: absent)
        self._n = 0
        # Per-person means for mean matching: computed on the first such search after a change.
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
        self._row_of = _cover(self._row_of, face_ids)
        self._row_of[face_ids] = np.arange(self._n, self._n + m)
        self._n += m
        self._centroids = None

    def remove(self, face_ids: np.ndarray) -> None:
        for fid in np.asarray(face_ids, np.int64).tolist():
            row = int(self._row_of[fid]) if 0 <= fid < len(self._row_of) else -1
            if row < 0:
                continue
            self._row_of[fid] = -1
            last = self._n - 1
            if row != last:
                for arr in (self._vectors, self._sq_norms, self._face_ids, self._person_ids):
                    arr[row] = arr[last]
                self._row_of[int(self._face_ids[row])] = row
            self._n = last
        self._centroids = None

    def export(self) -> tuple[np.ndarray, np.ndarray]:
        """(face ids, vectors) of every face held, as copies."""
        return self._face_ids[: self._n].copy(), self._vectors[: self._n].copy()

    def save(self, folder: Path) -> None:
        """Write the arrays to ``folder`` (``.npy`` files), for :meth:`load`."""
        n = self._n
        for name, array in (("vectors", self._vectors), ("sq_norms", self._sq_norms),
                            ("face_ids", self._face_ids), ("person_ids", self._person_ids)):
            np.save(folder / f"{name}.npy", array[:n])

    @classmethod
    def load(cls, folder: Path, dim: int) -> ExactIndex:
        """The index saved in ``folder``; its vectors are memory-mapped (copy on write), not read."""
        vectors = np.load(folder / "vectors.npy", mmap_mode="c")
        if vectors.ndim != 2 or vectors.shape[1] != dim or vectors.dtype != np.float32:
            raise ValueError(f"{folder}: saved vectors do not match a {dim}-d index")
        index = cls(dim, capacity=1)
        n = len(vectors)
        index._vectors = vectors
        index._sq_norms = np.load(folder / "sq_norms.npy")
        index._face_ids = np.load(folder / "face_ids.npy")
        index._person_ids = np.load(folder / "person_ids.npy")
        if not (len(index._sq_norms) == len(index._face_ids) == len(index._person_ids) == n):
            raise ValueError(f"{folder}: saved arrays differ in length")
        index._row_of = _cover(index._row_of, index._face_ids)
        index._row_of[index._face_ids] = np.arange(n)
        index._n = n
        return index

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
            pids, slot = np.unique(self._person_ids[: self._n], return_inverse=True)
            sums = np.zeros((len(pids), self.dim))
            np.add.at(sums, slot, self._vectors[: self._n])
            means = (sums / np.bincount(slot)[:, None]).astype(np.float32)
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


def _cover(lookup: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``lookup`` (id → value, -1 when absent) grown to hold every id in ``ids``."""
    if len(ids) and (ids.min() < 0 or ids.max() >= 2 ** 40):
        raise GalleryError("face ids must be between 0 and 2**40")
    top = int(ids.max()) + 1 if len(ids) else 0
    if top <= len(lookup):
        return lookup
    out = np.full(max(top, 2 * len(lookup)), -1, np.int64)
    out[: len(lookup)] = lookup
    return out


def _grow(array: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows,) + array.shape[1:], array.dtype)
    out[: len(array)] = array
    return out


class IvfIndex:
    """Approximate nearest-face search with a FAISS inverted file (IVF-Flat), for large galleries.

    The first ``train_size`` faces are searched exactly; then k-means picks about √n cells, every
    face is filed under its nearest cell, and a query scans only the ``nprobe`` nearest cells.
    Later faces are filed under the existing cells and removed faces are taken out of their cell,
    so neither rebuilds the index; it is retrained only when it has grown ``regrow``-fold since training.
    Recall against exact search and latency are measured in ``bench/bench_gallery_scale.py``.
    """

    def __init__(self, dim: int, nprobe: int = 16, train_size: int = 20_000, regrow: float = 16.0):
        try:
            import faiss
        except ImportError:
            raise GalleryError("the approximate index needs faiss: pip install faiss-cpu") from None
        self._faiss = faiss
        self.dim, self.nprobe, self.train_size, self.regrow = dim, nprobe, train_size, regrow
        self._exact: ExactIndex | None = ExactIndex(dim)
        self._ivf = None
        self._trained_on = 0
        self._person_of = np.full(1024, -1, np.int64)  # face id → person id (-1: absent)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def trained(self) -> bool:
        return self._ivf is not None

    @property
    def nbytes(self) -> int:
        """Memory held: vectors, their ids and the cell centroids, in bytes."""
        if self._ivf is None:
            return self._exact.nbytes + self._person_of.nbytes
        return self._n * (self.dim * 4 + 8) + self._ivf.nlist * self.dim * 4 + self._person_of.nbytes

    def add(self, face_ids: np.ndarray, person_ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(np.asarray(vectors, np.float32).reshape(-1, self.dim))
        face_ids = np.asarray(face_ids, np.int64)
        if len(vectors) == 0:
            return
        self._person_of = _cover(self._person_of, face_ids)
        self._person_of[face_ids] = np.asarray(person_ids, np.int64)
        self._n += len(vectors)
        if self._ivf is None:
            self._exact.add(face_ids, person_ids, vectors)
            if len(self._exact) >= self.train_size:
                self._train(*self._exact.export())
        else:
            self._ivf.add_with_ids(vectors, face_ids)
            if self._n > self.regrow * self._trained_on:
                self._train(*self._export_ivf())

    def _export_ivf(self) -> tuple[np.ndarray, np.ndarray]:
        invlists = self._ivf.invlists
        ids, vecs = [], []
        for cell in range(self._ivf.nlist):
            size = invlists.list_size(cell)
            if size:
                ids.append(self._faiss.rev_swig_ptr(invlists.get_ids(cell), size).copy())
                codes = self._faiss.rev_swig_ptr(invlists.get_codes(cell), size * self.dim * 4)
                vecs.append(np.frombuffer(codes.tobytes(), np.float32).reshape(size, self.dim))
        return np.concatenate(ids), np.concatenate(vecs)

    def _train(self, face_ids: np.ndarray, vectors: np.ndarray) -> None:
        n = len(vectors)
        nlist = int(np.clip(np.sqrt(n), 16, 65_536))
        quantizer = self._faiss.IndexFlatL2(self.dim)
        ivf = self._faiss.IndexIVFFlat(quantizer, self.dim, nlist, self._faiss.METRIC_L2)
        sample = np.random.default_rng(0).choice(n, size=min(n, 40 * nlist), replace=False)
        ivf.train(np.ascontiguousarray(vectors[sample]))
        ivf.add_with_ids(np.ascontiguousarray(vectors), np.asarray(face_ids, np.int64))
        ivf.nprobe = self.nprobe
        self._ivf, self._quantizer, self._exact, self._trained_on = ivf, quantizer, None, n

    def save(self, folder: Path) -> None:
        """Write the index to ``folder``, for :meth:`load`."""
        state = {"trained_on": self._trained_on, "n": self._n, "nprobe": self.nprobe,
                 "train_size": self.train_size, "regrow": self.regrow}
        np.save(folder / "person_of.npy", self._person_of)
        if self._ivf is None:
            self._exact.save(folder)
        else:
            self._faiss.write_index(self._ivf, str(folder / "ivf.faiss"))
        (folder / "ivf.json").write_text(json.dumps(state))

    @classmethod
    def load(cls, folder: Path, dim: int) -> IvfIndex:
        """The index saved in ``folder``."""
        state = json.loads((folder / "ivf.json").read_text())
        index = cls(dim, nprobe=state["nprobe"], train_size=state["train_size"], regrow=state["regrow"])
        index._person_of = np.load(folder / "person_of.npy")
        index._n, index._trained_on = int(state["n"]), int(state["trained_on"])
        if (folder / "ivf.faiss").exists():
            index._ivf = index._faiss.read_index(str(folder / "ivf.faiss"))
            index._ivf.nprobe = index.nprobe
            index._exact = None
            if index._ivf.d != dim or index._ivf.ntotal != index._n:
                raise ValueError(f"{folder}: saved IVF index does not match")
        else:
            index._exact = ExactIndex.load(folder, dim)
            if len(index._exact) != index._n:
                raise ValueError(f"{folder}: saved index does not match")
        return index

    def remove(self, face_ids: np.ndarray) -> None:
        face_ids = np.asarray(face_ids, np.int64)
        face_ids = face_ids[(face_ids >= 0) & (face_ids < len(self._person_of))]
        face_ids = face_ids[self._person_of[face_ids] >= 0]
        if len(face_ids) == 0:
            return
        self._person_of[face_ids] = -1
        self._n -= len(face_ids)
        if self._ivf is None:
            self._exact.remove(face_ids)
        else:
            self._ivf.remove_ids(self._faiss.IDSelectorArray(len(face_ids), self._faiss.swig_ptr(face_ids)))

    def search(self, queries: np.ndarray, k: int, match: Match = "nearest") -> list[list[Hit]]:
        if self._ivf is None:
            return self._exact.search(queries, k, match)
        if match != "nearest":
            raise GalleryError("the approximate index matches the nearest face only; use index='exact' for 'mean'")
        queries = np.ascontiguousarray(np.asarray(queries, np.float32).reshape(-1, self.dim))
        if self._n == 0 or k <= 0:
            return [[] for _ in queries]
        sq, labels = self._ivf.search(queries, min(self._n, 4 * k + 16))
        out = []
        for sq_row, id_row in zip(sq, labels):
            ok = id_row >= 0
            out.append(_top_people(id_row[ok], sq_row[ok], self._person_of, k))
        return out
