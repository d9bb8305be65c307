"""Tests of the ``disparate`` console entry point and its ``epsilon`` subcommand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from disparate import __version__
from disparate.cli import COMMANDS, main
from disparate.commands import epsilon as epsilon_command
from disparate.privacy import accounting as acc

PAPER = [
    "epsilon",
    "--dataset-size",
    "60000",
    "--batch-size",
    "256",
    "--noise-multiplier",
    "0.8",
    "--epochs",
    "60",
    "--delta",
    "1e-6",
]
SMALL = ["epsilon", "--dataset-size", "1000", "--batch-size", "50", "--steps", "200"]


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    assert main(argv) == 0
    out = capsys.readouterr().out
    return json.loads(out)  # exactly one JSON object, nothing else


def test_epsilon_is_registered() -> None:
    assert epsilon_command in COMMANDS


def test_json_paper_config(capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(capsys, [*PAPER, "--json"])
    assert set(data) == {"rdp", "rdp_classic", "pld", "steps", "details"}
    assert data["steps"] == 14100
    assert round(data["rdp_classic"], 2) == 6.23
    assert round(data["rdp"], 2) == 5.61
    assert round(data["pld"], 2) == 5.15
    for method in ("rdp", "rdp_classic", "pld"):
        assert isinstance(data[method], float)
        details = data["details"][method]
        assert details["epsilon"] == data[method]
        assert details["method"] == method
        assert details["delta"] == 1e-6 and details["steps"] == 14100
        assert details["approximate"] is False
        assert details["accountant"] and details["conversion"] and details["sampling"]


def test_table_paper_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(PAPER) == 0
    out = capsys.readouterr().out
    for text in (
        "6.23",
        "5.61",
        "5.15",
        "rdp_classic",
        "pld",
        "14100 (60 epochs x 235 steps per epoch)",
        "1e-06",
        "Poisson sampling",
        "RdpAccountant",
        "PLDAccountant",
        "TF Privacy 2019",
        "conversion:",
    ):
        assert text in out


def test_steps_equals_epochs(capsys: pytest.CaptureFixture[str]) -> None:
    by_epochs = _json(capsys, [*PAPER, "--methods", "rdp", "rdp_classic", "--json"])
    argv = [a if a != "--epochs" else "--steps" for a in PAPER]
    argv[argv.index("--steps") + 1] = "14100"
    by_steps = _json(capsys, [*argv, "--methods", "rdp", "rdp_classic", "--json"])
    assert by_epochs == by_steps
    assert set(by_steps) == {"rdp", "rdp_classic", "steps", "details"}


def test_shuffle_flagged_in_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SMALL, "--noise-multiplier", "1", "--sampling", "shuffle"]) == 0
    out = capsys.readouterr().out
    assert "APPROXIMATION" in out and "~" in out


def test_shuffle_without_replacement_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        *SMALL,
        "--noise-multiplier",
        "1",
        "--sampling",
        "shuffle",
        "--shuffle-accounting",
        "without_replacement",
        "--json",
    ]
    data = _json(capsys, argv)
    assert data["pld"] is None
    assert data["details"]["pld"]["unavailable"] == acc.ERR_PLD_WITHOUT_REPLACEMENT
    assert data["details"]["rdp"]["neighboring_relation"] == "replace one example"
    assert data["details"]["rdp"]["approximate"] is True
    assert isinstance(data["rdp"], float)


def test_explicit_pld_without_replacement_is_error(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        *SMALL,
        "--noise-multiplier",
        "1",
        "--sampling",
        "shuffle",
        "--shuffle-accounting",
        "without_replacement",
        "--methods",
        "pld",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("disparate: error: ")
    assert acc.ERR_PLD_WITHOUT_REPLACEMENT in err


def test_target_epsilon_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a for a in PAPER if a not in ("--noise-multiplier", "0.8")]
    data = _json(capsys, [*argv, "--target-epsilon", "6.23", "--method", "rdp_classic", "--json"])
    assert data["method"] == "rdp_classic"
    assert data["noise_multiplier"] == pytest.approx(0.8, abs=1e-3)
    assert data["epsilon"] <= 6.23
    assert data["steps"] == 14100
    assert data["details"]["noise_multiplier"] == data["noise_multiplier"]


def test_target_epsilon_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SMALL, "--target-epsilon", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("noise multiplier z = ")
    assert "<= target 2 (method rdp)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            [
                "epsilon",
                "--dataset-size",
                "100",
                "--batch-size",
                "256",
                "--noise-multiplier",
                "1",
                "--epochs",
                "1",
            ],
            acc.ERR_BATCH_GT_DATASET.format(batch_size=256, dataset_size=100),
        ),
        ([*SMALL, "--noise-multiplier", "0"], acc.ERR_NOT_DP),
        ([*SMALL, "--noise-multiplier", "-1"], acc.ERR_NOISE_NEGATIVE.format(value=-1.0)),
        ([*SMALL, "--noise-multiplier", "1", "--delta", "0"], acc.ERR_DELTA.format(value=0.0)),
        (
            [
                "epsilon",
                "--dataset-size",
                "100",
                "--batch-size",
                "10",
                "--noise-multiplier",
                "1",
                "--epochs",
                "0",
            ],
            acc.ERR_INTEGER.format(name="epochs", value=0, minimum=1),
        ),
        (
            [*SMALL, "--noise-multiplier", "1", "--shuffle-accounting", "poisson"],
            epsilon_command.ERR_SHUFFLE_ACCOUNTING,
        ),
        (
            [*SMALL, "--noise-multiplier", "1", "--method", "pld"],
            epsilon_command.ERR_METHOD_WITHOUT_TARGET,
        ),
        (
            [*SMALL, "--target-epsilon", "2", "--methods", "pld"],
            epsilon_command.ERR_METHODS_WITH_TARGET,
        ),
        ([*SMALL, "--target-epsilon", "0"], acc.ERR_TARGET_EPSILON.format(value=0.0)),
    ],
)
def test_value_errors_exit_2_without_traceback(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"disparate: error: {message}\n"
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    "argv",
    [
        [*SMALL, "--noise-multiplier", "1", "--epochs", "2"],  # both --steps and --epochs
        ["epsilon", "--dataset-size", "1000", "--batch-size", "50", "--noise-multiplier", "1"],
        [*SMALL],  # neither --noise-multiplier nor --target-epsilon
        [*SMALL, "--noise-multiplier", "1", "--target-epsilon", "2"],
        [*SMALL, "--noise-multiplier", "1", "--methods", "moments"],
        [*SMALL, "--noise-multiplier", "1", "--sampling", "uniform"],
        [],  # no subcommand
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"disparate {__version__}"


def test_python_dash_m() -> None:
    src = Path(__file__).resolve().parents[2] / "src"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "disparate", "--version"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"disparate {__version__}"


def test_clipping_policy_composes_its_statistics(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["epsilon", "--dataset-size", "54649", "--batch-size", "256", "--epochs", "4",
            "--delta", "1e-6", "--json"]
    out = _json(capsys, [*base, "--noise-multiplier", "1", "--methods", "rdp",
                         "--clipping-policy", "adaptive-clip", "--option", "count_noise_std=4"])
    # the centred count of adaptive clipping has sensitivity 1/2: noise multiplier 2 * 4
    expected = acc.compute_epsilon(dataset_size=54649, batch_size=256, noise_multiplier=1.0,
                                   steps=856, delta=1e-6, aux_noise_multipliers=[8.0]).epsilon
    assert out["rdp"] == pytest.approx(expected, rel=1e-12)
    assert out["details"]["rdp"]["aux_noise_multipliers"] == [8.0]
    flat = _json(capsys, [*base, "--noise-multiplier", "1", "--methods", "rdp"])
    assert out["rdp"] > flat["rdp"]
    target = _json(capsys, [*base, "--target-epsilon", "3", "--clipping-policy", "dpsgd-f",
                            "--groups", "10", "--option", "count_noise_std=12.8"])
    assert 2.97 <= target["epsilon"] <= 3.0


@pytest.mark.parametrize(("extra", "message"), [
    (["--option", "count_noise_std=4"], "--option and --groups apply only with --clipping-policy"),
    (["--clipping-policy", "dpsgd-f", "--groups", "2", "--option", "count_noise_std"],
     "--option 'count_noise_std': expected KEY=VALUE"),
    (["--clipping-policy", "dpsgd-f"], "needs the group labels"),
])
def test_clipping_policy_bad_input(extra: list[str], message: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["epsilon", "--dataset-size", "1000", "--batch-size", "100", "--epochs", "1",
            "--noise-multiplier", "1", *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
