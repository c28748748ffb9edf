"""visage.config and visage.media: one home for settings, image suffixes, folder listing and video."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from visage import config
from visage.errors import ImageError, VisageError
from visage.media.images import IMAGE_SUFFIXES, list_images, load_image
from visage.media.video import VIDEO_SUFFIXES, is_video, iter_frames, probe, read_frames

# --- config ------------------------------------------------------------------------------------


def test_visage_home_is_one_folder_for_everything_when_set(monkeypatch, tmp_path):
    monkeypatch.setenv("VISAGE_HOME", str(tmp_path))
    assert config.visage_home() == tmp_path
    assert config.data_home() == tmp_path
    assert config.default_gallery_path() == tmp_path / "gallery.db"


def test_unset_home_keeps_caches_and_the_gallery_apart(monkeypatch):
    monkeypatch.delenv("VISAGE_HOME", raising=False)
    assert config.visage_home() == Path.home() / ".cache" / "visage"
    assert config.default_gallery_path() == Path.home() / ".local" / "share" / "visage" / "gallery.db"


def test_the_gallery_and_the_server_use_the_config_path(monkeypatch, tmp_path):
    from visage.gallery import default_gallery_path

    monkeypatch.setenv("VISAGE_HOME", str(tmp_path))
    assert default_gallery_path() == config.default_gallery_path()


def test_limits_are_read_when_used_not_when_imported(monkeypatch):
    small = np.zeros((20, 20, 3), np.uint8)
    assert load_image(small).width == 20
    monkeypatch.setenv("VISAGE_MAX_PIXELS", "100")
    with pytest.raises(ImageError, match="over the"):
        load_image(small)
    assert load_image(small, max_pixels=400).width == 20
    monkeypatch.setenv("VISAGE_MAX_PIXELS", "lots")
    with pytest.raises(VisageError, match="VISAGE_MAX_PIXELS='lots'"):
        config.max_pixels()


def test_max_bytes_is_read_when_a_file_is_read(monkeypatch, tmp_path):
    path = tmp_path / "a.png"
    PILImage.new("RGB", (8, 8), "red").save(path)
    monkeypatch.setenv("VISAGE_MAX_BYTES", "10")
    with pytest.raises(ImageError, match=re.escape("a.png: file is")):
        load_image(path)


def test_environment_switches(monkeypatch):
    monkeypatch.delenv("VISAGE_MILVUS_TOKEN", raising=False)
    assert config.milvus_token() is None
    monkeypatch.setenv("VISAGE_MILVUS_TOKEN", "t0k")
    assert config.milvus_token() == "t0k"
    monkeypatch.setenv("VISAGE_WINOGRAD", "0")
    assert config.winograd_enabled() is False
    monkeypatch.delenv("VISAGE_WINOGRAD")
    assert config.winograd_enabled() is True
    monkeypatch.setenv("VISAGE_GALLERY_KEY", "")
    assert config.gallery_key() is None


def test_defaults_have_one_home():
    from visage.encoders import DEFAULT_ENCODER
    from visage.faces.detect import DETECTORS

    assert DEFAULT_ENCODER == config.DEFAULT_ENCODER
    assert config.DEFAULT_DETECTOR in DETECTORS


# --- images --------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", sorted(IMAGE_SUFFIXES))
def test_every_listed_suffix_is_decoded(tmp_path, suffix):
    path = tmp_path / f"photo{suffix.upper() if suffix == '.jpg' else suffix}"
    PILImage.new("RGB", (12, 10), (200, 30, 60)).save(path, format=PILImage.registered_extensions()[suffix])
    img = load_image(path)
    assert (img.width, img.height) == (12, 10)


def test_list_images_by_suffix_sorted_flat_or_recursive(tmp_path):
    for rel in ["b.png", "a.JPG", "notes.txt", "sub/c.webp", "sub/deeper/d.gif", "sub/e.npy"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "folder.jpg").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)] == [
        "a.JPG", "b.png", "sub/c.webp", "sub/deeper/d.gif"]
    assert [p.name for p in list_images(tmp_path / "sub", suffixes=IMAGE_SUFFIXES | {".npy"})] == ["c.webp", "e.npy"]


def test_list_images_follows_linked_folders_once(tmp_path):
    data = tmp_path / "elsewhere" / "people"
    data.mkdir(parents=True)
    PILImage.new("RGB", (8, 8)).save(data / "a.png")
    top = tmp_path / "set"
    (top / "own").mkdir(parents=True)
    PILImage.new("RGB", (8, 8)).save(top / "own" / "b.png")
    (top / "people").symlink_to(data, target_is_directory=True)
    (top / "own" / "loop").symlink_to(top, target_is_directory=True)  # a cycle must not repeat files
    listed = [p.relative_to(top).as_posix() for p in list_images(top, recursive=True)]
    assert listed == ["own/b.png", "people/a.png"]


def test_list_images_errors(tmp_path):
    assert list_images(tmp_path) == []
    with pytest.raises(VisageError, match="holds no images"):
        list_images(tmp_path, required=True)
    with pytest.raises(VisageError, match="nowhere: not a folder"):
        list_images(tmp_path / "nowhere")


# --- video ---------------------------------------------------------------------------------------


@pytest.fixture
def clip(tmp_path) -> Path:
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (80, 60))
    for i in range(12):
        frame = np.zeros((60, 80, 3), np.uint8)
        frame[..., 2] = 20 * i  # red in BGR
        writer.write(frame)
    writer.release()
    return path


def test_is_video_by_suffix():
    assert is_video("a.MP4") and is_video(Path("x/clip.webm"))
    assert not is_video("photo.jpg")
    assert not (VIDEO_SUFFIXES & IMAGE_SUFFIXES)


def test_probe_iter_and_read_frames(clip):
    info = probe(clip)
    assert (info.width, info.height, info.frames) == (80, 60, 12)
    assert info.fps == pytest.approx(20.0)
    frames = list(iter_frames(clip))
    assert len(frames) == 12 and frames[0].shape == (60, 80, 3) and frames[0].dtype == np.uint8
    assert frames[-1][..., 0].mean() > frames[-1][..., 2].mean()  # RGB, not BGR
    sampled, fps = read_frames(clip, max_frames=6, max_side=40)
    assert len(sampled) == 6 and sampled[0].shape == (30, 40, 3)
    assert fps == pytest.approx(10.0)


def test_video_errors_name_the_input(tmp_path):
    with pytest.raises(ImageError, match=re.escape("gone.mp4: no such file")):
        read_frames(tmp_path / "gone.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(ImageError, match=re.escape("upload.mp4: not a video file")):
        probe(junk, name="upload.mp4")
