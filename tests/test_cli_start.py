"""The CLI starts light: ``--help``, ``list`` and ``epsilon`` import neither torch nor matplotlib,
and ``--help`` and ``list`` not the accountant's dp_accounting and scipy either."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from disparate import cli, registration
from disparate.data import registry as data_registry
from disparate.models import registry as model_registry

SRC = str(Path(cli.__file__).parents[1])

_PROBE = """
import json, sys
from disparate import cli, registration
from disparate.data import registry as data_registry
from disparate.models import registry as model_registry
status = cli.main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "torchvision", "matplotlib", "disparate.training")
               if m in sys.modules)
accounting = sorted(m for m in ("dp_accounting", "scipy") if m in sys.modules)
print(json.dumps({"status": status, "heavy": heavy, "accounting": accounting}))
"""


def _start(*argv: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True,
                          text=True, check=True, env={"PYTHONPATH": SRC, "PATH": ""},
                          timeout=600)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("argv", "accounting"), [
    (("--help",), []),
    (("epsilon", "--dataset-size", "60000", "--batch-size", "256", "--noise-multiplier",
      "1.1", "--epochs", "1", "--delta", "1e-5"), ["dp_accounting", "scipy"]),
])
def test_help_and_epsilon_import_neither_torch_nor_matplotlib(
        argv: tuple[str, ...], accounting: list[str]) -> None:
    assert _start(*argv) == {"status": 0, "heavy": [], "accounting": accounting}


def test_list_imports_no_torch_matplotlib_or_accountant_and_prints_what_the_registries_give(
        capsys: pytest.CaptureFixture[str]) -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE, "list"], capture_output=True,
                          text=True, check=True, env={"PYTHONPATH": SRC, "PATH": ""},
                          timeout=600)
    *printed, probe = done.stdout.strip("\n").splitlines()
    assert json.loads(probe) == {"status": 0, "heavy": [], "accounting": []}
    for target in [*data_registry.BUILTIN.values(), *model_registry.BUILTIN.values()]:
        registration.load(target)  # in this process: every builder imported
    assert cli.main(["list"]) == 0
    assert printed == capsys.readouterr().out.strip("\n").splitlines()


def test_the_probe_sees_torch_when_a_command_loads_it() -> None:
    assert "torch" in _start("run", "--help")["heavy"]


def test_every_subcommand_help_is_the_one_its_module_registers() -> None:
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    for name in cli.SUBCOMMANDS:
        cli.command_module(name).add_parser(subparsers)
    registered = {a.dest: a.help for a in subparsers._choices_actions}
    assert registered == {name: help_ for name, (_, help_) in cli.SUBCOMMANDS.items()}
    assert [m.NAME for m in cli.COMMANDS] == list(cli.SUBCOMMANDS)


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (_, help_) in cli.SUBCOMMANDS.items():
        assert name in out and help_.split()[0] in out
