"""The approximate index (IVF of fast-scan PQ codes, re-ranked by 8-bit codes, then exactly from
memory-mapped float32 rows) against exact search.

The vectors are face-like rather than uniform: Gaussian with a few strong directions, like the
fused encoder's 640-d encodings, where nearest neighbours are far harder to find than among
uniform random vectors.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from visage.errors import GalleryError
from visage.gallery import ExactIndex, IvfIndex
from visage.gallery.index import _pq_subquantizers

DIM = 640


def correlated(n: int, rng: np.random.Generator, dim: int = DIM) -> np.ndarray:
    """``n`` unit vectors from one Gaussian whose variance sits mostly in a few directions (fixed by seed 1)."""
    basis = np.random.default_rng(1)
    strong = basis.standard_normal((48, dim)).astype(np.float32) * np.linspace(1.0, 0.1, 48, dtype=np.float32)[:, None]
    mean = basis.standard_normal(dim).astype(np.float32) * 0.8
    x = rng.standard_normal((n, 48), dtype=np.float32) @ strong + mean
    x += 0.3 * rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def near_copies(vectors: np.ndarray, rng: np.random.Generator, scale: float = 0.05) -> np.ndarray:
    """Each vector moved a little (about ``scale`` in length), made unit length again."""
    moved = vectors + scale / np.sqrt(vectors.shape[1]) * rng.standard_normal(vectors.shape, dtype=np.float32)
    return moved / np.linalg.norm(moved, axis=1, keepdims=True)


def top1(index, queries: np.ndarray) -> list[tuple[int, float]]:
    return [hits[0] for hits in index.search(queries, 1)]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[np.ndarray, ExactIndex, IvfIndex]:
    """20,000 correlated 640-d vectors, one person each, in an exact and a trained approximate index."""
    vectors = correlated(20_000, np.random.default_rng(0))
    exact = ExactIndex(DIM)
    approx = IvfIndex(DIM, train_size=5_000, spill_dir=tmp_path_factory.mktemp("spill"))
    for index in (exact, approx):
        index.add(np.arange(len(vectors)), np.arange(len(vectors)), vectors)
    return vectors, exact, approx


@pytest.mark.slow
def test_finds_the_exact_nearest_face_of_new_faces_like_exact_search(built):
    vectors, exact, approx = built
    assert approx.trained and len(approx) == len(vectors)
    strangers = correlated(300, np.random.default_rng(7))
    got, want = top1(approx, strangers), top1(exact, strangers)
    recall = np.mean([g[0] == w[0] for g, w in zip(got, want)])
    assert recall >= 0.99
    # The re-rank uses the float32 vectors: the distance of a found face is exact search's.
    same = [(g[1], w[1]) for g, w in zip(got, want) if g[0] == w[0]]
    assert [g for g, _ in same] == pytest.approx([w for _, w in same], abs=1e-5)


@pytest.mark.slow
def test_planted_near_duplicates_come_first_with_their_exact_distance(built):
    vectors, exact, approx = built
    planted = np.random.default_rng(3).choice(len(vectors), 100, replace=False)
    probes = near_copies(vectors[planted], np.random.default_rng(4))
    got, want = top1(approx, probes), top1(exact, probes)
    assert [pid for pid, _ in want] == planted.tolist()
    assert [pid for pid, _ in got] == planted.tolist()
    assert [d for _, d in got] == pytest.approx([d for _, d in want], abs=1e-5)


def test_holds_far_less_memory_than_the_float32_vectors(built):
    vectors, exact, approx = built
    # In memory: coarse codes (64 B a face) and their ids, 8-bit codes (640 B), centroids and lookups,
    # about 0.29 of the float32 encodings (2,560 B a face), which are on disk.
    assert approx.nbytes < vectors.nbytes / 3
    assert approx.nbytes < exact.nbytes / 3
    assert approx.disk_bytes >= vectors.nbytes


def test_top_k_people_match_exact_search(built):
    vectors, exact, approx = built
    probes = near_copies(vectors[:20], np.random.default_rng(5), scale=0.5)
    for got, want in zip(approx.search(probes, 5), exact.search(probes, 5)):
        assert [pid for pid, _ in got] == [pid for pid, _ in want]


@pytest.mark.slow
def test_follows_removals_and_additions_and_purges_removed_faces(tmp_path):
    rng = np.random.default_rng(11)
    vectors = correlated(24_000, rng)
    exact, approx = ExactIndex(DIM), IvfIndex(DIM, train_size=4_000, spill_dir=tmp_path)
    for index in (exact, approx):
        index.add(np.arange(len(vectors)), np.arange(len(vectors)) // 2, vectors)  # two faces a person
    file_before = approx.disk_bytes
    gone = np.arange(13_000)  # people 0-6,499: over a quarter of those left (and 10,000), so purged
    for index in (exact, approx):
        index.remove(gone)
        index.remove(np.array([5, 30_000]))  # removed or unknown: nothing changes
    assert len(approx) == len(exact) == len(vectors) - 13_000
    assert approx.disk_bytes < file_before
    late = near_copies(vectors[:3], rng)
    for index in (exact, approx):
        index.add(np.array([90_000, 90_001, 90_002]), np.array([70_000, 70_001, 70_002]), late)
    probes = np.concatenate([near_copies(late, rng, 0.01), near_copies(vectors[1:40:2], rng)])
    got, want = top1(approx, probes), top1(exact, probes)
    assert [pid for pid, _ in got] == [pid for pid, _ in want]
    assert [pid for pid, _ in got[:3]] == [70_000, 70_001, 70_002]
    assert all(pid >= 6_500 for hits in approx.search(probes, 5) for pid, _ in hits)


@pytest.mark.slow
def test_a_face_added_after_a_few_removals_is_found(tmp_path):
    # FAISS's own removal from fast-scan lists breaks the codes added after it; the index hides removed faces instead.
    rng = np.random.default_rng(13)
    vectors = correlated(6_000, rng)
    approx = IvfIndex(DIM, train_size=5_000, spill_dir=tmp_path)
    approx.add(np.arange(len(vectors)), np.arange(len(vectors)), vectors)
    approx.remove(np.arange(0, 600, 6))
    late = correlated(20, rng)
    approx.add(np.arange(10_000, 10_020), np.arange(20_000, 20_020), late)
    assert [pid for pid, _ in top1(approx, near_copies(late, rng, 0.01))] == list(range(20_000, 20_020))
    assert all(pid not in range(0, 600, 6) for hits in approx.search(vectors[:600], 3) for pid, _ in hits)


@pytest.mark.slow
def test_saved_index_maps_its_rows_and_takes_later_changes(tmp_path):
    rng = np.random.default_rng(12)
    vectors = correlated(6_000, rng)
    approx = IvfIndex(DIM, train_size=5_000, spill_dir=tmp_path)
    approx.add(np.arange(len(vectors)), np.arange(len(vectors)), vectors)
    probes = near_copies(vectors[:30], rng)
    before = top1(approx, probes)
    (tmp_path / "saved").mkdir()
    approx.save(tmp_path / "saved")
    loaded = IvfIndex.load(tmp_path / "saved", DIM, spill_dir=tmp_path)
    assert loaded.trained and len(loaded) == len(approx) and loaded.nprobe == approx.nprobe
    assert top1(loaded, probes) == before
    # A face added after loading goes to the index's own file, beside the saved (read-only) rows.
    loaded.add(np.array([50_000]), np.array([99_999]), probes[:1])
    loaded.remove(np.array([0]))
    assert top1(loaded, probes[:1]) == [(99_999, pytest.approx(0.0, abs=1e-3))]
    (tmp_path / "again").mkdir()
    loaded.save(tmp_path / "again")
    again = IvfIndex.load(tmp_path / "again", DIM)
    assert top1(again, probes) == top1(loaded, probes)


@pytest.mark.slow
def test_float32_rows_can_stay_in_memory_for_an_encrypted_gallery(tmp_path):
    rng = np.random.default_rng(14)
    vectors = correlated(6_000, rng)
    on_disk = IvfIndex(DIM, train_size=5_000, spill_dir=tmp_path)
    in_memory = IvfIndex(DIM, train_size=5_000, spill_dir=tmp_path, spill_to_disk=False)
    for index in (on_disk, in_memory):
        index.add(np.arange(len(vectors)), np.arange(len(vectors)), vectors)
        index.add(np.array([9_000]), np.array([9_000]), vectors[:1])  # one more after training
    assert in_memory.disk_bytes == 0 and on_disk.disk_bytes >= vectors.nbytes
    assert in_memory.nbytes >= on_disk.nbytes + len(vectors) * DIM * 4
    probes = near_copies(vectors[1:40], rng)
    assert top1(in_memory, probes) == top1(on_disk, probes)


def test_an_index_saved_by_the_ivf_flat_version_is_refused(tmp_path):
    (tmp_path / "ivf.json").write_text(json.dumps({"trained_on": 10, "n": 10, "nprobe": 16, "train_size": 5,
                                                   "regrow": 16.0}))
    with pytest.raises(ValueError, match="another version"):  # snapshot.load then reads the store instead
        IvfIndex.load(tmp_path, DIM)


def test_mean_matching_needs_the_exact_index(built):
    vectors, _, approx = built
    with pytest.raises(GalleryError, match="nearest face only"):
        approx.search(vectors[:1], 1, match="mean")


@pytest.mark.parametrize(("dim", "subquantizers"), [(128, 32), (512, 128), (640, 128)])
def test_codes_take_about_five_dimensions_per_four_bits(dim, subquantizers):
    assert _pq_subquantizers(dim) == subquantizers and dim % subquantizers == 0


def test_a_gallery_keeps_the_float32_rows_beside_it_or_in_memory_when_encrypted(tmp_path):
    """The IVF index's exact rows go next to a plain gallery; an encrypted one never writes them out."""
    from visage.gallery import Gallery
    from visage.gallery.types import FaceRecord
    from visage.server.crypto import EncryptedStore

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 640)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for name, store in (("plain", tmp_path / "plain" / "g.db"),
                        ("encrypted", EncryptedStore(_mkdir(tmp_path / "encrypted") / "g.db", "a passphrase"))):
        with Gallery(store, index="ivf", encoder="dlib+facenet") as gallery:
            for i in range(0, 300, 50):
                gallery.add(f"p{i}", [FaceRecord(v, f"{name}-{i}-{k}") for k, v in enumerate(vectors[i:i + 50])],
                            encoder_name="dlib+facenet-w0.60", dim=640, encoder_key="dlib+facenet")
            gallery.search(vectors[:1], top=1)
            index = gallery._searcher().index
            assert index.spill_to_disk is (name == "plain")
            if name == "plain":
                assert index.spill_dir == tmp_path / "plain"


def _mkdir(path):
    path.mkdir(parents=True)
    return path
