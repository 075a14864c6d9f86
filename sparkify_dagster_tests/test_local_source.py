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


def test_pages_after_a_key_are_the_listing_after_it_and_skip_earlier_folders(tmp_path, monkeypatch):
    keys = [f"log_data/{y}/{m:02d}/{y}-{m:02d}-{d:02d}-events.json"
            for y in (2017, 2018) for m in (1, 11, 12) for d in (1, 30)]
    for key in keys:
        write(tmp_path, key)
    src = LocalFolderSource(root=str(tmp_path))
    after = "log_data/2018/11/"
    pages = list(src.list_pages("log_data/", after))
    assert [f.key for p in pages for f in p.files] == [k for k in sorted(keys) if k > after]
    assert pages[-1].truncated is False and pages[-1].last_key == sorted(keys)[-1]
    # Folders wholly before the key are not entered (the listing costs what comes after it).
    entered = []
    real_scandir = os.scandir
    monkeypatch.setattr(source.os, "scandir", lambda p: entered.append(p) or real_scandir(p))
    list(src.list_pages("log_data/", after))
    names = [str(p) for p in entered if isinstance(p, str)]
    assert not source._SCAN_BY_FD or len(entered) == 1 + 1 + 2  # log_data, 2018, 2018/11 and 2018/12
    assert not any(n.endswith(("2017", "2018/01")) for n in names)


def test_pages_hold_at_most_1000_files(tmp_path):
    for i in range(2500):
        write(tmp_path, f"song_data/A/{i:05d}.json")
    pages = list(LocalFolderSource(root=str(tmp_path)).list_pages("song_data/"))
    assert [len(p.files) for p in pages] == [1000, 1000, 500]
    assert [p.truncated for p in pages] == [True, True, False]
