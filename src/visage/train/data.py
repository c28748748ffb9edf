"""Training data: a folder with one sub-folder per person, P×K batches, and a face cache.

``DATA_DIR/<person>/<file>`` holds either photos (jpg, png, ...) or ``.npy`` arrays:

- photos go through the visage pipeline once: detect the largest face, cut the encoder's aligned
  chip, and (for training a head on frozen encodings) encode it. Results are cached on disk per
  image content and encoder (:class:`FaceCache`), so a second run costs nothing.
- arrays are channel-first: ``(C, L)`` signals, ``(C, H, W)`` images, ``(C, D, H, W)`` volumes or
  clips (``D`` frames). A 1-D array ``(L,)`` is a one-channel signal. All must share one shape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import DEFAULT_DETECTOR, DEFAULT_TRAIN_ENCODER
from ..errors import VisageError
from ..media.images import IMAGE_SUFFIXES, list_images

log = logging.getLogger(__name__)

ARRAY_EXTENSIONS = frozenset({".npy"})


@dataclass(frozen=True)
class Sample:
    """One file of one person; ``label`` indexes the person in :attr:`PeopleFolder.people`."""

    path: Path
    person: str
    label: int


@dataclass(frozen=True)
class PeopleFolder:
    """The samples found under a data folder; ``kind`` is ``"images"`` or ``"arrays"``."""

    root: Path
    samples: list[Sample]
    people: list[str]
    kind: str


def scan_people(root: str | Path) -> PeopleFolder:
    """List ``root/<person>/<file>``: photos or ``.npy`` arrays (not both), sorted by person and file.

    Raises :class:`VisageError` when the folder is missing, mixes kinds, or has fewer than two
    people with files.
    """
    root = Path(root)
    if not root.is_dir():
        raise VisageError(f"{root}: not a folder (expected one sub-folder per person)")
    samples: list[Sample] = []
    people: list[str] = []
    kinds: set[str] = set()
    for person_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = list_images(person_dir, suffixes=IMAGE_SUFFIXES | ARRAY_EXTENSIONS)
        if not files:
            continue
        label = len(people)
        people.append(person_dir.name)
        for f in files:
            kinds.add("arrays" if f.suffix.lower() in ARRAY_EXTENSIONS else "images")
            samples.append(Sample(f, person_dir.name, label))
    if len(people) < 2:
        raise VisageError(f"{root}: found {len(people)} person folder(s) with images or .npy files; "
                          "training needs at least two, one sub-folder per person")
    if len(kinds) > 1:
        raise VisageError(f"{root}: mixes photos and .npy arrays; use one kind per data folder")
    return PeopleFolder(root, samples, people, kinds.pop())


def split_people(labels: np.ndarray, holdout: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices by person: (train indices, held-out indices); no person is in both.

    ``holdout`` is a fraction of the people (0 < holdout < 1) or a number of people. Only people
    with at least two samples are held out, since a person seen once forms no same-person pair.
    """
    labels = np.asarray(labels)
    people, counts = np.unique(labels, return_counts=True)
    eligible = people[counts >= 2]
    n = round(holdout * len(people)) if 0 < holdout < 1 else int(holdout)
    n = max(2, min(n, len(eligible)))
    if len(eligible) < 2 or n >= len(people):
        raise VisageError(f"cannot hold out {n} of {len(people)} people for validation "
                          f"({len(eligible)} have two or more samples)")
    held = np.random.default_rng(seed).choice(eligible, size=n, replace=False)
    mask = np.isin(labels, held)
    return np.flatnonzero(~mask), np.flatnonzero(mask)


class PKSampler:
    """Batches of P people × K samples each, for online triplet mining.

    Only people with at least two samples are drawn (the others give no positive). A person with
    fewer than K samples contributes all of them plus repeats. Yields lists of indices into
    ``labels``; ``batches`` per epoch default to covering the data about once.
    """

    def __init__(self, labels: Sequence[int] | np.ndarray, people_per_batch: int = 8, per_person: int = 4,
                 batches: int | None = None, seed: int = 0):
        self.labels = np.asarray(labels)
        if people_per_batch < 2 or per_person < 2:
            raise VisageError("a P×K batch needs P ≥ 2 people and K ≥ 2 samples per person")
        self.by_person = {int(p): np.flatnonzero(self.labels == p) for p in np.unique(self.labels)}
        self.eligible = [p for p, idx in self.by_person.items() if len(idx) >= 2]
        if len(self.eligible) < 2:
            raise VisageError("training needs at least two people with two or more samples each")
        self.p = min(people_per_batch, len(self.eligible))
        self.k = per_person
        self.batches = batches or max(1, int(np.ceil(len(self.labels) / (self.p * self.k))))
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.batches):
            batch: list[int] = []
            for person in self.rng.choice(self.eligible, size=self.p, replace=False):
                idx = self.by_person[int(person)]
                if len(idx) >= self.k:
                    batch.extend(self.rng.choice(idx, size=self.k, replace=False).tolist())
                else:
                    extra = self.rng.choice(idx, size=self.k - len(idx), replace=True)
                    batch.extend(idx.tolist() + extra.tolist())
            yield batch


def load_arrays(samples: Sequence[Sample]) -> np.ndarray:
    """Stack ``.npy`` samples channel-first as float32: (N, C, *spatial). Errors name the file."""
    arrays: list[np.ndarray] = []
    for s in samples:
        try:
            a = np.load(s.path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise VisageError(f"{s.path}: not a readable .npy array ({exc})") from None
        if a.ndim == 1:
            a = a[None]
        if a.ndim not in (2, 3, 4) or not np.issubdtype(a.dtype, np.number):
            raise VisageError(f"{s.path}: expected a numeric (C, L), (C, H, W) or (C, D, H, W) array, "
                              f"got {a.dtype} {a.shape}")
        if arrays and a.shape != arrays[0].shape:
            raise VisageError(f"{s.path}: shape {a.shape} differs from {samples[0].path}'s {arrays[0].shape}")
        arrays.append(a.astype(np.float32))
    return np.stack(arrays)


class FaceCache:
    """The largest face of each photo as the encoder's aligned chip and its encoding, cached on disk.

    Files live under ``cache_dir/<encoder name>-<detector>/`` named by the image's sha256, so the
    same photo is detected, aligned and encoded once however often and under whatever name it is
    used. A photo without a face is remembered as such.
    """

    def __init__(self, encoder: str = DEFAULT_TRAIN_ENCODER, detector: str = DEFAULT_DETECTOR,
                 cache_dir: str | Path | None = None):
        from ..config import visage_home
        from ..encoders import get_encoder

        self.encoder = get_encoder(encoder)
        self.detector = detector
        base = Path(cache_dir) if cache_dir else visage_home() / "cache" / "faces"
        self.dir = base / f"{self.encoder.name}-{detector}"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _files(self, sha: str) -> tuple[Path, Path, Path]:
        return self.dir / f"{sha}.chip.npy", self.dir / f"{sha}.enc.npy", self.dir / f"{sha}.noface"

    def chip(self, path: str | Path) -> np.ndarray | None:
        """The aligned chip (H, W, 3) uint8 of the largest face in ``path``, or None without a face."""
        from ..media.images import load_image
        from ..pipeline import detect

        img = load_image(path)
        chip_file, _, none_file = self._files(img.sha256)
        if chip_file.exists():
            return np.load(chip_file)
        if none_file.exists():
            return None
        faces = detect(img, detector=self.detector, landmarks68=False)[:1]
        if not faces:
            none_file.touch()
            return None
        chip = self.encoder.chips(img, faces)[0]
        _atomic_save(chip_file, chip)
        return chip

    def encoding(self, path: str | Path) -> np.ndarray | None:
        """The encoding (dim,) float32 of the largest face in ``path``, or None without a face."""
        from ..media.images import load_image

        sha = load_image(path).sha256
        _, enc_file, _ = self._files(sha)
        if enc_file.exists():
            return np.load(enc_file)
        chip = self.chip(path)
        if chip is None:
            return None
        vector = self.encoder.encode_chips(chip[None])[0].astype(np.float32)
        _atomic_save(enc_file, vector)
        return vector

    def many(self, paths: Sequence[str | Path], what: str = "encoding", progress: bool = True
             ) -> tuple[np.ndarray, np.ndarray]:
        """Chips or encodings of many photos: (stacked values, indices of the photos that had a face)."""
        from tqdm import tqdm

        get = self.encoding if what == "encoding" else self.chip
        values, kept = [], []
        for i, p in enumerate(tqdm(paths, desc=f"faces ({self.encoder.name})", unit="img",
                                   disable=not progress, leave=False)):
            v = get(p)
            if v is not None:
                values.append(v)
                kept.append(i)
        if not values:
            raise VisageError(f"no face found in any of {len(paths)} photos")
        skipped = [str(paths[i]) for i in sorted(set(range(len(paths))) - set(kept))]
        if skipped:
            log.warning("no face found in %d photo(s), skipped: %s", len(skipped), ", ".join(skipped[:5]))
        return np.stack(values), np.asarray(kept)


def _atomic_save(path: Path, array: np.ndarray) -> None:
    """Write next to ``path`` and rename, so a crash or a parallel run never leaves half a file."""
    tmp = path.with_name(f".{path.name}.{id(array)}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    tmp.replace(path)


def encode_images(paths: Sequence[str | Path], encoder: str = DEFAULT_TRAIN_ENCODER, detector: str = DEFAULT_DETECTOR,
                  progress: bool = True, cache_dir: str | Path | None = None) -> dict[Path, np.ndarray | None]:
    """The largest face's embedding for each photo (None where no face), through :class:`FaceCache`.

    ``encoder`` is a registered encoder name (``dlib``, ``facenet``, ...) or the path of a model
    trained by ``visage train`` (a ``.pt`` file): a head runs on the base encoder's cached
    encodings, a fine-tuned network on the cached chips.
    """
    from tqdm import tqdm

    from ..encoders import ENCODERS

    unique = list(dict.fromkeys(Path(p) for p in paths))
    if encoder not in ENCODERS and (encoder.endswith(".pt") or Path(encoder).is_file()):
        from .trained import load_trained_encoder

        trained = load_trained_encoder(encoder)
        cache = FaceCache(trained.model.meta["encoder"], trained.model.meta.get("detector") or detector, cache_dir)
        what = "encoding" if trained.model.kind == "head" else "chip"
        raw = {p: getattr(cache, what)(p) for p in tqdm(unique, desc=f"faces ({trained.name})", unit="img",
                                                        disable=not progress, leave=False)}
        found = [p for p in unique if raw[p] is not None]
        out: dict[Path, np.ndarray | None] = dict.fromkeys(unique)
        if found:
            values = np.stack([raw[p] for p in found])
            vectors = trained.model.embed(values) if what == "encoding" else trained.encode_chips(values)
            out.update(zip(found, vectors))
        return out
    cache = FaceCache(encoder, detector, cache_dir)
    return {p: cache.encoding(p) for p in tqdm(unique, desc=f"faces ({cache.encoder.name})", unit="img",
                                               disable=not progress, leave=False)}
