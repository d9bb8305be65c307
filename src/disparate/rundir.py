"""One run directory and its lifecycle: open (new, resume or overwrite) under its lock,
checkpoint, metrics, log, finish, and its status.

Both training loops (:func:`disparate.training.train`,
:func:`disparate.federated.simulation.train_federated`), the sweep and comparisons go
through this module, so that there is one rule for each of these:

- *finished*: ``results.json`` parses and its ``config_hash`` is one of the config's
  (:func:`~disparate.config.config_hashes`). It is written atomically after the last
  checkpoint, so nothing else is needed (:func:`run_status`).
- *opening*: a directory that holds a run (``checkpoint.pt`` or ``results.json``) is refused
  unless resuming or overwriting; resuming, results of another config are refused, and so is
  a checkpoint of another config (:meth:`RunDir.open`, :meth:`RunDir.resume_state`).
- *a fresh start* removes what an earlier run left: results, checkpoint and the loop's own
  files (:meth:`RunDir.start`).
- ``metrics.jsonl``: rewritten atomically from the checkpoint's lines when a run (re)starts,
  then one line appended per epoch or round; read by :func:`disparate.fileio.read_jsonl`
  (a truncated last line is skipped).

The files are described in ``docs/results-format.md``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from disparate import fileio, records
from disparate import results as res
from disparate.config import ExperimentConfig, config_hash, config_hashes, save_config
from disparate.records import EpochMetrics, RoundMetrics, RunResult

__all__ = [
    "CHECKPOINT_VERSION",
    "DIVERGED_FILE",
    "ERROR_FILE",
    "FAILED",
    "FINISHED",
    "LOG_FILE",
    "PARTIAL",
    "PENDING",
    "RunDir",
    "file_log",
    "finished_results",
    "holds_run",
    "reset",
    "resumable",
    "run_status",
]

CHECKPOINT_VERSION = 1
ERROR_FILE = "error.json"
LOG_FILE = "train.log"
#: Written instead of ``results.json`` by a run that diverged.
DIVERGED_FILE = "diverged.json"

#: Statuses of a run directory (:func:`run_status`).
PENDING, PARTIAL, FINISHED, FAILED = "pending", "partial", "finished", "failed"

ERR_EXISTING_RUN = (
    "{path} already holds a run (checkpoint.pt or results.json); pass --resume to continue "
    "it, --overwrite to start it again, or choose another --out"
)
ERR_RESUME_MISMATCH = (
    "cannot resume {path}: its checkpoint is of config_hash {saved} but this config hashes to "
    "{current}; resume with the same experiment and --set overrides (see {config})"
)
ERR_STALE_RESULTS = (
    "{path} holds the results of another config (config_hash {saved}; this config hashes to "
    "{current}, see {config}): they cannot be this run's results. Choose another --out, or "
    "pass --overwrite to replace them"
)

Log = Callable[[str], None]


def _results_or_none(run_dir: Path) -> dict[str, Any] | None:
    try:
        data = res.load_results(run_dir)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def finished_results(run_dir: str | Path, config: ExperimentConfig) -> dict[str, Any] | None:
    """The ``results.json`` of ``run_dir`` if it is the finished run of ``config``, else
    ``None`` (missing, corrupt, or of another config): the one "finished" rule."""
    data = _results_or_none(Path(run_dir))
    if data is not None and data.get("config_hash") in config_hashes(config):
        return data
    return None


def holds_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a run (``checkpoint.pt`` or ``results.json``): opening it
    needs resume or overwrite."""
    run_dir = Path(run_dir)
    return (run_dir / res.CHECKPOINT_FILE).exists() or (run_dir / res.RESULTS_FILE).exists()


def resumable(run_dir: str | Path, config: ExperimentConfig) -> bool:
    """Whether ``run_dir`` holds a readable checkpoint of ``config`` (one that resuming
    continues, :meth:`RunDir.resume_state`)."""
    path = Path(run_dir) / res.CHECKPOINT_FILE
    if not path.exists():
        return False
    try:
        state = fileio.load_torch(path)
    except fileio.CorruptFileError:
        return False
    return state.get("config_hash") in config_hashes(config)


def run_status(run_dir: str | Path, config: ExperimentConfig) -> str:
    """``"finished"``, ``"failed"`` (``error.json``), ``"partial"`` (a checkpoint to resume)
    or ``"pending"``."""
    run_dir = Path(run_dir)
    if finished_results(run_dir, config) is not None:
        return FINISHED
    if (run_dir / ERROR_FILE).exists():
        return FAILED
    if (run_dir / res.CHECKPOINT_FILE).exists():
        return PARTIAL
    return PENDING


def reset(run_dir: str | Path, config: ExperimentConfig) -> None:
    """Make ``run_dir`` start again from the beginning (``--overwrite`` of a run that another
    command will train): under its lock, remove its results, checkpoint and failure record."""
    with RunDir.open(run_dir, config, overwrite=True) as run:
        run.start(fresh=True, stale=(ERROR_FILE,))


@contextlib.contextmanager
def file_log(run_dir: str | Path) -> Iterator[Log]:
    """A logger appending ``HH:MM:SS line`` to ``run_dir/train.log``; a write error (a full
    disk) is ignored, so that it never hides the outcome of the run."""
    with (Path(run_dir) / LOG_FILE).open("a", encoding="utf-8") as f:

        def log(line: str) -> None:
            with contextlib.suppress(OSError):
                f.write(f"{time.strftime('%H:%M:%S')} {line}\n")
                f.flush()

        yield log


def _on_main_rank(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` run by rank 0 of a process group alone, its value (or error) shared with
    every rank (:func:`disparate.distributed.from_main`); in one process, just ``method``."""

    @functools.wraps(method)
    def wrapper(self: RunDir, *args: Any, **kwargs: Any) -> Any:
        from disparate import distributed  # torch.distributed: only when a run trains

        return distributed.from_main(lambda: method(self, *args, **kwargs))

    return wrapper


class RunDir:
    """An open run directory of one config; made by :meth:`open`, which holds its lock."""

    def __init__(self, path: str | Path, config: ExperimentConfig, *, resume: bool,
                 log: Log | None = None) -> None:
        self.path = Path(path)
        self.config = config
        self.resume = resume
        self.digest = config_hash(config)
        self.hashes = config_hashes(config)
        self._log = log

    # ---------------------------------------------------------------------------- opening

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: str | Path, config: ExperimentConfig, *, resume: bool = False,
             overwrite: bool = False, log: Log | None = None) -> Iterator[RunDir]:
        """Hold the lock of ``path`` (:func:`disparate.fileio.run_dir_lock`, created if
        needed) and check it may be used: one that holds a run needs ``resume`` or
        ``overwrite``; resuming, results of another config are refused. In a process group
        rank 0 alone holds the lock and touches the files (every rank gets its errors and
        what it read: ``docs/distributed.md``)."""
        run = cls(path, config, resume=resume and not overwrite, log=log)
        with contextlib.ExitStack() as held:
            def lock_and_check() -> None:
                held.enter_context(fileio.run_dir_lock(path))
                run._check(resume=resume, overwrite=overwrite)

            from disparate import distributed

            distributed.from_main(lock_and_check)  # rank 0 alone owns the directory
            yield run

    def _check(self, *, resume: bool, overwrite: bool) -> None:
        out = self.path
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{out}: exists and is not a directory; "
                                     "choose another --out")
        results_path = out / res.RESULTS_FILE
        if holds_run(out) and not resume and not overwrite:
            raise ValueError(ERR_EXISTING_RUN.format(path=out))
        if resume and not overwrite and results_path.exists():
            saved = res.load_results(out).get("config_hash")
            if saved not in self.hashes:
                raise ValueError(ERR_STALE_RESULTS.format(
                    path=out, saved=saved, current=self.digest, config=out / res.CONFIG_FILE))

    @property
    def checkpoint_path(self) -> Path:
        return self.path / res.CHECKPOINT_FILE

    def log(self, line: str) -> None:
        """Pass ``line`` to the run's logger (if any)."""
        if self._log is not None:
            self._log(line)

    @_on_main_rank
    def finished(self) -> dict[str, Any] | None:
        """Resuming a finished run whose checkpoint was deleted: its results (nothing to
        train or rewrite), else ``None``."""
        if self.resume and not self.checkpoint_path.exists():
            return finished_results(self.path, self.config)
        return None

    @_on_main_rank
    def resume_state(self) -> dict[str, Any] | None:
        """The checkpoint to continue from when resuming (refused if of another config), or
        ``None``: a fresh start."""
        if not self.resume:
            return None
        if not self.checkpoint_path.exists():
            self.log(f"no checkpoint in {self.path}; starting from the beginning")
            return None
        state = fileio.load_torch(self.checkpoint_path)
        if state.get("config_hash") not in self.hashes:
            raise ValueError(ERR_RESUME_MISMATCH.format(
                path=self.path, saved=state.get("config_hash"), current=self.digest,
                config=self.path / res.CONFIG_FILE))
        return state

    @_on_main_rank
    def start(self, *, fresh: bool, stale: Sequence[str] = (),
              metrics: Sequence[EpochMetrics | RoundMetrics] = ()) -> None:
        """Write ``config.yaml`` and ``metrics.jsonl`` (the ``metrics`` lines so far) and
        remove ``diverged.json``; a ``fresh`` start also removes the results, the checkpoint
        and the loop's own files ``stale`` of an earlier run."""
        self.path.mkdir(parents=True, exist_ok=True)
        save_config(self.config, self.path / res.CONFIG_FILE)
        (self.path / DIVERGED_FILE).unlink(missing_ok=True)
        if fresh:
            for name in (res.RESULTS_FILE, res.CHECKPOINT_FILE, *stale):
                (self.path / name).unlink(missing_ok=True)
        fileio.write_text(self.path / res.METRICS_FILE, records.metrics_text(metrics))

    # ---------------------------------------------------------------------------- running

    @_on_main_rank
    def append_metrics(self, line: EpochMetrics | RoundMetrics) -> None:
        """Append one epoch's (or round's) line to ``metrics.jsonl``."""
        with (self.path / res.METRICS_FILE).open("a", encoding="utf-8") as f:
            f.write(records.metrics_text([line]))

    @_on_main_rank
    def read_metrics(self) -> list[dict[str, Any]]:
        """The lines of ``metrics.jsonl``."""
        return res.read_metrics(self.path)

    @_on_main_rank
    def save_checkpoint(self, state: Mapping[str, Any]) -> None:
        """Write ``checkpoint.pt`` atomically: ``state`` with the version and config hash."""
        import torch

        with fileio.atomic_write(self.checkpoint_path, "wb") as f:
            torch.save({"version": CHECKPOINT_VERSION, "config_hash": self.digest, **state}, f)

    @_on_main_rank
    def diverged(self, record: Mapping[str, Any]) -> Path:
        """Write ``diverged.json`` (instead of results); returns its path."""
        return res.write_json(self.path / DIVERGED_FILE, record)

    @_on_main_rank
    def finish(self, result: RunResult) -> dict[str, Any]:
        """Write ``results.json`` atomically (the run is then finished), remove the
        ``error.json`` of an earlier failure; returns the JSON written."""
        records.write_run_result(self.path, result)
        (self.path / ERROR_FILE).unlink(missing_ok=True)
        return result.to_json()
