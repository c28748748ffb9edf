"""Learnable identity tasks in 1D and 3D, to show the trainer beyond faces.

- :func:`make_signals`: each identity owns a waveform (a few harmonics with its own frequencies,
  phases and amplitudes). A sample is that waveform, circularly shifted by a random amount,
  rescaled a little, plus noise. The network has to learn shift-invariant spectral shape.
- :func:`make_clips`: each identity owns a motion (a velocity, an acceleration and a wobble of a
  fixed frequency). A sample is a short clip of one Gaussian blob that starts at a random place and
  moves that way, plus noise. Every blob looks the same and any single frame says nothing about
  identity: only the motion across frames does, so a Conv3d must use time.

Identities are drawn independently, so the people held out for validation are new waveforms and
new motions. :func:`write_people` stores samples as ``DATA_DIR/<person>/<n>.npy`` for
``visage train``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_signals(people: int, per_person: int, length: int = 128, harmonics: int = 3, noise: float = 0.5,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(people·per_person, 1, length) float32 signals and their int labels."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / length
    x, y = [], []
    for person in range(people):
        freqs = rng.choice(np.arange(1, 13), size=harmonics, replace=False)
        phases = rng.uniform(0, 2 * np.pi, harmonics)
        amps = rng.uniform(0.5, 1.0, harmonics)
        wave = sum(a * np.sin(2 * np.pi * f * t + p) for a, f, p in zip(amps, freqs, phases))
        for _ in range(per_person):
            s = np.roll(wave, rng.integers(length)) * rng.uniform(0.8, 1.2)
            x.append(s + rng.normal(0, noise, length))
            y.append(person)
    return np.asarray(x, np.float32)[:, None, :], np.asarray(y)


def make_clips(people: int, per_person: int, frames: int = 8, size: int = 16, noise: float = 0.2,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(people·per_person, 1, frames, size, size) float32 clips and their int labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    time = np.arange(frames)
    x, y = [], []
    for person in range(people):
        speed = rng.uniform(0.3, 1.2)
        angle = rng.uniform(0, 2 * np.pi)
        velocity = speed * np.array([np.cos(angle), np.sin(angle)])
        wobble_amp = rng.uniform(0.0, 1.5)
        wobble_freq = rng.uniform(0.5, 2.0)
        for _ in range(per_person):
            # Start where the whole path stays inside the frame.
            path = time[:, None] * velocity + wobble_amp * np.sin(wobble_freq * time)[:, None] * velocity[::-1]
            low = 2.5 - path.min(0)
            high = size - 3.5 - path.max(0)
            start = rng.uniform(np.minimum(low, high), np.maximum(low, high))
            centres = start + path
            clip = np.exp(-((xx[None] - centres[:, 0, None, None]) ** 2 + (yy[None] - centres[:, 1, None, None]) ** 2)
                          / (2 * 1.5**2))
            x.append(clip + rng.normal(0, noise, clip.shape))
            y.append(person)
    return np.asarray(x, np.float32)[:, None], np.asarray(y)


def write_people(folder: str | Path, x: np.ndarray, labels: np.ndarray, prefix: str = "id") -> Path:
    """Save samples as ``folder/<prefix>NNN/<k>.npy``, one sub-folder per label; returns ``folder``."""
    folder = Path(folder)
    for k, (sample, label) in enumerate(zip(x, labels)):
        person = folder / f"{prefix}{int(label):03d}"
        person.mkdir(parents=True, exist_ok=True)
        np.save(person / f"{k:05d}.npy", sample)
    return folder
