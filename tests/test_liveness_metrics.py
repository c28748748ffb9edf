"""ISO/IEC 30107-3 metrics on hand-made examples, and the DET plot."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest

from visage.evaluation.metrics import apcer, bpcer, bpcer_at_apcer, det_points, pad_metrics
from visage.evaluation.plots import plot_det

SCORES = {
    "real": [0.9, 0.8, 0.4, 0.7],          # 0.4 is refused at 0.5: BPCER = 1/4
    "print": [0.1, 0.6, 0.2],              # 0.6 is accepted: APCER = 1/3
    "replay": [0.3, 0.2, 0.55, 0.1],       # 0.55 is accepted: APCER = 1/4
}


def test_each_rate_by_hand():
    m = pad_metrics(SCORES, threshold=0.5)
    assert m.apcer == {"print": pytest.approx(1 / 3), "replay": pytest.approx(1 / 4)}
    assert m.bpcer == pytest.approx(1 / 4)
    # ACER averages the worst attack type with BPCER.
    assert m.acer == pytest.approx((1 / 3 + 1 / 4) / 2)
    assert m.apcer_max == pytest.approx(1 / 3)
    assert m.counts == {"real": 4, "print": 3, "replay": 4}


def test_bpcer_at_apcer_5_by_hand():
    # Every attack must be refused (APCER 0 ≤ 5% with 3–4 attacks per type), so the threshold goes
    # just above the highest attack score, 0.6: bona fide 0.4 is refused, the others accepted.
    b, t = bpcer_at_apcer(SCORES["real"], {k: v for k, v in SCORES.items() if k != "real"}, 0.05)
    assert b == pytest.approx(1 / 4)
    assert 0.6 < t < 0.7
    # With a 40% budget one print in three (0.6) and one replay in four (0.55) may pass: the lowest
    # threshold allowing that lies just above 0.3, and then no bona-fide presentation is refused.
    b40, t40 = bpcer_at_apcer(SCORES["real"], {k: v for k, v in SCORES.items() if k != "real"}, 0.40)
    assert 0.3 < t40 < 0.31 and b40 == 0.0
    assert pad_metrics(SCORES, 0.5).bpcer_at_apcer_5 == pytest.approx(1 / 4)


def test_threshold_is_inclusive_and_missing_scores_are_refused():
    assert apcer([0.5, 0.49], 0.5) == 0.5
    assert bpcer([0.5, 0.49], 0.5) == 0.5
    # No face / too few frames: never accepted, whichever side it is on.
    assert bpcer([None, 0.9, float("nan"), 0.8], 0.5) == 0.5
    assert apcer([None, 0.9], 0.5) == 0.5
    m = pad_metrics({"real": [None, 0.9], "print": [None, 0.1]}, 0.5)
    assert m.unscored == {"real": 1, "print": 1}
    assert m.bpcer == 0.5 and m.apcer["print"] == 0.0


def test_det_points_and_json():
    a, b = det_points(SCORES["real"], SCORES["print"])
    assert a[0] == 1.0 and b[0] == 0.0          # lowest threshold: everything accepted
    assert a[-1] == 0.0 and b[-1] == 1.0        # above everything: everything refused
    assert all(x >= y for x, y in pairwise(a)) and all(x <= y for x, y in pairwise(b))
    d = pad_metrics(SCORES, 0.5).to_dict()
    assert set(d) >= {"apcer", "bpcer", "acer", "bpcer_at_apcer_5", "counts"}
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in d.values())


def test_det_plot_is_written(tmp_path):
    out = plot_det(SCORES, tmp_path / "det.png", threshold=0.5)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 5000
