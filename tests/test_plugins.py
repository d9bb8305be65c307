"""DISPARATE_PLUGINS: a user's dataset and model show up in ``disparate list``."""

import os
import subprocess
import sys
from pathlib import Path

PLUGIN = '''
from torch import nn

from disparate.data import register_dataset
from disparate.models import register_model


@register_dataset("my-data")
def build(*, data_dir=None, download=False, seed=0):
    """My data."""
    raise NotImplementedError


@register_model("my-model")
def build_model(*, num_classes, input_shape):
    """My model."""
    return nn.Linear(input_shape[0], num_classes)
'''


def run_list(tmp_path: Path, plugins: str) -> subprocess.CompletedProcess:
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    env = dict(os.environ, DISPARATE_PLUGINS=plugins,
               PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "disparate", "list"], env=env,
                          capture_output=True, text=True)


def test_plugin_dataset_and_model_are_listed(tmp_path):
    proc = run_list(tmp_path, "my_plugin")
    assert proc.returncode == 0, proc.stderr
    assert "  my-data" in proc.stdout and "my-model" in proc.stdout


def test_a_plugin_that_does_not_import_is_one_line(tmp_path):
    proc = run_list(tmp_path, "my_plugin, no_such_plugin")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "disparate: error: $DISPARATE_PLUGINS: cannot import plugin module 'no_such_plugin' "
        "(No module named 'no_such_plugin')"]
