"""The public face of disparate.privacy: dir(), help() and an import without torchvision."""

import pydoc
import subprocess
import sys

import disparate.privacy as privacy


def test_dir_and_help_show_the_exports():
    assert set(privacy.__all__) <= set(dir(privacy))
    text = pydoc.render_doc(privacy, renderer=pydoc.plaintext)
    for name in ("DPOptimizer", "DPDataLoader", "PrivacyAccountant", "make_private",
                 "compute_epsilon"):
        assert name in text


def test_privacy_core_imports_without_torchvision():
    code = ("import sys; sys.modules['torchvision'] = None\n"  # any torchvision import fails
            "from disparate.privacy import DPOptimizer, make_private, check_model\n"
            "import torch; check_model(torch.nn.Linear(2, 2)); print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
