"""The model registry: pinned files, checksums, clear messages."""

from __future__ import annotations

import pytest

from visage import models
from visage.errors import ModelError


def test_installed_files_pass_their_checksums():
    for name in ("dlib_landmarks_5", "dlib_resnet_encoder"):
        path = models.model_path(name)
        assert path.stat().st_size == models.MODELS[name].size


def test_missing_fetched_model_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("VISAGE_HOME", str(tmp_path))
    with pytest.raises(ModelError, match=r"visage models --fetch hed_vgg16"):
        models.model_path("hed_vgg16")
    assert models.status("hed_vgg16")["path"] is None


def test_corrupt_model_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("VISAGE_HOME", str(tmp_path))
    spec = models.MODELS["mtcnn_pnet"]
    fake = tmp_path / "packages" / f"{spec.package}-{spec.version}" / spec.member
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"\0" * spec.size)  # right size, wrong bytes
    with pytest.raises(ModelError, match="fails its sha256 check"):
        models.model_path("mtcnn_pnet")
    assert models.status("mtcnn_pnet")["checksum_ok"] is False


def test_unknown_model_name():
    with pytest.raises(ModelError, match="unknown model"):
        models.model_path("no_such_model")
