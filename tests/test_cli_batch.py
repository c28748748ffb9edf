"""Whole folders in one call: one line per face, skip reports, a summary, exit codes, workers."""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest
from PIL import Image as PILImage

from visage.batch import PairSpec, Summary, expand_sources, read_pairs
from visage.cli import main
from visage.errors import VisageError

BOX_TEXT = re.compile(r"box \d+,\d+,\d+,\d+")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def folder(shared_data, tmp_path_factory):
    """Two good photos (one in a sub-folder), a group photo, a corrupt file, a blank image, a text file."""
    root = tmp_path_factory.mktemp("photos")
    faces = shared_data / "faces"
    (root / "sub").mkdir()
    (root / "a_obama.jpg").symlink_to(faces / "facerec__obama/obama.jpg")
    (root / "sub" / "b_biden.jpg").symlink_to(faces / "facerec__biden/biden.jpg")
    (root / "c_group.jpg").symlink_to(shared_data / "detection/facerec_obama_and_biden.jpg")
    (root / "d_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    PILImage.fromarray(np.full((200, 200, 3), 127, np.uint8)).save(root / "e_blank.png")
    (root / "notes.txt").write_text("not a photo")
    return root


def test_expand_sources_lists_folders_recursively_sorted_and_keeps_files(folder, tmp_path):
    listed = expand_sources([folder, tmp_path / "missing.jpg"])
    assert [p.name for p in listed] == ["a_obama.jpg", "c_group.jpg", "d_broken.jpg", "e_blank.png",
                                        "b_biden.jpg", "missing.jpg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(VisageError, match="holds no images"):
        expand_sources([tmp_path / "empty"])


def test_read_pairs_with_and_without_header_and_labels(tmp_path):
    (tmp_path / "with.tsv").write_text("img_a\timg_b\tsame\tnote\nx.jpg\ty.jpg\t1\tok\nx.jpg\tz.jpg\t0\t\n")
    assert read_pairs(tmp_path / "with.tsv") == [PairSpec(tmp_path / "x.jpg", tmp_path / "y.jpg", True),
                                                 PairSpec(tmp_path / "x.jpg", tmp_path / "z.jpg", False)]
    (tmp_path / "bare.tsv").write_text("# a comment\nx.jpg\ty.jpg\n\nsub/z.jpg\tx.jpg\n")
    assert read_pairs(tmp_path / "bare.tsv") == [PairSpec(tmp_path / "x.jpg", tmp_path / "y.jpg"),
                                                 PairSpec(tmp_path / "sub/z.jpg", tmp_path / "x.jpg")]
    (tmp_path / "bad.tsv").write_text("x.jpg\ty.jpg\tmaybe\n")
    with pytest.raises(VisageError, match=r"bad.tsv:1: same must be"):
        read_pairs(tmp_path / "bad.tsv")


@pytest.mark.slow
def test_detect_csv_over_a_folder_one_row_per_face_skips_and_summary(folder, capsys):
    code, out, err = run(capsys, "detect", str(folder), "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    per_photo: dict[str, list[int]] = {}
    for row in rows:
        per_photo.setdefault(row["photo"].rsplit("/", 1)[1], []).append(int(row["face"]))
    assert per_photo == {"a_obama.jpg": [1], "b_biden.jpg": [1], "c_group.jpg": [1, 2, 3]}
    assert all(int(r["right"]) > int(r["left"]) and int(r["bottom"]) > int(r["top"]) for r in rows)
    skip_lines = [line for line in err.splitlines() if line.startswith("visage: skipped")]
    assert len(skip_lines) == 1 and "d_broken.jpg: image data is" in skip_lines[0]
    assert "e_blank.png: no face found" in err
    assert err.strip().splitlines()[-1] == "5 photos, 5 faces, 1 skipped"
    assert code == 2


@pytest.mark.slow
def test_encode_jsonl_over_a_folder(folder, capsys):
    code, out, err = run(capsys, "encode", str(folder / "a_obama.jpg"), str(folder / "sub"),
                         str(folder / "d_broken.jpg"), "--jsonl", "--encoder", "dlib-torch")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(line["photo"].rsplit("/", 1)[1], line["face"]) for line in lines] == [("a_obama.jpg", 1),
                                                                                  ("b_biden.jpg", 1)]
    assert all(len(line["encoding"]) == 128 and set(line["box"]) == {"left", "top", "right", "bottom"}
               for line in lines)
    assert "skipped" in err and "d_broken.jpg" in err and "3 photos, 2 faces, 1 skipped" in err
    assert code == 2
    code, out, err = run(capsys, "encode", str(folder / "a_obama.jpg"), str(folder / "sub"), "--csv",
                         "--encoder", "dlib-torch")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 2 and len(rows[0]["encoding"].split()) == 128


@pytest.mark.slow
def test_json_on_one_file_is_the_single_photo_object(folder, capsys):
    code, out, err = run(capsys, "detect", str(folder / "c_group.jpg"), "--json")
    result = json.loads(out)
    assert code == 0 and set(result) == {"image", "width", "height", "faces"} and len(result["faces"]) == 3
    assert set(result["faces"][0]) == {"box", "score", "landmarks"} and len(result["faces"][0]["landmarks"]["68"]) == 68
    code, out, err = run(capsys, "encode", str(folder / "a_obama.jpg"), "--json", "--encoder", "dlib-torch")
    result = json.loads(out)
    assert code == 0 and set(result) == {"image", "faces"} and len(result["faces"][0]["encoding"]) == 128
    assert result["faces"][0]["encoder"] == "dlib-torch"
    code, out, err = run(capsys, "detect", str(folder), "--json")
    assert code == 2 and "--jsonl" in err and not out


def test_text_output_numbers_faces_from_1_with_one_box_notation(folder, capsys):
    code, out, _ = run(capsys, "detect", str(folder / "c_group.jpg"))
    lines = out.splitlines()
    assert code == 0 and lines[0].endswith("c_group.jpg: 3 faces")
    assert [line.split()[:2] for line in lines[1:]] == [["face", "1"], ["face", "2"], ["face", "3"]]
    assert all(BOX_TEXT.search(line) for line in lines[1:])


@pytest.mark.slow
def test_verify_pairs_answers_and_exit_code(folder, tmp_path, capsys):
    (tmp_path / "photos").symlink_to(folder)
    (tmp_path / "pairs.tsv").write_text("img_a\timg_b\tsame\n"
                                        "photos/a_obama.jpg\tphotos/c_group.jpg\t1\n"
                                        "photos/a_obama.jpg\tphotos/sub/b_biden.jpg\t0\n")
    # The group photo's largest face is Biden's: --which best finds Obama among its three.
    code, out, err = run(capsys, "verify", "--pairs", str(tmp_path / "pairs.tsv"), "--jsonl", "--which", "best")
    results = [json.loads(line) for line in out.splitlines()]
    assert [(r["same"], r["expected"], r["correct"]) for r in results] == [(True, True, True), (False, False, True)]
    assert results[0]["faces_in_b"] == 3 and set(results[0]["face_a"]) == {"left", "top", "right", "bottom"}
    assert "3 faces; used the closest match" in results[0]["warnings"][0]
    assert code == 1 and "2 pairs, 1 same, 1 different, 0 skipped" in err  # one pair is different

    (tmp_path / "same.tsv").write_text("photos/a_obama.jpg\tphotos/sub/b_biden.jpg\n")  # no header, no label
    code, out, _ = run(capsys, "verify", "--pairs", str(tmp_path / "same.tsv"))
    assert code == 1 and "DIFFERENT" in out and re.search(r"faces at \d+,\d+,\d+,\d+ and \d+,\d+,\d+,\d+", out)

    (tmp_path / "bad.tsv").write_text("photos/a_obama.jpg\tphotos/e_blank.png\nphotos/a_obama.jpg\tphotos/a_obama.jpg\n")
    code, out, err = run(capsys, "verify", "--pairs", str(tmp_path / "bad.tsv"), "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 2 and len(rows) == 1 and rows[0]["same"] == "True"
    assert "e_blank.png: no face found" in err and "1 skipped" in err


@pytest.mark.slow
def test_verify_one_photo_against_a_folder(folder, capsys):
    code, out, err = run(capsys, "verify", str(folder / "a_obama.jpg"), str(folder / "c_group.jpg"),
                         str(folder / "sub"), "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["b"].rsplit("/", 1)[1], r["same"]) for r in rows] == [("c_group.jpg", "False"),  # Biden's the largest
                                                                     ("b_biden.jpg", "False")]
    assert code == 1
    code, out, err = run(capsys, "verify", str(folder / "a_obama.jpg"), str(folder / "c_group.jpg"), "--which", "best")
    assert code == 0 and "SAME" in out and "3 faces; used the closest match" in err


@pytest.fixture(scope="module")
def gallery(shared_data, tmp_path_factory):
    """A gallery with Obama and Biden, one photo each."""
    path = tmp_path_factory.mktemp("gallery") / "g.db"
    faces = shared_data / "faces"
    assert main(["enroll", "Obama", str(faces / "facerec__obama/obama.jpg"), "--gallery", str(path)]) == 0
    assert main(["enroll", "Biden", str(faces / "facerec__biden/biden.jpg"), "--gallery", str(path)]) == 0
    return str(path)


@pytest.mark.slow
def test_identify_over_a_folder_names_the_right_people(shared_data, gallery, tmp_path, capsys):
    faces = shared_data / "faces"
    probes = tmp_path / "probes"
    probes.mkdir()
    (probes / "1_obama2.jpg").symlink_to(faces / "facerec__obama/obama2.jpg")
    (probes / "2_biden2.jpg").symlink_to(next(p for p in (faces / "facerec__biden").iterdir() if p.name != "biden.jpg"))
    code, out, err = run(capsys, "identify", str(probes), str(shared_data / "detection/facerec_obama_and_biden.jpg"),
                         "--gallery", gallery, "--jsonl")
    lines = [json.loads(line) for line in out.splitlines()]
    named = [(line["photo"].rsplit("/", 1)[1], line["face"], line["name"]) for line in lines]
    assert named[:2] == [("1_obama2.jpg", 1, "Obama"), ("2_biden2.jpg", 1, "Biden")]
    group = {name for photo, _, name in named[2:]}
    assert group == {"Obama", "Biden", None} and code == 0 and "3 photos, 5 faces, 0 skipped" in err

    code, out, _ = run(capsys, "identify", str(probes / "1_obama2.jpg"), "--gallery", gallery)
    assert code == 0 and re.search(r"face 1  box \d+,\d+,\d+,\d+: Obama", out)
    stranger = faces / "lfw__Colin_Powell/Colin_Powell_0001.jpg"
    code, out, _ = run(capsys, "identify", str(probes / "1_obama2.jpg"), str(stranger), "--gallery", gallery, "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["name"] for r in rows] == ["Obama", ""] and code == 1  # someone unknown
    code, out, _ = run(capsys, "identify", str(stranger), "--gallery", gallery, "--json")
    result = json.loads(out)
    assert code == 1 and set(result) == {"photo", "encoder", "embedding", "faces"} and result["faces"][0]["name"] is None


def test_liveness_over_several_stills_exits_with_the_worst(shared_data, tmp_path, capsys):
    spoof = shared_data / "spoof"
    code, out, err = run(capsys, "liveness", str(spoof / "real"), str(spoof / "print"), "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["decision"] for r in rows] == ["live", "attack"] and rows[0]["face"] == "1"
    assert code == 1
    code, out, err = run(capsys, "liveness", str(spoof / "real"), str(tmp_path / "nope.jpg"))
    assert code == 2 and "nope.jpg: no such file" in err and re.search(r"face 1  box \d+,\d+,\d+,\d+: LIVE", out)


def test_summary_reports_the_worst_verdict():
    from visage.batch import Outcome

    summary = Summary.of([Outcome("a"), Outcome("b", verdict="negative"), Outcome("c", verdict="insufficient")])
    assert summary.worst == "insufficient" and summary.text() == "3 photos, 0 faces, 0 skipped, 1 with insufficient evidence"
    assert Summary.of([]).worst == "ok"


@pytest.mark.slow
def test_two_workers_give_exactly_the_output_of_one(folder, capsys):
    outputs = []
    for workers in ("1", "2"):
        code, out, err = run(capsys, "encode", str(folder), "--csv", "--encoder", "dlib-torch", "--workers", workers)
        outputs.append((code, out, err.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1] and outputs[0][0] == 2 and outputs[0][1].count("\n") == 6
