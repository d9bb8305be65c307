"""Safe files (issue #18, points 3 and 7): unique no-follow fsynced temp files, one lock."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest
import torch

from disparate import fileio
from disparate import results as res


def test_a_planted_symlink_at_the_old_temp_name_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me", encoding="utf-8")
    for name in ("results.json.tmp", "checkpoint.pt.tmp"):
        (tmp_path / name).symlink_to(target)
    res.write_json(tmp_path / "results.json", {"a": 1})
    with fileio.atomic_write(tmp_path / "checkpoint.pt", "wb") as f:
        torch.save({"x": torch.ones(2)}, f)
    assert target.read_text(encoding="utf-8") == "keep me"
    assert fileio.load_torch(tmp_path / "checkpoint.pt")["x"].tolist() == [1.0, 1.0]
    assert not list(tmp_path.glob(".*.tmp"))


def test_concurrent_writes_of_one_file_never_tear(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    big = {f"k{i}": "x" * 1000 for i in range(200)}

    def write(tag: int) -> None:
        for _ in range(20):
            res.write_json(path, {**big, "tag": tag})

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert res._parse_json(path)["tag"] in range(4)
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_failed_write_names_the_file_and_leaves_no_temp(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"r\.json: cannot write \(No space left on device\); "
                                      r"free some space") as info:
        res.write_json(tmp_path / "r.json", {"a": 1})
    assert info.value.errno == errno.ENOSPC
    assert not list(tmp_path.iterdir())


def test_torch_short_write_reads_as_disk_full(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def short(*args: object, **kwargs: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64")

    monkeypatch.setattr(torch, "save", short)
    with pytest.raises(OSError, match=r"checkpoint\.pt: cannot write \(the write stopped "
                                      r"short: is the disk full\?\)"):
        with fileio.atomic_write(tmp_path / "checkpoint.pt", "wb") as f:
            torch.save({}, f)


def test_a_truncated_checkpoint_names_the_file_and_says_to_delete_it(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    with fileio.atomic_write(path, "wb") as f:
        torch.save({"x": torch.zeros(1000)}, f)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(fileio.CorruptFileError, match=r"checkpoint\.pt: cannot be read .* "
                                                      r"delete it to start the run again"):
        fileio.load_torch(path)


def test_out_pointing_at_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x", encoding="utf-8")
    with pytest.raises(NotADirectoryError, match="exists and is not a directory"):
        with fileio.run_dir_lock(tmp_path / "f"):
            pass
