"""``visage cluster``: unlabelled photos grouped by person, a report, and enrolment of named groups."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image as PILImage

from visage.cli import main as cli
from visage.errors import GalleryError
from visage.gallery import Gallery
from visage.gallery.cluster import cluster_encodings


def test_cluster_encodings_groups_by_distance():
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((3, 128)) * 0.2
    points = np.concatenate([c + rng.standard_normal((n, 128)) * 0.01 for c, n in zip(centres, (4, 2, 1))])
    groups = cluster_encodings(points, threshold=0.5)
    assert groups == [[0, 1, 2, 3], [4, 5], [6]]
    assert cluster_encodings(points[:1], 0.5) == [[0]] and cluster_encodings(points[:0], 0.5) == []


@pytest.mark.slow
def test_cluster_report_and_enrol_named_clusters(shared_data, tmp_path, capsys):
    photos = tmp_path / "holiday"
    (photos / "day2").mkdir(parents=True)
    chosen = {"Colin_Powell": (1, 2), "Donald_Rumsfeld": (1, 2), "Ariel_Sharon": (1,)}
    for person, numbers in chosen.items():
        for n in numbers:
            src = shared_data / "faces" / f"lfw__{person}" / f"{person}_{n:04d}.jpg"
            (photos / ("day2" if n == 2 else "") / src.name).symlink_to(src)
    PILImage.new("RGB", (120, 90), "white").save(photos / "no_face.png")
    out = tmp_path / "report"
    assert cli(["cluster", str(photos), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["faces"] == 5 and summary["clusters"] == 3
    assert [s["reason"] for s in summary["skipped"]] == ["no face found"]

    manifest = json.loads((out / "clusters.json").read_text())
    by_person = {}
    for c in manifest["clusters"]:
        people = {f["photo"].rsplit("/", 1)[1].rsplit("_", 1)[0] for f in c["faces"]}
        assert len(people) == 1, f"cluster {c['id']} mixes {people}"
        by_person[people.pop()] = c
    assert sorted(len(c["faces"]) for c in by_person.values()) == [1, 2, 2]
    sheet = PILImage.open(out / "contact_sheet.png")
    assert sheet.height >= 3 * 96
    html = (out / "report.html").read_text()
    assert html.count("<img") == 5 and "3 clusters" in html

    # Name one cluster in the file, another on the command line; the third stays unnamed.
    by_person["Colin_Powell"]["name"] = "Colin Powell"
    (out / "clusters.json").write_text(json.dumps(manifest))
    gallery = ["--gallery", str(tmp_path / "g.db")]
    rumsfeld = by_person["Donald_Rumsfeld"]["id"]
    assert cli(["enroll", "--clusters", str(out / "clusters.json"), "--name", f"{rumsfeld}=Rumsfeld", *gallery]) == 0
    with Gallery(tmp_path / "g.db") as g:
        assert [(p.name, p.faces) for p in g.people()] == [("Colin Powell", 2), ("Rumsfeld", 2)]
        probe = np.asarray(by_person["Ariel_Sharon"]["faces"][0]["encoding"], np.float32)
        assert g.search(probe)[0].name is None
        with pytest.raises(GalleryError, match="no cluster with id 99"):
            from visage.gallery.cluster import enroll_clusters

            enroll_clusters(g, out / "clusters.json", {99: "x"})
