"""Listing a local folder laid out like the S3 bucket: which files, their keys, and their versions."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from sparkify_dagster import source
from sparkify_dagster.source import LocalFolderSource


@pytest.fixture(autouse=True, params=[True, False], ids=["by-descriptor", "by-path"])
def scan_by_fd(request, monkeypatch):
    """Both ways a folder is scanned: through an open descriptor (POSIX) and by path (elsewhere)."""
    if request.param and not source._SCAN_BY_FD:
        pytest.skip("this platform cannot scan a folder through a descriptor")
    monkeypatch.setattr(source, "_SCAN_BY_FD", request.param)


def write(root: Path, key: str, text: str = "{}\n") -> Path:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_lists_json_files_under_the_prefix_sorted_by_key_with_sizes(tmp_path):
    write(tmp_path, "song_data/B/A/A/TRB.json", "{}")
    write(tmp_path, "song_data/A/B/C/TRA.json", '{"a": 1}\n')
    write(tmp_path, "song_data/A/TRTOP.json", "[]")
    write(tmp_path, "song_data/A/B/C/notes.txt", "not json")
    write(tmp_path, "song_data_old/A/TROLD.json")  # a neighbouring prefix
    files = LocalFolderSource(root=str(tmp_path)).list_files("song_data/")
    assert [(f.key, f.size) for f in files] == [
        ("song_data/A/B/C/TRA.json", 9), ("song_data/A/TRTOP.json", 2), ("song_data/B/A/A/TRB.json", 2),
    ]
    assert LocalFolderSource(root=str(tmp_path)).list_files("log_data/") == []


def test_symlinked_files_are_listed_and_symlinked_folders_are_not_entered(tmp_path):
    target = write(tmp_path, "elsewhere/TRX.json", '{"x": 1}')
    (tmp_path / "song_data" / "A").mkdir(parents=True)
    (tmp_path / "song_data" / "A" / "TRX.json").symlink_to(target)
    (tmp_path / "song_data" / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    files = LocalFolderSource(root=str(tmp_path)).list_files("song_data/")
    assert [(f.key, f.size) for f in files] == [("song_data/A/TRX.json", 8)]


def test_a_rewritten_file_gets_a_new_version(tmp_path):
    path = write(tmp_path, "log_data/2018/11/2018-11-01-events.json", '{"ts": 1}\n')
    src = LocalFolderSource(root=str(tmp_path))
    (before,) = src.list_files("log_data/")
    assert src.list_files("log_data/") == [before]
    path.write_text('{"ts": 2}\n')  # same size: the modification time tells it apart
    later = int(before.version.split("-")[0]) + 1_000_000
    os.utime(path, ns=(later, later))
    (after,) = src.list_files("log_data/")
    assert after.key == before.key and after.size == before.size and after.version != before.version


def test_a_file_removed_while_its_folder_is_listed_is_left_out(tmp_path, monkeypatch):
    write(tmp_path, "song_data/A/TRKEEP.json")
    gone = write(tmp_path, "song_data/A/TRGONE.json")
    real_scandir = os.scandir

    @contextlib.contextmanager
    def scandir_that_loses_a_file(path):
        with real_scandir(path) as entries:
            def listed():
                for entry in entries:
                    if entry.name == gone.name:
                        gone.unlink()  # after the folder named it, before its stat
                    yield entry
            yield listed()

    monkeypatch.setattr(os, "scandir", scandir_that_loses_a_file)
    files = LocalFolderSource(root=str(tmp_path)).list_files("song_data/")
    assert [f.key for f in files] == ["song_data/A/TRKEEP.json"]
    assert not gone.exists()
