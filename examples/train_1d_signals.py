"""Triplet training in 1D: tell identities apart by the shape of their waveform.

Each identity owns a waveform made of a few harmonics; every sample of it is randomly shifted in
time, rescaled and buried in noise (see ``visage.train.synthetic.make_signals``). The samples are
written as ``DATA_DIR/<identity>/<n>.npy`` and trained exactly as ``visage train DATA_DIR`` would:
a Conv1d encoder, P×K batches, semi-hard mining, validation on identities never trained on.

    .venv/bin/python examples/train_1d_signals.py [--out /tmp/visage-1d]
"""

from __future__ import annotations

from synthetic_training import run

from visage.train.synthetic import make_signals

if __name__ == "__main__":
    run(__doc__.splitlines()[0], "1D signals", "/tmp/visage-1d", "signals.pt",
        lambda people: make_signals(people, per_person=10, length=128, seed=0))
