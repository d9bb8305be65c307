"""Safe files for run directories: atomic writes and the lock a run holds on its directory.

- :func:`atomic_write` (and :func:`write_text`): the content goes to a *unique* temporary file
  in the target's directory (``tempfile.mkstemp``: ``O_CREAT | O_EXCL``, so a planted file or
  symlink is never followed or overwritten), is flushed and fsynced, then renamed over the
  target with ``os.replace``. Readers see the old file or the new one, never a torn mix, and
  two writers of one path cannot tear each other's temporary file.
- :func:`run_dir_lock`: an exclusive OS lock on ``RUN_DIR/.lock`` for the life of a run,
  released by the OS however the holder exits (SIGKILL included). A second process is
  refused at once with :class:`RunDirBusyError`; within one process the lock is re-entrant
  (a study point holds it and calls :func:`disparate.training.train`, which takes it again).
- :func:`read_jsonl`: the one reader of JSON-lines files (``metrics.jsonl``), with one rule
  for a truncated last line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

__all__ = [
    "LOCK_FILE",
    "CorruptFileError",
    "RunDirBusyError",
    "atomic_write",
    "load_torch",
    "read_jsonl",
    "relative_path",
    "run_dir_lock",
    "write_text",
]

LOCK_FILE = ".lock"

ERR_BUSY = (
    "{path} is in use by another run ({holder}; lock file {lock}): two runs on one directory "
    "would mix their files. Wait for it to finish, or choose another --out"
)
ERR_WRITE = "{path}: cannot write ({reason}){hint}"
ERR_BAD_LINE = (
    "{path}: line {line} is not a JSON object ({error}); the file is corrupt: delete it (or "
    "its run directory) and run again"
)

F = TypeVar("F", bound=Callable[..., Any])


class RunDirBusyError(RuntimeError):
    """Another process holds the lock of a run directory."""


class CorruptFileError(ValueError):
    """An input file that is truncated or corrupt; the message names it and the fix."""


# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------


def relative_path(path: str | Path, start: str | Path) -> str:
    """``path`` relative to ``start`` (with ``..`` where needed), for links in reports."""
    try:
        return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return str(Path(path).resolve())


def _write_error(path: Path, exc: BaseException) -> OSError:
    """An OSError naming ``path`` (and the fix for a full disk or a read-only directory)."""
    err = exc.errno if isinstance(exc, OSError) else None
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if err is None and "unexpected pos" in str(exc):  # torch.save's text for a short write
        err, reason = errno.ENOSPC, "the write stopped short: is the disk full?"
    hint = {errno.ENOSPC: "; free some space and run it again (with --resume)",
            errno.EACCES: "; make the directory writable or choose another --out",
            errno.EROFS: "; the file system is read-only: choose another --out"}.get(err, "")
    return OSError(err or errno.EIO, ERR_WRITE.format(path=path, reason=reason, hint=hint))


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a unique temporary file beside ``path`` for writing (``"w"`` text UTF-8, ``"wb"``
    bytes); on success it is fsynced and renamed to ``path``, on error removed.

    Errors of the write (disk full, permissions, read-only file system) are raised as one
    ``OSError`` that names ``path``.
    """
    path = Path(path)
    if mode not in ("w", "wb"):
        raise ValueError(f"mode={mode!r}: expected 'w' or 'wb'")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                        suffix=".tmp")
    except OSError as exc:
        raise _write_error(path, exc) from exc
    tmp = Path(tmp_name)
    try:
        kwargs: dict[str, Any] = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide results from a group of users
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) or "unexpected pos" in str(exc):
            raise _write_error(path, exc) from exc
        raise


def load_torch(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a truncated or corrupt file raises
    :class:`CorruptFileError` naming it and saying to delete it."""
    import pickle

    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno not in (None, errno.EINVAL):
            raise  # permissions and the like, not a corrupt file
        raise CorruptFileError(
            f"{path}: cannot be read ({' '.join(str(exc).split())[:200]}); it is truncated or "
            "corrupt: delete it to start the run again from the beginning") from None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, one per line (``[]`` if the file is missing).

    Blank lines are skipped. The last line is appended last, so a process killed while
    writing it leaves it cut short: a last line that does not parse is skipped. A bad line
    before the last (or text that is not UTF-8) raises :class:`CorruptFileError` naming the
    file and the line.
    """
    path = Path(path)
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise CorruptFileError(ERR_BAD_LINE.format(path=path, line="?", error=exc)) from None
    while lines and not lines[-1].strip():
        lines.pop()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"got {type(record).__name__}")
        except ValueError as exc:
            if number == len(lines):
                break
            raise CorruptFileError(ERR_BAD_LINE.format(path=path, line=number,
                                                       error=exc)) from None
        records.append(record)
    return records


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write`."""
    with atomic_write(path) as f:
        f.write(text)
    return Path(path)


# --------------------------------------------------------------------------------------------
# The run-directory lock
# --------------------------------------------------------------------------------------------

_held: dict[Path, int] = {}  # run directories this process holds, with their depth
_held_guard = threading.Lock()


def _holder(lock: Path) -> str:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = lock.read_text(encoding="utf-8").split()
        if len(text) == 2:
            return f"pid {text[1]} on {text[0]}"
    return "another process"


@contextlib.contextmanager
def run_dir_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold the exclusive lock of ``run_dir`` (created if needed); yields its Path.

    Raises :class:`RunDirBusyError` at once if another process holds it. Where ``fcntl``
    does not exist (Windows), no lock is taken.
    """
    run_dir = Path(run_dir)
    key = run_dir.resolve()
    with _held_guard:
        if key in _held:
            _held[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield run_dir
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield run_dir
        return
    lock = run_dir / LOCK_FILE
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        raise NotADirectoryError(errno.ENOTDIR, f"{run_dir}: exists and is not a directory; "
                                 "choose another --out") from None
    except OSError as exc:
        raise _write_error(lock, exc) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RunDirBusyError(ERR_BUSY.format(path=run_dir, holder=_holder(lock),
                                                  lock=lock)) from None
        with _held_guard:
            _held[key] = 1
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
            yield run_dir
        finally:
            with _held_guard:
                del _held[key]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
