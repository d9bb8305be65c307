"""The sweep runner: many runs (grid points), each an ordinary run directory keyed by its config.

A *point* is one resolved :class:`~disparate.config.ExperimentConfig`; its run directory is
``RUNS_DIR/<config_hash>/`` and holds what :func:`disparate.training.train` (a federated
config: :func:`disparate.federated.simulation.train_federated`, :func:`train_point`) writes
(``config.yaml``, ``metrics.jsonl``, ``results.json``, ``checkpoint.pt``, see
``docs/results-format.md``) plus ``train.log`` and, for a point that failed, ``error.json``.
Running a sweep again:

- skips a *finished* point (``results.json`` of the same config hash): nothing finished is
  ever recomputed or overwritten;
- resumes an *interrupted* point (``checkpoint.pt`` without ``results.json``) from its last
  epoch with ``train(..., resume=True)``, which repeats the uninterrupted run exactly;
- retries a *failed* point (``error.json``; its checkpoint, if any, is resumed) unless
  ``retry_failed=False``; a failure is recorded and never stops the other points;
- leaves alone a point another process is running right now (``busy``): each running point
  holds the OS lock of its run directory (:func:`disparate.fileio.run_dir_lock`, the one lock
  every run takes), released by the OS even when the process is killed.

Backends (:func:`run_sweep`'s ``backend``):

- ``"local"`` (default): ``jobs`` worker processes of a
  :class:`concurrent.futures.ProcessPoolExecutor` (spawn context); ``jobs=1`` runs the points
  in this process. Each point gets ``max(1, cores // jobs)`` torch threads, so that
  ``jobs x threads <= cores``.
- ``"ray"``: one Ray task per point (``pip install 'disparate[ray]'``). Without ``address``
  a local Ray instance with ``jobs`` CPUs is started (and shut down afterwards); with
  ``address`` (e.g. ``"auto"`` or ``"ray://head:10001"``) an existing cluster is used, and
  the run directories must then lie on a file system every node mounts at the same path.
  An already initialised Ray (``ray.init`` in a notebook) is used as it is.

Both backends call the same per-point function, :func:`run_point`.

Under torchrun (``docs/distributed.md``) a sweep runs inside :func:`run_led`: rank 0 runs it
in this process (local backend, ``jobs=1``) and each point it trains is trained by every rank
together; a point that fails there stops the sweep (its ``error.json`` written), since the
other ranks are in its run too.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from disparate import fileio, rundir
from disparate import results as res
from disparate.config import ExperimentConfig, config_hash, config_hashes, from_dict, to_dict
from disparate.rundir import ERROR_FILE, FAILED, FINISHED, LOG_FILE, PARTIAL, PENDING

__all__ = [
    "BACKENDS",
    "ERROR_FILE",
    "FAILED",
    "FINISHED",
    "LOCK_FILE",
    "LOG_FILE",
    "PARTIAL",
    "PENDING",
    "PointOutcome",
    "SweepPoint",
    "SweepReport",
    "available_cores",
    "make_point",
    "point_status",
    "run_led",
    "run_point",
    "run_sweep",
    "threads_per_point",
    "train_point",
]

BACKENDS: tuple[str, ...] = ("local", "ray")
LOCK_FILE = fileio.LOCK_FILE
#: prctl option: the signal a process gets when its parent dies (linux/prctl.h).
PR_SET_PDEATHSIG = 1
#: Seconds between two checks of a pool worker's watchdog that its parent is alive.
WATCHDOG_S = 1.0

#: Outcomes of a point in one sweep (:class:`PointOutcome`).
SKIPPED, DONE, RESUMED, BUSY = "skipped", "done", "resumed", "busy"

ERR_BACKEND = "backend={value!r}: expected one of 'local', 'ray'"
ERR_JOBS = "jobs={value!r}: expected an integer >= 1"
ERR_NO_RAY = (
    "backend 'ray' needs the ray package, which is not installed; install it with "
    "pip install 'disparate[ray]' (or pip install 'ray>=2.9'), or use --backend local"
)
ERR_DISTRIBUTED = (
    "backend={backend!r}, jobs={jobs}: in a process group ({world} ranks) each run of the "
    "sweep trains on every rank in turn; expected backend 'local' and jobs=1 (--jobs 1)"
)
ERR_DUPLICATE = (
    "two points of the sweep have the same resolved config (config_hash {key}): {a} and {b}; "
    "every point must differ in something that is trained"
)

Log = Callable[[str], None]


# --------------------------------------------------------------------------------------------
# Points
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepPoint:
    """One grid point: a resolved config, its run directory and the labels that name it.

    ``labels`` say where the point lies in the study (e.g. ``{"variant": "DP",
    "training.batch_size": 512, "seed": 0}``); they are saved, never trained on.
    """

    key: str
    config: ExperimentConfig
    run_dir: Path
    labels: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """Short text naming the point, e.g. ``variant=DP training.batch_size=512 seed=0``."""
        text = " ".join(f"{k}={_short(v)}" for k, v in self.labels.items())
        return text or self.key


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def make_point(config: ExperimentConfig, runs_dir: str | Path,
               labels: Mapping[str, Any] | None = None) -> SweepPoint:
    """The point of ``config``: its run directory is ``runs_dir/<config_hash(config)>`` (or
    that of its legacy hash, :func:`~disparate.config.config_hashes`, if only that exists)."""
    keys = config_hashes(config)
    key = next((k for k in keys if (Path(runs_dir) / k).is_dir()), keys[0])
    return SweepPoint(key=key, config=config, run_dir=Path(runs_dir) / key,
                      labels=dict(labels or {}))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def point_status(point: SweepPoint) -> str:
    """``"finished"``, ``"failed"``, ``"partial"`` (a checkpoint to resume) or ``"pending"``
    (:func:`disparate.rundir.run_status` of its run directory)."""
    return rundir.run_status(point.run_dir, point.config)


def read_error(point: SweepPoint) -> dict[str, Any] | None:
    """The recorded failure of a point (``error.json``), or ``None``."""
    return _read_json(point.run_dir / ERROR_FILE)


# --------------------------------------------------------------------------------------------
# The per-point function (both backends)
# --------------------------------------------------------------------------------------------


def available_cores() -> int:
    """CPU cores this process may use (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        with contextlib.suppress(OSError):
            return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def threads_per_point(jobs: int, cores: int | None = None) -> int:
    """Torch threads for each of ``jobs`` concurrent points: ``max(1, cores // jobs)``."""
    cores = available_cores() if cores is None else cores
    return max(1, cores // max(1, jobs))


def _write_error(run_dir: Path, exc: BaseException, started: float) -> dict[str, Any]:
    error = {
        "error": f"{type(exc).__name__}: {exc}",
        "type": type(exc).__name__,
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_time_s": time.perf_counter() - started,
    }
    try:
        res.write_json(run_dir / ERROR_FILE, error)
    except OSError as write_exc:  # e.g. disk full: the outcome still says what failed
        error["error"] += f" (and {ERROR_FILE} could not be written: {write_exc})"
    return error


def train_point(config: ExperimentConfig, run_dir: str | Path, *, device: str,
                log: Log | None = None, progress: bool | None = False) -> None:
    """Train ``config`` into ``run_dir``, resuming its checkpoint if there is one: a federated
    config (one with a ``federated`` section) with
    :func:`~disparate.federated.simulation.train_federated`, any other with
    :func:`~disparate.training.train` -- the one place a point's loop is chosen."""
    if config.federated is not None:
        from disparate.federated.simulation import train_federated

        train_federated(config, run_dir, resume=True, progress=progress, log=log,
                        device=device)
    else:
        from disparate import training

        training.train(config, run_dir, resume=True, progress=progress, log=log,
                       device=device)


def run_point(config_data: Mapping[str, Any], run_dir: str | Path,
              threads: int | None = None, device: str = "cpu", *,
              echo: Log | None = None, progress: bool | None = False) -> dict[str, Any]:
    """Train one point into ``run_dir`` on ``device``, resuming its checkpoint if there is
    one; its log lines go to ``train.log`` (and to ``echo``, in-process only), its tqdm bar
    is shown with ``progress`` (True, or None: on a terminal; in-process only).

    Runs in a worker (process pool or Ray task) or in-process; takes and returns plain data.
    A finished point is not touched. An exception is caught, written to ``error.json`` and
    returned as ``{"outcome": "failed", "error": ...}``; it never propagates. Returns
    ``{"key", "outcome", "error", "wall_time_s", "host"}``.
    """
    import torch

    from disparate import distributed

    started = time.perf_counter()
    run_dir = Path(run_dir)
    config = from_dict(config_data)
    key = config_hash(config)
    point = SweepPoint(key=key, config=config, run_dir=run_dir)
    out: dict[str, Any] = {"key": key, "outcome": SKIPPED, "error": None, "wall_time_s": 0.0,
                           "host": socket.gethostname()}
    if point_status(point) == FINISHED:
        return out
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(fileio.run_dir_lock(run_dir))
        except fileio.RunDirBusyError:
            out["outcome"] = BUSY
            return out
        status = point_status(point)  # re-check under the lock
        if status == FINISHED:
            return out
        previous_threads = torch.get_num_threads()  # restored: jobs=1 runs in-process
        if threads is not None and config.training.num_threads is None:
            torch.set_num_threads(threads)
        resumed = (run_dir / res.CHECKPOINT_FILE).exists()
        file_log = stack.enter_context(rundir.file_log(run_dir))

        def log(line: str) -> None:
            file_log(line)
            if echo is not None:
                echo(line)

        try:
            log(f"start point {key} on {socket.gethostname()} pid {os.getpid()} "
                f"({'resume' if resumed else 'new'}, {torch.get_num_threads()} threads)")
            with distributed.task((dict(config_data), str(run_dir))):  # the other ranks too
                train_point(config, run_dir, device=device, log=log, progress=progress)
            out["outcome"] = RESUMED if resumed else DONE
            log(f"finished point {key} in {time.perf_counter() - started:.1f} s")
        except Exception as exc:  # recorded; in one process the other points go on
            error = _write_error(run_dir, exc, started)
            log(f"FAILED point {key}: {error['error']}")
            if distributed.world_size() > 1:
                raise
            out.update(outcome=FAILED, error=error["error"])
        finally:
            torch.set_num_threads(previous_threads)
    out["wall_time_s"] = time.perf_counter() - started
    return out


# --------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------


@dataclass
class PointOutcome:
    """What one sweep did with one point."""

    point: SweepPoint
    outcome: str  # skipped | done | resumed | failed | busy
    error: str | None = None
    wall_time_s: float = 0.0


@dataclass
class SweepReport:
    """The outcome of every point of one :func:`run_sweep` call, in the order given."""

    outcomes: list[PointOutcome]
    backend: str
    jobs: int
    wall_time_s: float

    def count(self, outcome: str) -> int:
        """How many points had ``outcome``."""
        return sum(1 for o in self.outcomes if o.outcome == outcome)

    @property
    def failed(self) -> list[PointOutcome]:
        """The points that failed in this sweep."""
        return [o for o in self.outcomes if o.outcome == FAILED]

    @property
    def ok(self) -> bool:
        """True when every point is finished (none failed or busy)."""
        return all(o.outcome in (SKIPPED, DONE, RESUMED) for o in self.outcomes)

    def summary(self) -> str:
        """One line, e.g. ``12 points: 4 skipped (finished before), 7 done, 1 failed``."""
        parts = []
        for outcome, text in ((SKIPPED, "skipped (finished before)"), (DONE, "done"),
                              (RESUMED, "resumed and done"), (FAILED, "failed"),
                              (BUSY, "busy (running elsewhere)")):
            n = self.count(outcome)
            if n:
                parts.append(f"{n} {text}")
        return (f"{len(self.outcomes)} points: " + (", ".join(parts) or "none")
                + f" ({self.backend} backend, {self.jobs} jobs, {self.wall_time_s:.1f} s)")


Task = tuple[int, dict[str, Any], str, int | None, str]  # index, then run_point's arguments


def _check_points(points: Sequence[SweepPoint]) -> None:
    seen: dict[str, SweepPoint] = {}
    for p in points:
        if p.key in seen:
            raise ValueError(ERR_DUPLICATE.format(key=p.key, a=seen[p.key].describe(),
                                                  b=p.describe()))
        seen[p.key] = p


def run_sweep(
    points: Sequence[SweepPoint],
    *,
    backend: str = "local",
    jobs: int = 1,
    threads: int | None = None,
    address: str | None = None,
    retry_failed: bool = True,
    device: str = "cpu",
    log: Log | None = None,
    echo: Log | None = None,
    progress: bool | None = False,
) -> SweepReport:
    """Run every point that is not finished; return what happened to each.

    Args:
        points: The points (distinct config hashes).
        backend: ``"local"`` (process pool; in-process with ``jobs=1``) or ``"ray"``.
        jobs: Points run at the same time (local pool size; CPUs of a local Ray instance).
        threads: Torch threads per point; ``None``: ``max(1, cores // jobs)``.
        address: Ray cluster address (``backend="ray"`` only); ``None`` starts a local Ray.
        retry_failed: Run points that failed before again (default); else leave them failed.
        device: Torch device every point trains on.
        log: Called with one line per point as it ends (and a few notes).
        echo: Called with the points' own log lines (per epoch), when they run in this
            process (local backend, ``jobs=1``); they always go to each ``train.log``.
        progress: The tqdm bar of points run in this process (True, or None: on a
            terminal); never in workers.
    """
    if backend not in BACKENDS:
        raise ValueError(ERR_BACKEND.format(value=backend))
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(ERR_JOBS.format(value=jobs))
    _check_points(points)
    started = time.perf_counter()
    say = log or (lambda _line: None)
    threads = threads_per_point(jobs) if threads is None else threads
    from disparate import distributed

    if distributed.world_size() > 1:  # torch threads: torchrun's OMP_NUM_THREADS per rank
        if backend != "local" or jobs != 1:
            raise ValueError(ERR_DISTRIBUTED.format(backend=backend, jobs=jobs,
                                                    world=distributed.world_size()))
        threads = None

    outcomes: dict[int, PointOutcome] = {}
    tasks: list[Task] = []
    for i, p in enumerate(points):
        status = point_status(p)
        if status == FINISHED:
            outcomes[i] = PointOutcome(p, SKIPPED)
        elif status == FAILED and not retry_failed:
            err = read_error(p) or {}
            outcomes[i] = PointOutcome(p, FAILED, error=err.get("error", "failed before"))
        else:
            tasks.append((i, _portable(p.config), str(p.run_dir.resolve()), threads,
                          device))
    if outcomes:
        say(f"{len(outcomes)} of {len(points)} points need no run "
            f"({sum(o.outcome == SKIPPED for o in outcomes.values())} finished before)")

    done_count = [0]

    def record(i: int, result: Mapping[str, Any]) -> None:
        p = points[i]
        outcome = PointOutcome(p, result["outcome"], error=result.get("error"),
                               wall_time_s=float(result.get("wall_time_s") or 0.0))
        outcomes[i] = outcome
        done_count[0] += 1
        text = f"[{done_count[0]}/{len(tasks)}] {outcome.outcome:8s} {p.describe()}"
        if outcome.outcome in (DONE, RESUMED):
            text += f" ({outcome.wall_time_s:.0f} s){_result_text(p)}"
        if outcome.error:
            text += f": {outcome.error}"
        say(text)

    if tasks:
        if backend == "ray":
            _run_ray(tasks, record, jobs=jobs, threads=threads, address=address, log=say)
        elif jobs == 1:
            for task in tasks:
                record(task[0], run_point(*task[1:], echo=echo, progress=progress))
        else:
            _run_pool(tasks, record, jobs=jobs, log=say)
    ordered = [outcomes[i] for i in range(len(points))]
    return SweepReport(ordered, backend=backend, jobs=jobs,
                       wall_time_s=time.perf_counter() - started)


def run_led(device: str, func: Callable[[str], int]) -> int:
    """``func(device)`` -- a command that runs sweeps -- under a torchrun launch: rank 0 runs
    it, and trains each of its points with the other ranks, which follow it (each on its own
    device, ``cuda:LOCAL_RANK`` for ``cuda``) and return 0; in one process, ``func(device)``."""
    from disparate import distributed

    with distributed.launched(device) as here:
        if not distributed.is_main():
            distributed.follow(lambda point: _train_followed(*point, device=here))
            return 0
        with distributed.lead():
            return func(here)


def _train_followed(config_data: Mapping[str, Any], run_dir: str, *, device: str) -> None:
    """A rank's part of the point that rank 0's :func:`run_point` trains."""
    train_point(from_dict(config_data), run_dir, device=device)


def _portable(config: ExperimentConfig) -> dict[str, Any]:
    """The config as plain data for a worker, with a relative ``data.data_dir`` made absolute
    (workers may run elsewhere; the data location is not part of the config hash)."""
    data = to_dict(config)
    data_dir = data["data"].get("data_dir")
    if data_dir and not Path(data_dir).expanduser().is_absolute():
        data["data"]["data_dir"] = str(Path(data_dir).expanduser().resolve())
    return data


def _result_text(point: SweepPoint) -> str:
    data = _read_json(point.run_dir / res.RESULTS_FILE)
    if not data:
        return ""
    acc = data.get("overall_accuracy")
    parts = [] if acc is None else [f"acc {100 * acc:.1f}%"]
    for g in data.get("groups", []):
        if g.get("highlight") and g.get("accuracy") is not None:
            parts.append(f"{g['group']}: {100 * g['accuracy']:.1f}%")
    privacy = data.get("privacy") or {}
    eps = ((privacy.get("epsilon") or {}).get(privacy.get("accountant") or "") or {}).get(
        "epsilon")
    if eps is not None:
        parts.append(f"eps {eps:.2f} ({privacy.get('accountant')})")
    return (" -- " + ", ".join(parts)) if parts else ""


def _failure(exc: BaseException) -> dict[str, Any]:
    return {"outcome": FAILED, "error": f"{type(exc).__name__}: {exc}", "wall_time_s": 0.0}


def _worker_init(parent: int) -> None:
    """Make a pool worker die with the process that started it (killed by SIGTERM or SIGKILL
    included): ``PR_SET_PDEATHSIG`` on Linux, and a watchdog of the parent pid everywhere."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCHDOG_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _run_pool(tasks: Sequence[Task], record: Callable[[int, Mapping[str, Any]], None], *,
              jobs: int, log: Log, func: Callable[..., dict[str, Any]] = run_point) -> None:
    """A spawn-context pool of ``jobs`` workers, which die with this process.

    When a worker dies, the pool breaks and every point it had in flight or queued is run
    again in a new pool of the same width; a point that was taken down twice is then run
    alone, in its own process, so that a point that kills its worker fails alone.
    """
    ctx = get_context("spawn")
    taken_down: dict[int, int] = {}
    queue = list(tasks)
    while queue:
        broken = _pool_round(queue, record, jobs=jobs, ctx=ctx, func=func)
        for task in broken:
            taken_down[task[0]] = taken_down.get(task[0], 0) + 1
        queue = [t for t in broken if taken_down[t[0]] == 1]
        solo = [t for t in broken if taken_down[t[0]] > 1]
        if broken:
            log(f"a worker process died; running the {len(broken)} points it took down again"
                f" ({len(queue)} in a new pool of {min(jobs, max(len(queue), 1))}, "
                f"{len(solo)} alone)")
        for task in solo:
            _run_alone(task, record, ctx=ctx, func=func)


def _pool_round(tasks: Sequence[Task], record: Callable[[int, Mapping[str, Any]], None], *,
                jobs: int, ctx: Any, func: Callable[..., dict[str, Any]]) -> list[Task]:
    """Run ``tasks`` in one pool; return those whose worker died (the pool broke)."""
    broken: list[Task] = []
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=ctx,
                               initializer=_worker_init, initargs=(os.getpid(),))
    try:
        futures: dict[Future[dict[str, Any]], Task] = {
            pool.submit(func, *t[1:]): t for t in tasks}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                task = futures[fut]
                try:
                    record(task[0], fut.result())
                except BrokenProcessPool:
                    broken.append(task)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return broken


def _run_alone(task: Task, record: Callable[[int, Mapping[str, Any]], None], *, ctx: Any,
               func: Callable[..., dict[str, Any]]) -> None:
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_worker_init,
                             initargs=(os.getpid(),)) as solo:
        try:
            record(task[0], solo.submit(func, *task[1:]).result())
        except BrokenProcessPool as exc:
            result = _failure(exc)
            result["error"] = ("the worker process died (killed, out of memory or a crash "
                               f"in native code): {exc}")
            _record_crash(task, result["error"])
            record(task[0], result)


def _record_crash(task: Task, message: str) -> None:
    run_dir = Path(task[2])
    with contextlib.suppress(OSError):  # e.g. disk full: the sweep goes on
        res.write_json(run_dir / ERROR_FILE, {"error": message, "type": "BrokenProcessPool",
                                              "traceback": "", "host": socket.gethostname(),
                                              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ValueError(ERR_NO_RAY) from exc
    return ray


def _run_ray(tasks: Sequence[Task], record: Callable[[int, Mapping[str, Any]], None], *,
             jobs: int, threads: int, address: str | None, log: Log) -> None:
    """One Ray task per point, each reserving ``threads`` CPUs; the same :func:`run_point`."""
    ray = _import_ray()
    started_here = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
            log(f"connected to the Ray cluster at {address}")
        else:
            ray.init(num_cpus=max(jobs * threads, 1), include_dashboard=False,
                     log_to_driver=False)
            log(f"started a local Ray instance with {jobs * threads} CPUs")
        started_here = True
    refs: dict[Any, Task] = {}
    try:
        remote = ray.remote(num_cpus=threads, max_retries=1)(run_point)
        refs = {remote.remote(*t[1:]): t for t in tasks}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                task = refs[ref]
                try:
                    result = ray.get(ref)
                except Exception as exc:  # worker died, node lost, ...: recorded
                    result = _failure(exc)
                    _record_crash(task, result["error"])
                record(task[0], result)
    except BaseException:
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise
    finally:
        if started_here:
            ray.shutdown()
