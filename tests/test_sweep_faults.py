"""Sweep workers die with their parent (issue #18, point 4), checked by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from disparate import sweep

SWEEP = """
import sys
from disparate.config import load_experiment
from disparate.sweep import make_point, run_sweep
tiny = ["training.epochs=200", "data.subsample=200", "training.batch_size=32",
        "privacy.clipping=false", "privacy.noise=false", "privacy.noise_multiplier=null"]
points = [make_point(load_experiment("digits-underrep", [*tiny, f"training.seed={s}"]),
                     sys.argv[1]) for s in range(4)]
run_sweep(points, jobs=2, threads=1)
"""


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            out[int(entry.name)] = (int(fields[1]), fields[0])
    return out


def _descendants(pid: int) -> set[int]:
    procs = _processes()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, (ppid, _) in procs.items() if ppid in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    state = _processes().get(pid)
    return state is not None and state[1] not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killing_the_parent_of_a_study_leaves_no_worker_behind(tmp_path: Path,
                                                                sig: signal.Signals) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(sweep.__file__).parents[1]),
           "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen([sys.executable, "-c", SWEEP, str(tmp_path / "runs")], env=env)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 300
        while len(list(tmp_path.glob("runs/*/train.log"))) < 2:  # two points are training
            assert parent.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        workers = _descendants(parent.pid)
        assert len(workers) >= 2
        parent.send_signal(sig)
        parent.wait(timeout=60)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in workers if _alive(p)]
    finally:
        for pid in workers:  # only the processes this test started
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()


def _die_once(config_data: dict, run_dir: str, threads: int) -> dict:
    """A point function whose first call of the point "a" kills its worker."""
    marker = Path(run_dir) / "died"
    if Path(run_dir).name == "a" and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        os._exit(1)
    start = time.time()
    time.sleep(1.0)
    return {"outcome": sweep.DONE, "start": start, "end": time.time()}


def test_the_pool_keeps_its_width_after_a_worker_dies(tmp_path: Path) -> None:
    tasks = [(i, {}, str(tmp_path / name), 1) for i, name in enumerate("abcdef")]
    results: dict[int, dict] = {}
    lines: list[str] = []
    sweep._run_pool(tasks, results.__setitem__, jobs=2, log=lines.append, func=_die_once)
    assert sorted(results) == list(range(6)) and "a worker process died" in lines[0]
    spans = sorted((r["start"], r["end"]) for r in results.values())
    overlapping = sum(1 for (s1, e1), (s2, _) in zip(spans, spans[1:], strict=False)
                      if s2 < e1)
    assert overlapping >= 2  # points ran two at a time, not one after another
