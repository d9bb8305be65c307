"""Tests of ``disparate run``: files, --no-dp, --resume, and exit codes for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disparate.cli import COMMANDS, main
from disparate.commands import run as run_command

TINY = ["--set", "data.subsample=120", "--set", "training.batch_size=30",
        "--set", "training.epochs=2", "--set", "evaluation.min_group_test_size=20"]


def _run(tmp_path: Path, *extra: str) -> int:
    return main(["run", "digits-underrep", *TINY, "--out", str(tmp_path), "--quiet", *extra])


def test_run_is_registered() -> None:
    assert run_command in COMMANDS


def test_run_writes_the_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    assert _run(tmp_path) == 0
    out = capsys.readouterr().out
    for name in ("config.yaml", "metrics.jsonl", "results.json", "checkpoint.pt"):
        assert (tmp_path / name).is_file()
    r = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert r["mode"] == "dp" and r["epochs"] == 2 and r["privacy"]["is_private"]
    assert "-DP for" in out and "test accuracy" in out and "group 8:" in out
    assert f"results: {tmp_path / 'results.json'}" in out
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def test_run_no_dp_is_the_non_private_baseline(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path, "--no-dp") == 0
    r = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert r["mode"] == "non-private" and r["privacy"]["epsilon"] is None
    assert "not differentially private" in capsys.readouterr().out


def test_run_resume_and_existing_directory(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path) == 0
    first = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert _run(tmp_path) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert _run(tmp_path, "--resume") == 0
    again = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert again["groups"] == first["groups"]
    assert _run(tmp_path, "--overwrite") == 0


def test_run_default_out_and_progress_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", "digits-underrep", *TINY, "--set", "training.epochs=1"]) == 0
    out = capsys.readouterr().out
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("digits-underrep-dp-")
    assert "epoch 1/1" in out and "test acc" in out and "eps" in out


@pytest.mark.parametrize("argv, message", [
    (["run", "no-such-preset"], "unknown preset 'no-such-preset'"),
    (["run", "digits-underrep", "--set", "training.epoch=3"],
     "unknown key 'training.epoch' (did you mean 'training.epochs'?)"),
    (["run", "digits-underrep", "--set", "privacy.sampling=poison"],
     "privacy.sampling='poison': expected one of 'poisson', 'shuffle'"),
    (["run", "digits-underrep", "--set", "model.name=resnet-9000"],
     "model.name='resnet-9000': not registered"),
    (["run", "digits-underrep", "--set", "nonsense"], "expected KEY=VALUE"),
])
def test_run_errors_exit_2_with_a_message(argv: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("disparate: error: ") and message in err


def test_run_missing_dataset_files_exit_2(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["run", "mnist-underrep", "--set", "data.download=false",
                 "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "IDX files not found" in capsys.readouterr().err


def test_run_unknown_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "digits-underrep", "--bogus"]) == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_run_refuses_a_federated_experiment(capsys: pytest.CaptureFixture[str]) -> None:
    from disparate.config import list_presets, load_experiment

    federated = [n for n in list_presets()
                 if getattr(load_experiment(n), "federated", None) is not None]
    if not federated:
        pytest.skip("no federated preset shipped")
    assert main(["run", federated[0]]) == 2
    assert f"use 'disparate federated run {federated[0]}'" in capsys.readouterr().err


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("disparate: error: "), err
    return err[0].removeprefix("disparate: error: ")


def test_a_missing_data_dir_is_not_created_and_nothing_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "mnist-typo"
    assert main(["run", "mnist-underrep", "--data-dir", str(missing), "--download",
                 "--out", str(tmp_path / "o")]) == 2
    assert _one_error_line(capsys) == run_command.ERR_DATA_DIR.format(path=missing)
    assert not missing.exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize("device", ["cuda", "gpu"])
def test_a_device_that_is_not_there_fails_before_creating_anything(
        device: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert _run(tmp_path / "o", "--device", device) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"--device {device!r}: ")
    assert ("CUDA is not available" in line) if device == "cuda" else ("not a torch device" in line)
    assert not (tmp_path / "o").exists()


def test_offline_download_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    import torchvision.datasets

    class Offline:
        def __init__(self, **kwargs):
            raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    (tmp_path / "data").mkdir()
    assert main(["run", "mnist-underrep", "--data-dir", str(tmp_path / "data"), "--download",
                 "--out", str(tmp_path / "o"), "--quiet"]) == 2
    line = _one_error_line(capsys)
    assert "download into" in line and "If you are offline, pass --data-dir" in line


def test_ctrl_c_says_how_to_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from disparate import training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", interrupted)
    assert _run(tmp_path / "o") == 130
    assert capsys.readouterr().err.splitlines() == [
        "disparate: " + run_command.ERR_INTERRUPTED.format(out=tmp_path / "o")]


def test_tensorboard_scalars_per_epoch(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # reproducible batches: with secret sampling class 8 (10 examples) may miss every batch
    assert _run(tmp_path / "o", "--tensorboard", str(tmp_path / "tb"),
                "--set", "privacy.reproducible_noise=true") == 0
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    lines = [json.loads(x) for x in (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()]
    for key in ("group_accuracy", "group_grad_norm", "group_clipped_fraction"):
        for group in ("2", "8"):  # an epoch without an example of a group has no point
            points = events.Scalars(f"{key}/{group}")
            want = [(m["epoch"], m[key][group]) for m in lines if m[key][group] is not None]
            assert [p.step for p in points] == [e for e, _ in want]
            assert [p.value for p in points] == pytest.approx([v for _, v in want])
    assert [p.step for p in events.Scalars("group_accuracy/8")] == [1, 2]
    assert [p.value for p in events.Scalars("privacy/epsilon")] == pytest.approx(
        [m["epsilon"] for m in lines])
