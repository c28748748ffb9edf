"""Gallery reliability with real processes: SIGKILL in the middle of enrolment, concurrent writers."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image as PILImage

from visage.gallery import Gallery

pytestmark = pytest.mark.slow  # real processes, killed and raced

BASES = [("Ariel_Sharon", (1, 2, 3)), ("Colin_Powell", (1, 2, 3)), ("Donald_Rumsfeld", (1, 2, 3)),
         ("Arnold_Schwarzenegger", (1, 2, 3))]


def _integrity(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def _make_collection(shared_data: Path, root: Path, people: int, per_person: int) -> None:
    """``people`` sub-folders of ``per_person`` distinct photos each (real faces, distinct bytes)."""
    bases = [PILImage.open(shared_data / "faces" / f"lfw__{p}" / f"{p}_{n:04d}.jpg").convert("RGB")
             for p, numbers in BASES for n in numbers]
    count = 0
    for k in range(people):
        folder = root / f"person_{k:03d}"
        folder.mkdir(parents=True)
        for j in range(per_person):
            img = bases[count % len(bases)].copy()
            # A unique mark in the corner makes every file's bytes (and sha256) different.
            img.putpixel((0, 0), (count % 256, count // 256, 7))
            img.save(folder / f"{j}.jpg", quality=92, comment=f"visage test photo {count}".encode())
            count += 1


def _read_until(proc: subprocess.Popen, wanted: int, timeout: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while len(lines) < wanted:
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"only {len(lines)} line(s) before the timeout")
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"process ended early after {lines}")
        if line.startswith("enrolled ") or line.startswith("committed "):
            lines.append(line.strip())
    return lines


def test_sigkill_during_a_1000_photo_enrolment_loses_nothing_committed(shared_data, tmp_path):
    photos = tmp_path / "photos"
    _make_collection(shared_data, photos, people=250, per_person=4)
    files = sorted(photos.rglob("*.jpg"))
    assert len(files) == 1000 and len({hashlib.sha256(f.read_bytes()).digest() for f in files}) == 1000
    gallery = tmp_path / "g.db"
    proc = subprocess.Popen([sys.executable, "-m", "visage", "enroll", "--folder", str(photos),
                             "--gallery", str(gallery)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, bufsize=1)
    try:
        printed = _read_until(proc, 3, timeout=180)
        time.sleep(0.7)  # land somewhere inside the next person's encoding or commit
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert _integrity(gallery) == "ok"
    with Gallery(gallery) as g:
        people = {p.name: p.faces for p in g.people()}
        # Everything reported as committed is there; nobody is half-enrolled.
        for line in printed:
            name = line.split()[1].rstrip(":")
            assert people.get(name) == 4
        assert set(people.values()) == {4}
        assert 3 <= len(people) < 250
        assert len(g.faces("person_000")) == 4
        # The gallery keeps working: the next enrolment and a search succeed.
        first = g.faces("person_000")[0].record
        assert g.search(first.encoding)[0].name == "person_000"


WRITER = textwrap.dedent("""
    import sys, numpy as np
    from visage.gallery import Gallery, FaceRecord
    path, tag, people, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = np.random.default_rng(abs(hash(tag)) % 2**32)
    with Gallery(path, index="exact") as g:
        for k in range(people):
            vectors = rng.standard_normal((size, 128)).astype(np.float32)
            records = [FaceRecord(v, f"{tag}-{k}-{j}", f"{tag}/{k}/{j}.jpg") for j, v in enumerate(vectors)]
            g.add(f"{tag}-{k}", records, encoder_name="dlib-resnet-v1", dim=128)
            print(f"committed {tag}-{k}", flush=True)
            if k % 10 == 0:
                # Interleave reads with the other writer's commits.
                assert g.search(vectors[0], threshold=0.5)[0].name == f"{tag}-{k}"
        g.add(f"shared-{tag}", [FaceRecord(np.ones(128, np.float32), "same-photo", "same.jpg")],
              encoder_name="dlib-resnet-v1", dim=128)
""")


def test_two_processes_enrolling_at_once_corrupt_nothing(tmp_path):
    gallery = tmp_path / "g.db"
    Gallery(gallery).close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(gallery), tag, "80", "3"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for tag in ("a", "b")]
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        assert out.count("committed") == 80
    assert _integrity(gallery) == "ok"
    with Gallery(gallery) as g:
        people = {p.name: p.faces for p in g.people()}
        for tag in ("a", "b"):
            assert all(people[f"{tag}-{k}"] == 3 for k in range(80))
        # Both tried to enrol the same photo: exactly one of them got it.
        shared = [n for n in people if n.startswith("shared-")]
        assert len(shared) == 1 and people[shared[0]] == 1
        assert sum(people.values()) == 2 * 80 * 3 + 1


def test_sigkill_inside_a_large_transaction_leaves_no_half_person(tmp_path):
    gallery = tmp_path / "g.db"
    Gallery(gallery).close()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(gallery), "big", "1000", "4000"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
    try:
        _read_until(proc, 2, timeout=120)
        time.sleep(0.15)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _integrity(gallery) == "ok"
    with Gallery(gallery) as g:
        counts = [p.faces for p in g.people()]
    assert len(counts) >= 2 and set(counts) == {4000}
