"""The Siamese pair head (logistic on |f_i − f_j| and χ²), the FAR threshold, the report and the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from visage.cli import main
from visage.config import DEFAULT_ENCODER
from visage.encoders import get_encoder
from visage.errors import VisageError
from visage.evaluation.calibration import (
    PairCalibration,
    distance_threshold_at_far,
    fit_pair_calibration,
    fit_pair_head,
    load_pair_calibration,
    pair_features,
)
from visage.evaluation.metrics import eer, expected_calibration_error, tar_at_far


def _synthetic_pairs(n: int, seed: int, noise: float = 0.9, dim: int = 16):
    """Pairs of noisy views of random identities; noise large enough that classes overlap."""
    rng = np.random.default_rng(seed)
    ids = rng.normal(size=(n, dim))
    same = rng.random(n) < 0.5
    other = np.where(same[:, None], ids, rng.normal(size=(n, dim)))
    a = ids + noise * rng.normal(size=(n, dim))
    b = other + noise * rng.normal(size=(n, dim))
    return a, b, same


def test_pair_features_are_the_absolute_and_chi2_terms():
    a, b = np.array([[1.0, -2.0, 0.5]]), np.array([[0.0, 1.0, 0.5]])
    np.testing.assert_allclose(pair_features(a, b, "abs"), [[1.0, 3.0, 0.0]])
    np.testing.assert_allclose(pair_features(a, b, "chi2"), [[1.0 / 1.0, 9.0 / 3.0, 0.0]], rtol=1e-5)
    with pytest.raises(VisageError, match="unknown pair feature"):
        pair_features(a, b, "cosine")


@pytest.mark.parametrize("feature", ["abs", "chi2"])
@pytest.mark.slow
def test_logistic_head_beats_chance_and_is_calibrated_on_held_out_pairs(feature):
    a, b, same = _synthetic_pairs(1200, seed=1)
    head = fit_pair_head(a[:600], b[:600], same[:600], feature)
    p = head.probability(a[600:], b[600:])
    accuracy = np.mean((p >= 0.5) == same[600:])
    assert 0.7 < accuracy < 0.99  # the task is learnable, yet hard enough that calibration matters
    assert expected_calibration_error(p, same[600:]) < 0.06
    # Probabilities are spread out, not all pushed to 0 or 1 (which would fake a small ECE).
    assert np.mean((p > 0.1) & (p < 0.9)) > 0.2


def test_threshold_meets_the_target_false_accept_rate():
    rng = np.random.default_rng(0)
    genuine, impostor = rng.normal(0.5, 0.15, 400), rng.normal(1.2, 0.15, 1000)
    d = np.concatenate([genuine, impostor])
    same = np.arange(len(d)) < 400
    for far in (0.1, 0.01, 0.001):
        t = distance_threshold_at_far(d, same, far)
        assert np.mean(impostor <= t) <= far
        # One step further would break the target: it is the loosest such threshold.
        assert np.sum(impostor <= t) == int(np.floor(far * 1000))
        # TAR@FAR counts every genuine pair up to the first rejected impostor; the threshold stops
        # halfway there, keeping a margin for new pairs.
        assert 0.5 < np.mean(genuine <= t) <= tar_at_far(-d, same, far)


def test_metrics_against_hand_computed_values():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.3])
    same = np.array([1, 1, 0, 1, 0, 0], bool)
    assert tar_at_far(scores, same, 0.0) == pytest.approx(2 / 3)
    assert tar_at_far(scores, same, 0.34) == pytest.approx(1.0)
    assert eer(scores, same) == pytest.approx(1 / 3)
    assert expected_calibration_error(np.array([0.9, 0.9, 0.1, 0.1]), np.array([1, 0, 0, 0], bool)) == \
        pytest.approx(0.5 * 0.4 + 0.5 * 0.1)


@pytest.mark.slow
def test_saved_calibration_round_trips_and_decides(tmp_path):
    a, b, same = _synthetic_pairs(400, seed=2, noise=0.5)
    cal = fit_pair_calibration(a, b, same, encoder="test-encoder", target_far=0.01)
    loaded = load_pair_calibration(cal.save(tmp_path / "cal.json"))
    for method in ("abs", "chi2", "distance"):
        np.testing.assert_allclose(loaded.probability(a[:20], b[:20], method), cal.probability(a[:20], b[:20], method))
    v = loaded.decide(a[0], b[0])
    assert v.same == (v.probability >= 0.5) and v.encoder == "test-encoder"
    v = loaded.decide(a[0], b[0], "distance")
    assert v.same == (v.distance <= loaded.distance.threshold)
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(VisageError, match=re.escape("bad.json")):
        PairCalibration.load(tmp_path / "bad.json")


@pytest.fixture(scope="module")
def small_pairs(shared_data, tmp_path_factory):
    """A pairs TSV of 120 dev-set pairs (both kinds), written with absolute paths."""
    rows = (shared_data / "pairs.tsv").read_text().splitlines()
    body = rows[1:]  # after the header
    same = [r for r in body if r.split("\t")[2] == "1"][:70]
    diff = [r for r in body if r.split("\t")[2] == "0"][:50]
    out = tmp_path_factory.mktemp("pairs") / "pairs.tsv"
    fix = lambda r: "\t".join([str(shared_data / r.split("\t")[0]), str(shared_data / r.split("\t")[1]),
                               r.split("\t")[2]])
    out.write_text("img_a\timg_b\tsame\n" + "\n".join(fix(r) for r in same + diff) + "\n")
    return out


@pytest.mark.slow
def test_calibrate_cli_writes_report_curves_and_a_usable_calibration(small_pairs, tmp_path, capsys):
    assert main(["calibrate", str(small_pairs), "-o", str(tmp_path / "cal"), "--folds", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for name in ("calibration.json", "distance_calibration.json", "report.json", "roc.png", "det.png",
                 "reliability.png"):
        assert (tmp_path / "cal" / name).stat().st_size > 100
    for method in ("abs", "chi2", "distance"):
        m = report["methods"][method]
        assert {"eer", "tar@far=0.01", "tar@far=0.001", "auc", "accuracy", "ece"} <= set(m)
        assert m["auc"] > 0.9 and m["accuracy"] > 0.85  # dlib on real dev pairs, out of fold
    cal = load_pair_calibration(tmp_path / "cal" / "calibration.json")
    from visage.evaluation.verification import Calibration

    plain = Calibration.load(tmp_path / "cal" / "distance_calibration.json")
    assert plain.threshold == cal.distance.threshold and cal.encoder == get_encoder(DEFAULT_ENCODER).name


@pytest.mark.slow
def test_eval_cli_compares_encoders_side_by_side(small_pairs, capsys):
    assert main(["eval", str(small_pairs), "--encoder", "dlib", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    row = result["encoders"]["dlib"]
    assert result["pairs"] + result["pairs_without_face"] == 120
    assert row["accuracy"] > 0.9 and 0 <= row["eer"] < 0.1 and row["auc"] > 0.95


def test_bad_pairs_file_is_a_clear_cli_error(tmp_path, capsys):
    assert main(["calibrate", str(tmp_path / "missing.tsv"), "-o", str(tmp_path / "o")]) == 2
    assert "missing.tsv" in capsys.readouterr().err
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\n1\t2\n")
    assert main(["eval", str(bad)]) == 2
    assert "bad.tsv" in capsys.readouterr().err
