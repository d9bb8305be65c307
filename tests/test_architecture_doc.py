"""docs/architecture.md lists every module of src/disparate, and only those, each with its job."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
SRC = ROOT / "src" / "disparate"
#: Entries start within this many columns; wrapped descriptions start further right.
ENTRY_COLUMNS = 20


def documented(text: str) -> tuple[dict[str, str], list[str]]:
    """(path -> description of every ``.py`` entry, glob entries) of the ``src/disparate/``
    tree in ``text``; an entry's folder is given by its indentation, two spaces a level."""
    block = re.search(r"```\nsrc/disparate/\n(.*?)```", text, re.S).group(1)
    modules: dict[str, str] = {}
    globs: list[str] = []
    folders: list[str] = []
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        if not line.strip() or indent >= ENTRY_COLUMNS:
            continue
        name, _, description = line.strip().partition(" ")
        depth = indent // 2 - 1
        del folders[depth:]
        path = "".join(folders) + name
        if "*" in name:
            globs.append(path)
        elif name.endswith("/"):
            folders.append(name)
        else:
            assert path not in modules, f"{path} is listed twice"
            modules[path] = description.strip()
    return modules, globs


def test_documented_reads_nesting_and_descriptions_of_a_hand_made_tree() -> None:
    text = ("```\nsrc/disparate/\n  a.py     job a\n  pkg/     a package\n    b.py   job b\n"
            "                             b's wrapped line\n    sub/   deeper\n"
            "      c.py job c\n  d.py     job d\n  presets/*.yaml  shipped\n```\n")
    assert documented(text) == (
        {"a.py": "job a", "pkg/b.py": "job b", "pkg/sub/c.py": "job c", "d.py": "job d"},
        ["presets/*.yaml"])


def test_the_tree_lists_every_module_once_with_its_job() -> None:
    modules, globs = documented(DOC.read_text(encoding="utf-8"))
    actual = sorted(p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py"))
    assert sorted(modules) == actual
    assert [path for path, job in modules.items() if not job] == []
    assert [g for g in globs if not list(SRC.glob(g))] == []
