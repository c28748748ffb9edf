"""Search indexes over enrolled encodings: exact (one matrix product) and approximate (IVF with
fast-scan PQ codes, re-ranked exactly).

Both take faces in and out one batch at a time, so enrolling or removing a person never rebuilds
the whole index. Both rank *people*: a person's distance to a probe is the distance to their
nearest face (``match="nearest"``) or, for the exact index, to the mean of their faces
(``match="mean"``). Distances are Euclidean, as in :mod:`visage.verification`.
"""

from __future__ import annotations

import json
import mmap
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol

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

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(face ids, vectors) of every face held, as views that the next change may overwrite."""
        return self._face_ids[: self._n], self._vectors[: self._n]

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


class _SpilledVectors:
    """Float32 rows on disk, read through read-only memory maps, so that they cost page cache, not process memory.

    A row is addressed by its slot. Slots below ``base_rows`` are in the file ``base`` (a snapshot's),
    which is only read. Later rows go to a file of this object's own in ``folder`` (the system's
    temporary folder by default), unlinked as soon as it is made, so that it goes away with the
    process. That file grows by doubling and is written with ``pwrite``, not through the map, so
    appending does not make the rows resident in this process; only rows that are read are.
    With ``on_disk=False`` the later rows stay in memory instead, and nothing is written.
    """

    def __init__(self, dim: int, folder: Path | None = None, base: Path | None = None, base_rows: int = 0,
                 on_disk: bool = True):
        self.dim = dim
        self._folder = folder
        self._on_disk = on_disk
        self._row_bytes = dim * 4
        # (file, map) pairs; the files stay open while mapped, to drop their cached pages.
        self._base_file: BinaryIO | None = None
        self._base_map: mmap.mmap | None = None
        self._base = np.zeros((0, dim), np.float32)
        if base is not None and base_rows:
            size = base.stat().st_size
            if size != base_rows * self._row_bytes:
                raise ValueError(f"{base}: {size} bytes, not {base_rows} rows of {dim} float32")
            self._base_file = open(base, "rb")  # it stays open as long as it is mapped
            self._base_map, self._base = self._map(self._base_file, base_rows)
        self._own_file: BinaryIO | None = None
        self._own_map: mmap.mmap | None = None
        self._own = np.zeros((0, dim), np.float32)  # the own file's rows, as many as its capacity
        self._own_rows = 0

    def __len__(self) -> int:
        return len(self._base) + self._own_rows

    @property
    def disk_bytes(self) -> int:
        """Bytes of the files the rows are read from (the own file at its capacity)."""
        return (len(self._base) + (len(self._own) if self._on_disk else 0)) * self._row_bytes

    @property
    def memory_bytes(self) -> int:
        """Bytes of the rows held in memory (with ``on_disk=False``), at their capacity."""
        return 0 if self._on_disk else self._own.nbytes

    def _map(self, file: BinaryIO, rows: int) -> tuple[mmap.mmap, np.ndarray]:
        """A read-only map of the first ``rows`` rows of ``file``, and those rows as an array over it."""
        mapped = mmap.mmap(file.fileno(), rows * self._row_bytes, access=mmap.ACCESS_READ)
        if hasattr(mmap, "MADV_RANDOM"):  # a re-rank reads scattered rows: read-ahead would only waste I/O
            mapped.madvise(mmap.MADV_RANDOM)
        return mapped, np.frombuffer(mapped, np.float32).reshape(rows, self.dim)

    def append(self, rows: np.ndarray) -> np.ndarray:
        """Write ``rows`` after the last slot. Returns their slots."""
        rows = np.ascontiguousarray(rows, np.float32).reshape(-1, self.dim)
        start, end = self._own_rows, self._own_rows + len(rows)
        if not self._on_disk:
            if end > len(self._own):
                self._own = _grow(self._own, max(end, 2 * len(self._own), 1024))
            self._own[start:end] = rows
            self._own_rows = end
            return np.arange(len(self._base) + start, len(self._base) + end)
        if self._own_file is None:
            self._own_file = tempfile.TemporaryFile(dir=self._folder)
        fd = self._own_file.fileno()
        if end > len(self._own):
            capacity = max(end, 2 * len(self._own), 1024)
            os.ftruncate(fd, capacity * self._row_bytes)
            # The old, smaller map is unmapped once no array made from it is left.
            self._own_map, self._own = self._map(self._own_file, capacity)
        data, offset = rows.data.cast("B"), start * self._row_bytes
        while data:
            written = os.pwrite(fd, data, offset)
            data, offset = data[written:], offset + written
        self._own_rows = end
        return np.arange(len(self._base) + start, len(self._base) + end)

    def rows(self, slots: np.ndarray) -> np.ndarray:
        """The rows at ``slots``: a new (len(slots), dim) float32 array."""
        slots = np.asarray(slots, np.int64)
        n_base = len(self._base)
        if not self._own_rows:
            return self._base[slots]
        if not n_base:
            return self._own[slots]
        out = np.empty((len(slots), self.dim), np.float32)
        in_base = slots < n_base
        out[in_base] = self._base[slots[in_base]]
        out[~in_base] = self._own[slots[~in_base] - n_base]
        return out

    def drop_page_cache(self) -> None:
        """Unmap the rows' cached pages from this process and ask the OS to drop them from its cache."""
        for file, mapped in ((self._base_file, self._base_map), (self._own_file, self._own_map)):
            if file is None or mapped is None:
                continue
            if hasattr(mmap, "MADV_DONTNEED"):
                mapped.madvise(mmap.MADV_DONTNEED)
            if hasattr(os, "posix_fadvise"):
                os.fsync(file.fileno())  # dirty pages cannot be dropped before they are written
                os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _pq_subquantizers(dim: int) -> int:
    """How many 4-bit sub-quantizers encode a ``dim``-d vector: an even divisor of ``dim`` near dim/5.

    Five dimensions per 4-bit code (dim/10 bytes a vector; 64 B at 640-d) put the exact nearest
    face among the top 256 codes for 99% of the face-like queries at 1M in a trial; ten
    dimensions per code (32 B) missed one in twenty.
    """
    divisors = [m for m in range(2, dim + 1, 2) if dim % m == 0] or [1]
    return min(divisors, key=lambda m: (abs(m - dim / 5), -m))


def _rows_of(parts: Sequence[np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """A function from positions in the concatenation of ``parts`` to those rows, without concatenating them."""
    starts = np.cumsum([0] + [len(p) for p in parts])

    def rows_at(positions: np.ndarray) -> np.ndarray:
        pieces = []
        for part, lo, hi in zip(parts, starts[:-1], starts[1:]):
            inside = positions[(positions >= lo) & (positions < hi)]
            if len(inside):
                pieces.append(part[inside - lo])
        return np.ascontiguousarray(np.concatenate(pieces), np.float32)

    return rows_at


class _RerankRows:
    """Every face's encoding twice, under one slot: an 8-bit code in memory, to re-rank the many
    candidates of the coarse codes, and the float32 encoding on disk (:class:`_SpilledVectors`),
    for the exact distances of the few best.

    The 8-bit code of a value is its place in its dimension's range (``low`` to ``low + 255·step``,
    from a training sample; values outside are clipped), so decoding is off by at most step/2.
    """

    def __init__(self, low: np.ndarray, step: np.ndarray, exact: _SpilledVectors, codes: np.ndarray | None = None,
                 capacity: int = 0):
        self.low, self.step, self.exact = low.astype(np.float32), step.astype(np.float32), exact
        self._n = len(codes) if codes is not None else 0
        self._codes = codes if codes is not None else np.zeros((capacity, len(low)), np.uint8)
        if self._n != len(exact):
            raise ValueError(f"{self._n} codes for {len(exact)} float32 rows")

    @classmethod
    def fit(cls, sample: np.ndarray, exact: _SpilledVectors, capacity: int = 0) -> _RerankRows:
        """Empty rows whose 8-bit ranges cover ``sample``, with room for ``capacity`` codes, over the
        empty float32 rows ``exact``."""
        low, high = sample.min(axis=0), sample.max(axis=0)
        return cls(low, np.maximum((high - low) / 255, 1e-12), exact, capacity=capacity)

    @property
    def nbytes(self) -> int:
        """Memory held by the 8-bit codes (their capacity) and ranges, in bytes."""
        return self._codes.nbytes + self.low.nbytes + self.step.nbytes

    def append(self, rows: np.ndarray) -> np.ndarray:
        """Store ``rows`` after the last slot. Returns their slots."""
        end = self._n + len(rows)
        if end > len(self._codes):
            # Grow by an eighth, not twofold: at 1M faces the codes are 640 MB, and doubling would
            # take the index over 1 GB for the sake of one more face.
            self._codes = _grow(self._codes, max(end, len(self._codes) + len(self._codes) // 8, 1024))
        self._codes[self._n:end] = np.clip(np.rint((rows - self.low) / self.step), 0, 255)
        self._n = end
        return self.exact.append(rows)

    def approx(self, slots: np.ndarray) -> np.ndarray:
        """The decoded 8-bit rows at ``slots``, (len(slots), dim) float32."""
        return self._codes[slots] * self.step + self.low

    def codes(self) -> np.ndarray:
        """The 8-bit codes of every slot, a view."""
        return self._codes[: self._n]


#: Faces filed into a new index (and written to its row file) per FAISS call while it is built.
_BUILD_CHUNK = 32_768
#: Removed faces' codes and rows stay (hidden) until they are a quarter of the live ones and this many.
_PURGE_MIN_REMOVED = 10_000
#: Candidates whose exact distance is computed, at least: the nearest by their 8-bit codes.
_EXACT_MIN = 16
#: Format of :meth:`IvfIndex.save`: 3 is fast-scan PQ codes, 8-bit codes and float32 rows.
_SAVE_FORMAT = 3


class IvfIndex:
    """Approximate nearest-face search for large galleries, in three steps: an inverted file of
    coarse codes, a re-rank by finer codes in memory, and exact distances for the few best.

    The first ``train_size`` faces are searched exactly (an in-memory :class:`ExactIndex`). Then
    k-means files the faces under about √n cells, and each face gets two codes:

    1. a 4-bit product-quantised code of dim/10 bytes (64 B at 640-d), in FAISS's fast-scan
       layout. A query scans the ``nprobe`` cells nearest to it and keeps the ``rerank`` faces
       whose codes are nearest. These codes are cheap enough to scan many cells, which faces
       need: they crowd together, so a face's nearest neighbour is often in another cell;
    2. an 8-bit code of every value (dim bytes), in memory. Those ``rerank`` candidates are
       ordered by it, which is within about 0.1% of their exact distance;
    3. the float32 encoding, on disk in a file read through a memory map (``spill_dir``, the
       temporary folder by default; a snapshot's own file after :meth:`load`). The best
       candidates, at least 16, get their exact distance from it and are ordered by that.

    So the distances returned are exact, and the top-1 is exact search's whenever that face is
    among the candidates. At 1M 640-d faces the index holds about 730 MB in memory (mostly the
    8-bit codes), against 2.6 GB of float32; a query reads about 16 float32 rows from the file,
    and the OS caches them (and may drop them when memory is short). ``spill_to_disk=False``
    keeps the float32 rows in memory instead, for a gallery whose encodings must not reach the
    disk in plaintext (one encrypted at rest).

    Later faces are filed under the existing cells, and the index is retrained only when it has
    grown ``regrow``-fold since training. Removed faces are hidden, not taken out of FAISS's
    lists: in faiss 1.15, ``remove_ids`` on fast-scan lists corrupts the codes added to them
    afterwards (a face added after a removal is no longer found). Their codes and rows are
    purged, by filing the live faces anew under the same cells, once they are a quarter of the
    live faces. Latency, recall against exact search and memory are measured in
    ``bench/bench_gallery_scale.py``.
    """

    def __init__(self, dim: int, nprobe: int = 64, train_size: int = 20_000, regrow: float = 16.0,
                 rerank: int = 256, spill_dir: str | os.PathLike[str] | None = None, spill_to_disk: bool = True):
        try:
            import faiss
        except ImportError:
            raise GalleryError("the approximate index needs faiss: pip install faiss-cpu") from None
        self._faiss: Any = faiss
        self.dim, self.train_size, self.regrow, self.rerank = dim, train_size, regrow, rerank
        self._nprobe = nprobe
        self.spill_dir = Path(spill_dir) if spill_dir is not None else None
        self.spill_to_disk = spill_to_disk
        self._exact: ExactIndex | None = ExactIndex(dim)
        self._ivf: Any = None
        self._quantizer: Any = None  # the IVF does not own the quantizer it was built with
        self._rows: _RerankRows | None = None
        self._trained_on = 0
        self._person_of = np.full(1024, -1, np.int64)  # face id → person id (-1: absent)
        self._slot_of = np.full(1024, -1, np.int64)  # face id → slot in self._rows (-1: absent)
        self._removed = 0  # faces removed since the codes were built: their codes and rows are still held
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def trained(self) -> bool:
        """Whether the index has left exact search for its cells."""
        return self._ivf is not None

    @property
    def cells(self) -> int:
        """Number of IVF cells (0 before training)."""
        return int(self._ivf.nlist) if self._ivf is not None else 0

    @property
    def nprobe(self) -> int:
        """Cells a query scans."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._nprobe = int(value)
        if self._ivf is not None:
            self._ivf.nprobe = self._nprobe

    @property
    def nbytes(self) -> int:
        """Memory the index holds, in bytes: the coarse codes and their ids, the 8-bit codes, the cell
        and sub-quantizer centroids, and the id lookups (or the exact index's arrays before training).
        The float32 rows are on disk (:attr:`disk_bytes`) and not counted, unless ``spill_to_disk`` is off."""
        lookups = self._person_of.nbytes + self._slot_of.nbytes
        if self._ivf is None or self._rows is None:
            assert self._exact is not None
            return self._exact.nbytes + lookups
        ivf = self._ivf
        invlists = self._faiss.downcast_InvertedLists(ivf.invlists)
        blocks = sum(-(-invlists.list_size(cell) // invlists.n_per_block) for cell in range(ivf.nlist))
        coarse = blocks * invlists.block_size + ivf.ntotal * 8
        centroids = (ivf.nlist + ivf.pq.ksub) * self.dim * 4  # the cells', and the sub-quantizers' (ksub × dim)
        return int(coarse + self._rows.nbytes + self._rows.exact.memory_bytes + centroids + lookups)

    @property
    def disk_bytes(self) -> int:
        """Bytes of the memory-mapped file(s) of float32 rows (0 before training)."""
        return self._rows.exact.disk_bytes if self._rows is not None else 0

    def drop_page_cache(self) -> None:
        """Drop the cached pages of the float32 rows, so that the next searches read them from disk.

        For measuring a cold start; after a bulk build it also hands the written pages back early.
        """
        if self._rows is not None:
            self._rows.exact.drop_page_cache()

    def add(self, face_ids: np.ndarray, person_ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(np.asarray(vectors, np.float32).reshape(-1, self.dim))
        face_ids = np.asarray(face_ids, np.int64).reshape(-1)
        person_ids = np.asarray(person_ids, np.int64).reshape(-1)
        if len(vectors) == 0:
            return
        self._person_of = _cover(self._person_of, face_ids)
        self._person_of[face_ids] = person_ids
        self._slot_of = _cover(self._slot_of, face_ids)
        self._n += len(vectors)
        if self._exact is not None:
            if len(self._exact) + len(vectors) < self.train_size:
                self._exact.add(face_ids, person_ids, vectors)
                return
            held_ids, held = self._exact.arrays()
            self._train(np.concatenate([held_ids, face_ids]), _rows_of([held, vectors]))
            return
        assert self._rows is not None
        self._slot_of[face_ids] = self._rows.append(vectors)
        if self._n > self.regrow * self._trained_on:
            self._retrain()
        else:
            self._ivf.add_with_ids(vectors, face_ids)

    def _live(self) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """(face ids held, a function from positions among them to their float32 rows)."""
        assert self._rows is not None
        face_ids = np.flatnonzero(self._slot_of >= 0)
        slots, exact = self._slot_of[face_ids], self._rows.exact
        return face_ids, lambda positions: exact.rows(slots[positions])

    def _retrain(self) -> None:
        self._train(*self._live())

    def _train(self, face_ids: np.ndarray, rows_at: Callable[[np.ndarray], np.ndarray]) -> None:
        """Build the cells and codes anew over ``face_ids`` and write their rows to a new row file."""
        faiss, n = self._faiss, len(face_ids)
        # About √n cells, and at least 40 training faces per cell (FAISS's k-means asks for 39).
        nlist = int(max(1, min(np.sqrt(n), n // 40, 65_536)))
        quantizer = faiss.IndexFlatL2(self.dim)
        ivf = faiss.IndexIVFPQFastScan(quantizer, self.dim, nlist, _pq_subquantizers(self.dim), 4)
        sample = rows_at(np.sort(np.random.default_rng(0).choice(n, size=min(n, 40 * nlist), replace=False)))
        ivf.train(sample)
        rows = _RerankRows.fit(sample, self._new_float32_rows(), capacity=n)
        self._fill(ivf, rows, face_ids, rows_at)
        ivf.nprobe = self._nprobe
        self._ivf, self._quantizer, self._exact, self._trained_on = ivf, quantizer, None, n

    def _fill(self, ivf: Any, rows: _RerankRows, face_ids: np.ndarray,
              rows_at: Callable[[np.ndarray], np.ndarray]) -> None:
        """File ``face_ids`` into the (trained, empty) ``ivf`` and ``rows``, which become the index's."""
        slot_of = np.full(len(self._slot_of), -1, np.int64)
        for start in range(0, len(face_ids), _BUILD_CHUNK):
            positions = np.arange(start, min(len(face_ids), start + _BUILD_CHUNK))
            vectors, ids = rows_at(positions), face_ids[positions]
            ivf.add_with_ids(vectors, ids)
            slot_of[ids] = rows.append(vectors)
        self._ivf, self._rows, self._slot_of, self._removed = ivf, rows, slot_of, 0

    def _purge(self) -> None:
        """Drop removed faces' codes and rows: file the live faces anew under the same cells and codebooks."""
        assert self._rows is not None
        face_ids, rows_at = self._live()
        old = self._rows
        self._ivf.reset()
        self._fill(self._ivf, _RerankRows(old.low, old.step, self._new_float32_rows(), capacity=len(face_ids)),
                   face_ids, rows_at)

    def _new_float32_rows(self) -> _SpilledVectors:
        return _SpilledVectors(self.dim, self.spill_dir, on_disk=self.spill_to_disk)

    def save(self, folder: Path) -> None:
        """Write the index to ``folder``, for :meth:`load`: the FAISS index, the 8-bit codes, and the
        float32 rows as one raw file that :meth:`load` memory-maps."""
        state = {"format": _SAVE_FORMAT, "trained_on": self._trained_on, "n": self._n, "removed": self._removed,
                 "nprobe": self._nprobe, "train_size": self.train_size, "regrow": self.regrow, "rerank": self.rerank}
        np.save(folder / "person_of.npy", self._person_of)
        if self._exact is not None or self._rows is None:
            assert self._exact is not None
            self._exact.save(folder)
        else:
            self._faiss.write_index(self._ivf, str(folder / "ivf.faiss"))
            face_ids, rows_at = self._live()
            np.save(folder / "rerank_face_ids.npy", face_ids)
            np.save(folder / "rerank_codes.npy", self._rows.codes()[self._slot_of[face_ids]])
            np.save(folder / "rerank_range.npy", np.stack([self._rows.low, self._rows.step]))
            with open(folder / "rerank_vectors.f32", "wb") as out:
                for start in range(0, len(face_ids), _BUILD_CHUNK):
                    rows_at(np.arange(start, min(len(face_ids), start + _BUILD_CHUNK))).tofile(out)
        (folder / "ivf.json").write_text(json.dumps(state))

    @classmethod
    def load(cls, folder: Path, dim: int, spill_dir: str | os.PathLike[str] | None = None,
             spill_to_disk: bool = True) -> IvfIndex:
        """The index saved in ``folder``. Its float32 rows are memory-mapped from there, not read;
        faces added later go to a file of its own in ``spill_dir`` (or to memory)."""
        state = json.loads((folder / "ivf.json").read_text())
        if state.get("format") != _SAVE_FORMAT:
            raise ValueError(f"{folder}: saved by another version of the approximate index")
        index = cls(dim, nprobe=state["nprobe"], train_size=state["train_size"], regrow=state["regrow"],
                    rerank=state["rerank"], spill_dir=spill_dir, spill_to_disk=spill_to_disk)
        index._person_of = np.load(folder / "person_of.npy")
        index._n, index._trained_on, index._removed = int(state["n"]), int(state["trained_on"]), int(state["removed"])
        index._slot_of = np.full(len(index._person_of), -1, np.int64)
        if (folder / "ivf.faiss").exists():
            ivf = index._faiss.read_index(str(folder / "ivf.faiss"))
            face_ids = np.load(folder / "rerank_face_ids.npy")
            if ivf.d != dim or ivf.ntotal != index._n + index._removed or len(face_ids) != index._n:
                raise ValueError(f"{folder}: saved approximate index does not match")
            low, step = np.load(folder / "rerank_range.npy")
            exact = _SpilledVectors(dim, index.spill_dir, base=folder / "rerank_vectors.f32", base_rows=len(face_ids),
                                    on_disk=spill_to_disk)
            index._rows = _RerankRows(low, step, exact, codes=np.load(folder / "rerank_codes.npy"))
            ivf.nprobe = index._nprobe
            index._ivf, index._exact = ivf, None
            index._slot_of = _cover(index._slot_of, face_ids)
            index._slot_of[face_ids] = np.arange(len(face_ids))
        else:
            index._exact = ExactIndex.load(folder, dim)
            if len(index._exact) != index._n:
                raise ValueError(f"{folder}: saved index does not match")
        return index

    def remove(self, face_ids: np.ndarray) -> None:
        face_ids = np.unique(np.asarray(face_ids, np.int64))
        face_ids = face_ids[(face_ids >= 0) & (face_ids < len(self._person_of))]
        face_ids = face_ids[self._person_of[face_ids] >= 0]
        if len(face_ids) == 0:
            return
        self._person_of[face_ids] = -1
        self._n -= len(face_ids)
        if self._exact is not None:
            self._exact.remove(face_ids)
            return
        self._slot_of[face_ids] = -1  # hidden from search (see the class's docstring)
        self._removed += len(face_ids)
        if self._removed > max(self._n // 4, _PURGE_MIN_REMOVED):
            self._purge()

    def search(self, queries: np.ndarray, k: int, match: Match = "nearest") -> list[list[Hit]]:
        if self._exact is not None:
            return self._exact.search(queries, k, match)
        if match != "nearest":
            raise GalleryError("the approximate index matches the nearest face only; use index='exact' for 'mean'")
        assert self._rows is not None
        queries = np.ascontiguousarray(np.asarray(queries, np.float32).reshape(-1, self.dim))
        if self._n == 0 or k <= 0:
            return [[] for _ in queries]
        held = self._n + self._removed
        # Ask for more candidates by the share of removed faces still among the codes.
        wanted = min(held, -(-max(self.rerank, 4 * k + 16) * held // self._n))
        _, labels = self._ivf.search(queries, wanted)
        return [self._rank(query, face_ids, k) for query, face_ids in zip(queries, labels)]

    def _rank(self, query: np.ndarray, face_ids: np.ndarray, k: int) -> list[Hit]:
        """The ``k`` nearest people among the candidate faces ``face_ids``: by 8-bit codes, then exactly."""
        assert self._rows is not None
        face_ids = face_ids[face_ids >= 0]
        slots = self._slot_of[face_ids]
        face_ids, slots = face_ids[slots >= 0], slots[slots >= 0]
        approx = self._rows.approx(slots) - query
        order = np.argsort(np.einsum("ij,ij->i", approx, approx), kind="stable")
        # The exact distance of the best, enough of them to cover k people when there are that many.
        _, first_of_person = np.unique(self._person_of[face_ids[order]], return_index=True)
        first_of_person.sort()
        take = max(_EXACT_MIN, 2 * k + 8)
        if len(first_of_person) >= k:
            take = max(take, int(first_of_person[k - 1]) + 1)
        best, best_slots = face_ids[order[:take]], slots[order[:take]]
        diff = self._rows.exact.rows(best_slots) - query
        sq = np.einsum("ij,ij->i", diff, diff)
        exact_order = np.argsort(sq, kind="stable")
        return _top_people(best[exact_order], sq[exact_order], self._person_of, k)
