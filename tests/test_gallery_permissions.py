"""A gallery holds face templates: its file is the owner's alone, from the library, the CLI and the server."""

from __future__ import annotations

import stat

import pytest

from visage.gallery import Gallery


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_gallery_is_0600_in_0700_folders(tmp_path):
    path = tmp_path / "new" / "deeper" / "g.db"
    with Gallery(path) as gallery:
        gallery.people()
    assert mode(path) == 0o600
    assert mode(tmp_path / "new") == 0o700 and mode(tmp_path / "new" / "deeper") == 0o700
    for side in ("g.db-wal", "g.db-shm"):
        if (path.parent / side).exists():
            assert mode(path.parent / side) & 0o077 == 0


def test_an_existing_readable_gallery_is_tightened_with_a_warning(tmp_path):
    path = tmp_path / "g.db"
    with Gallery(path) as gallery:
        gallery.people()
    path.chmod(0o644)
    with pytest.warns(UserWarning, match="was readable by others"):
        with Gallery(path) as gallery:
            gallery.people()
    assert mode(path) == 0o600


def test_the_cli_creates_a_private_gallery(shared_data, tmp_path):
    from visage.cli import main

    path = tmp_path / "cli" / "people.db"
    photo = shared_data / "faces" / "facerec__obama" / "obama.jpg"
    assert main(["enroll", "Obama", str(photo), "--gallery", str(path)]) == 0
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
