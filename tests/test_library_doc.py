"""The example of docs/library.md runs as written and does what it says."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "library.md"


def test_the_library_example_runs(one_thread, capsys):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S).group(1)
    assert len(code.splitlines()) <= 40
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    private, metrics = namespace["private"], namespace["metrics"]
    assert private.accountant.steps == 10 * 20
    assert 2.9 < private.accountant.get_epsilon(1e-5) <= 3.0
    assert metrics.by_group["minority"].size + metrics.by_group["majority"].size == 200
    assert metrics.overall.accuracy > 0.7
    printed = capsys.readouterr().out
    assert "-DP after 200 steps" in printed and "minority: n=" in printed
