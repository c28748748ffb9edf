"""Triplet training in 3D: tell identities apart by how they move.

Each identity owns a motion (a velocity and a sideways wobble); every clip shows one
identical blob moving that way from a random start, plus noise (``visage.train.synthetic.make_clips``):
no single frame tells who it is. Clips are (1, 8, 16, 16) arrays in ``DATA_DIR/<identity>/<n>.npy``,
trained as ``visage train DATA_DIR`` would, with a Conv3d encoder, validated on unseen identities.

    .venv/bin/python examples/train_3d_clips.py [--out /tmp/visage-3d]
"""

from __future__ import annotations

from synthetic_training import run

from visage.train.synthetic import make_clips

if __name__ == "__main__":
    run(__doc__.splitlines()[0], "3D clips", "/tmp/visage-3d", "clips.pt",
        lambda people: make_clips(people, per_person=10, frames=8, size=16, seed=0))
