"""One DP run across processes (and GPUs, and machines) on ``torch.distributed``.

The mechanism is the single-process one, exactly: every rank draws the same global batch
(the secret roots are rank 0's, shared), takes its contiguous shard (:func:`shard`) and clips
its own examples; the clipped sums are summed across ranks (:func:`all_reduce_sum`) with the
Gaussian noise added once, by rank 0, to its part before the sum (:func:`noise_std_here`:
one secret stream, never one draw per rank); every rank then divides by the same expected
global batch size and takes the same optimizer step. Rank 0 owns the run directory
(:func:`from_main`, through :class:`disparate.rundir.RunDir`): it alone reads and writes
files, and shares what it read. Without a process group (one process) every function here
is the identity.

``torchrun`` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT;
:func:`launched` reads them and starts the process group (gloo on CPUs, NCCL on GPUs).
A sweep (``compare``, ``study``) under torchrun runs on rank 0 inside :func:`lead`, and every
run it trains is sent (:func:`task`) to the other ranks, which :func:`follow` it: each run of
the sweep trains on all ranks. See ``docs/distributed.md``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "Launch",
    "all_reduce_sum",
    "check_launched",
    "follow",
    "from_main",
    "gather",
    "is_main",
    "launched",
    "lead",
    "main_first",
    "noise_std_here",
    "placement",
    "rank",
    "share",
    "shard",
    "task",
    "world_size",
]

T = TypeVar("T")

#: How long a collective waits for the other ranks before it fails (torch's own default).
DEFAULT_TIMEOUT_S = 1800.0

ERR_ENV = "environment variable {name}={value!r}: expected {expected}"
ERR_NOT_LAUNCHED = (
    "this process was started by torchrun (WORLD_SIZE={world}, RANK={rank}) but no process "
    "group is initialised: each process would train a whole run of its own. 'disparate run', "
    "'compare' and 'study' start the group themselves; in your own script, call "
    "torch.distributed.init_process_group() or use disparate.distributed.launched()"
)
ERR_NOT_LEADING = (
    "a sweep in a process group ({world} ranks) runs on rank 0 while the other ranks train "
    "each of its runs with it: call it inside disparate.sweep.run_led() (rank {rank} called "
    "it {where})"
)
ERR_DEVICE_INDEX = (
    "device={device!r} under torchrun ({world} processes): each rank trains on the GPU of its "
    "LOCAL_RANK; expected device='cuda' (choose the GPUs with CUDA_VISIBLE_DEVICES)"
)
ERR_TOO_FEW_GPUS = (
    "LOCAL_RANK={local_rank}: this machine has {count} CUDA device(s), 0..{last}; expected "
    "--nproc-per-node <= {count}"
)
ERR_DEVICE_TYPE = (
    "device={device!r}: a process group runs on 'cpu' (gloo) or 'cuda' (NCCL); expected one "
    "of those"
)
ERR_RANK_FAILED = "rank {rank} of {world} failed: {error}"
ERR_MAIN_FAILED = "rank 0 failed, so this rank stops too: {error}"


@dataclass(frozen=True, kw_only=True)
class Launch:
    """Where this process is in a torchrun launch: its global and local rank of ``world_size``."""

    rank: int
    world_size: int
    local_rank: int

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(ERR_ENV.format(name="WORLD_SIZE", value=str(self.world_size),
                                            expected="an integer >= 1"))
        if not 0 <= self.rank < self.world_size:
            raise ValueError(ERR_ENV.format(name="RANK", value=str(self.rank),
                                            expected=f"an integer in 0..{self.world_size - 1}"))
        if self.local_rank < 0:
            raise ValueError(ERR_ENV.format(name="LOCAL_RANK", value=str(self.local_rank),
                                            expected="an integer >= 0"))

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Launch | None:
        """The launch torchrun describes in ``env`` (default ``os.environ``); ``None`` when
        WORLD_SIZE is not set (a plain process)."""
        env = os.environ if env is None else env
        if "WORLD_SIZE" not in env:
            return None

        def integer(name: str, default: str | None = None) -> int:
            value = env.get(name, default)
            try:
                return int(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise ValueError(ERR_ENV.format(name=name, value=value,
                                                expected="an integer")) from None

        return cls(rank=integer("RANK"), world_size=integer("WORLD_SIZE"),
                   local_rank=integer("LOCAL_RANK", "0"))


def placement(device: str, launch: Launch, cuda_count: int) -> tuple[torch.device, str]:
    """This rank's device and the process group's backend for a run asked on ``device``, on a
    machine with ``cuda_count`` GPUs: ``cuda`` becomes ``cuda:LOCAL_RANK`` with NCCL, ``cpu``
    stays with gloo; a GPU index (every local rank would share it), too few GPUs for the
    local ranks and other device types are refused."""
    d = torch.device(device)
    if d.type == "cpu":
        return d, "gloo"
    if d.type != "cuda":
        raise ValueError(ERR_DEVICE_TYPE.format(device=device))
    if d.index is not None:
        raise ValueError(ERR_DEVICE_INDEX.format(device=device, world=launch.world_size))
    if launch.local_rank >= cuda_count:
        raise ValueError(ERR_TOO_FEW_GPUS.format(local_rank=launch.local_rank,
                                                 count=cuda_count, last=cuda_count - 1))
    return torch.device("cuda", launch.local_rank), "nccl"


def _initialised() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """The number of ranks of the process group; 1 without one."""
    return dist.get_world_size() if _initialised() else 1


def rank() -> int:
    """This process's rank in the process group; 0 without one."""
    return dist.get_rank() if _initialised() else 0


def is_main() -> bool:
    """True on rank 0 (and in a single process): the rank that owns the run directory."""
    return rank() == 0


def check_launched(env: Mapping[str, str] | None = None) -> None:
    """Refuse a torchrun process of a multi-process launch that has no process group."""
    launch = Launch.from_environment(env)
    if launch is not None and launch.world_size > 1 and not _initialised():
        raise ValueError(ERR_NOT_LAUNCHED.format(world=launch.world_size, rank=launch.rank))


@contextlib.contextmanager
def launched(device: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
             env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Under a multi-process torchrun launch: start the process group for ``device``'s
    backend, yield this rank's device (:func:`placement`: ``cuda`` becomes
    ``cuda:LOCAL_RANK``) and destroy the group at the end; an error is reported on stderr
    naming the rank, then raised. Otherwise (one process, or a group started by the caller):
    yield ``device`` as it is."""
    launch = Launch.from_environment(env)
    if launch is None or launch.world_size == 1 or _initialised():
        yield device
        return
    cuda = torch.device(device).type == "cuda"
    d, backend = placement(device, launch, torch.cuda.device_count() if cuda else 0)
    if cuda:
        torch.cuda.set_device(d)
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s),
                            device_id=d if cuda else None)
    try:
        yield str(d)
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        print(ERR_RANK_FAILED.format(rank=launch.rank, world=launch.world_size, error=error),
              file=sys.stderr, flush=True)
        raise
    finally:
        dist.destroy_process_group()


def share(value: T) -> T:
    """Rank 0's ``value`` on every rank (pickled; the secret roots travel this way)."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def from_main(func: Callable[[], T]) -> T:
    """``func()`` run on rank 0 alone, its value shared with every rank; if it raises, rank 0
    raises it and every other rank a RuntimeError quoting it (no rank is left waiting)."""
    if world_size() == 1:
        return func()
    value: Any = None
    failure: BaseException | None = None
    if is_main():
        try:
            value = func()
        except Exception as exc:
            failure = exc
    value, error = share((value, None if failure is None else f"{type(failure).__name__}: "
                          f"{failure}"))
    if failure is not None:
        raise failure
    if error is not None:
        raise RuntimeError(ERR_MAIN_FAILED.format(error=error))
    return value


def main_first(func: Callable[[], T]) -> T:
    """``func()`` on rank 0, then, once it returned, on every other rank (e.g. reading a
    dataset that rank 0 alone may download); if rank 0's call raises, every rank raises."""
    if world_size() == 1:
        return func()
    if is_main():
        try:
            value = func()
        except Exception as exc:
            share(f"{type(exc).__name__}: {exc}")
            raise
        share(None)
        return value
    error = share(None)
    if error is not None:
        raise RuntimeError(ERR_MAIN_FAILED.format(error=error))
    return func()


def gather(value: T) -> list[T]:
    """Every rank's ``value`` (pickled), in rank order, on every rank; ``[value]`` in one
    process."""
    if world_size() == 1:
        return [value]
    values: list[Any] = [None] * world_size()
    dist.all_gather_object(values, value)
    return values


_STOP, _ERROR, _TASK = "stop", "error", "task"
#: Rank 0's state in :func:`lead`: ``"leading"`` while the ranks are in step, ``"task"`` once a
#: task began and until it returned (the other ranks may then be anywhere in it).
_lead: list[str] = []


@contextlib.contextmanager
def lead() -> Iterator[None]:
    """Rank 0's side of a sweep while the other ranks :func:`follow`: inside, :func:`task`
    sends them work; at the end they are stopped, with rank 0's error if it raised between
    two tasks (one raised in a task ends the launch: torchrun stops the other ranks, which
    may be waiting in any of the task's collectives). A no-op in one process."""
    if world_size() == 1:
        yield
        return
    _lead.append("leading")
    try:
        yield
    except Exception as exc:
        if _lead[-1] == "leading":
            share((_ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    else:
        share((_STOP, None))
    finally:
        _lead.pop()


@contextlib.contextmanager
def task(payload: Any) -> Iterator[None]:
    """On rank 0 in :func:`lead`: send ``payload`` to the ranks that :func:`follow`, whose
    handler runs alongside the body (one training run on every rank). A no-op in one
    process; elsewhere (no :func:`lead`, or a rank > 0) an error."""
    if world_size() == 1:
        yield
        return
    if not is_main() or not _lead:
        raise RuntimeError(ERR_NOT_LEADING.format(
            world=world_size(), rank=rank(), where="outside lead()" if is_main() else
            "itself instead of following rank 0"))
    share((_TASK, payload))
    _lead[-1] = "task"
    yield
    _lead[-1] = "leading"


def follow(handle: Callable[[Any], None]) -> None:
    """On a rank > 0: ``handle(payload)`` for every :func:`task` of rank 0, until rank 0
    leaves :func:`lead`; its error there is raised here as a RuntimeError quoting it."""
    while True:
        kind, payload = share(None)
        if kind == _STOP:
            return
        if kind == _ERROR:
            raise RuntimeError(ERR_MAIN_FAILED.format(error=payload))
        handle(payload)


def shard(*tensors: Tensor) -> tuple[Tensor, ...]:
    """This rank's contiguous part of each tensor of a global batch (batch dimension first);
    the parts of all ranks, in rank order, are the batch."""
    if world_size() == 1:
        return tensors
    return tuple(t.tensor_split(world_size())[rank()] for t in tensors)


def noise_std_here(std: float) -> float:
    """The noise this rank adds to its part of the sum: all of it on rank 0, none elsewhere,
    so that the global sum carries N(0, std^2) once."""
    return std if is_main() else 0.0


def all_reduce_sum(tensors: Sequence[Tensor]) -> None:
    """Replace each tensor by its sum over the ranks, in place (one collective per dtype)."""
    if world_size() == 1 or not tensors:
        return
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        for t, part in zip(group, flat.split([t.numel() for t in group]), strict=True):
            t.copy_(part.view_as(t))
