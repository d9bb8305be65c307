"""Gaussian noise for DP-SGD, from a generator of its own (separate from data order).

On the CPU a tensor of more than :data:`PARALLEL_MIN` coordinates is noised in parallel: its
noise is cut into blocks of :data:`NOISE_BLOCK` coordinates, each drawn by a Mersenne Twister
of its own whose whole state comes from a key drawn from the caller's generator, on
``torch.get_num_threads()`` threads, and added to its block of the result. A block depends
only on the key and its index, so a seed gives the same noise bit for bit whatever the thread
count; the calling thread draws blocks too, so a helper slow to start costs at most the block it
took. Below that size the draw is no faster in parallel (measured in a training step on 2
cores: helpers wake late, share a core with a spinning OpenMP worker, and each block's
generator costs setting up), so smaller tensors, and other devices (already parallel there),
draw with ``torch.randn`` on the caller's generator. :func:`gaussian_noise_` writes the same
numbers into a tensor instead of adding them (into a gradient buffer that the sum is then
added into: one buffer fewer than adding the noise to the sum).
"""

from __future__ import annotations

import functools
import os
import queue
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

from disparate.randomness import MT_WORDS, mt_generator, secret_generator

__all__ = ["NOISE_BLOCK", "PARALLEL_MIN", "add_gaussian_noise", "gaussian_noise_",
           "make_generator", "parameter_noise"]

#: Coordinates per independently seeded block of a CPU draw.
NOISE_BLOCK = 1 << 17
#: A CPU tensor of more coordinates than this is drawn in blocks, in parallel.
PARALLEL_MIN = 1 << 21
_KEY_WORDS = 4  # 62-bit words of the per-call key drawn from the caller's generator


def _mt_states(entropy: list[int], count: int) -> np.ndarray:
    """``count`` Mersenne Twister states, (count, 624) uint32, from ``entropy``."""
    bits = np.random.PCG64(np.random.SeedSequence(entropy))
    return np.random.Generator(bits).integers(0, 1 << 32, size=(count, MT_WORDS), dtype=np.uint32)


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device``, used for noise only: ``torch.manual_seed(seed)``
    (reproducible; on the CPU only 32 bits of ``seed`` count), or, ``seed=None``, one from a
    fresh secret of the OS with all its entropy (:func:`~disparate.randomness.secret_generator`)."""
    if seed is None:
        return secret_generator(device)
    return torch.Generator(device=device).manual_seed(seed)


@functools.cache
def _pool(helpers: int, pid: int) -> ThreadPoolExecutor:
    """A pool of this process (``pid``: a forked child does not inherit the threads)."""
    return ThreadPoolExecutor(max_workers=helpers, thread_name_prefix="disparate-noise")


def _noisy_cpu(tensor: Tensor, std: float, generator: torch.Generator, *, add: bool = True
               ) -> Tensor:
    """``tensor += N(0, std^2)`` (``add``; else ``tensor = N(0, std^2)``), block by block in
    parallel (one block of noise per thread at a time: no tensor-sized buffer)."""
    key = torch.randint(1 << 62, (_KEY_WORDS,), generator=generator).tolist()
    flat = tensor.view(-1)
    n = flat.numel()
    blocks = max(1, -(-n // NOISE_BLOCK))
    states = _mt_states(key, blocks)

    def fill(k: int) -> None:
        part = flat[k * NOISE_BLOCK:(k + 1) * NOISE_BLOCK]
        noise = torch.empty_like(part) if add else part
        noise.normal_(0.0, std, generator=mt_generator(states[k]))
        if add:
            part.add_(noise)

    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for k in range(blocks):
        todo.put(k)

    def drain() -> None:
        while True:
            try:
                k = todo.get_nowait()
            except queue.Empty:
                return
            fill(k)

    # every thread, the caller's included, takes blocks until none is left (the draw
    # releases the GIL)
    helpers = min(blocks, torch.get_num_threads()) - 1
    running = [_pool(helpers, os.getpid()).submit(drain) for _ in range(helpers)]
    drain()
    for helper in running:
        helper.result()
    return tensor


def _parallel(numel: int, device: torch.device, generator: torch.Generator) -> bool:
    return numel > PARALLEL_MIN and device.type == generator.device.type == "cpu"


def add_gaussian_noise(tensor: Tensor, std: float, generator: torch.Generator, *,
                       inplace: bool = False) -> Tensor:
    """Return ``tensor + N(0, std^2)`` per coordinate; ``std = 0`` returns it unchanged.

    ``inplace``: add into ``tensor`` (one the caller owns) instead of a new tensor; the same
    numbers, bit for bit, without a second tensor of its size."""
    if std < 0:
        raise ValueError(f"std={std!r}: expected >= 0")
    if std == 0:
        return tensor
    if _parallel(tensor.numel(), tensor.device, generator):
        if inplace and tensor.is_contiguous():
            return _noisy_cpu(tensor, std, generator)
        noisy = _noisy_cpu(tensor.clone(memory_format=torch.contiguous_format), std, generator)
        return tensor.copy_(noisy) if inplace else noisy
    noise = torch.randn(tensor.shape, generator=generator, device=tensor.device, dtype=tensor.dtype)
    if inplace:
        return tensor.add_(noise, alpha=std)
    return torch.add(tensor, noise, alpha=std)


def gaussian_noise_(tensor: Tensor, std: float, generator: torch.Generator) -> Tensor:
    """Overwrite ``tensor`` (contiguous) with N(0, std^2) per coordinate, ``std > 0``: the
    noise :func:`add_gaussian_noise` adds, the same draws of ``generator`` (the same numbers,
    bit for bit, from 16 coordinates on; below, up to the rounding of the scaling by std)."""
    if not std > 0:
        raise ValueError(f"std={std!r}: expected > 0")
    if not tensor.is_contiguous():
        raise ValueError(f"tensor of strides {tensor.stride()}: expected a contiguous tensor")
    if _parallel(tensor.numel(), tensor.device, generator):
        return _noisy_cpu(tensor, std, generator, add=False)
    return tensor.normal_(0.0, std, generator=generator)


def parameter_noise(params: Sequence[Tensor], std: float, generator: torch.Generator
                    ) -> Iterator[Tensor]:
    """N(0, std^2) for every coordinate of ``params`` (``std > 0``), in order: one contiguous
    tensor of each parameter's shape. Parameters of one dtype on the CPU with more than
    :data:`PARALLEL_MIN` coordinates in all are drawn at once, in parallel, as views of one
    buffer; others one at a time, each when it is asked for (memory can be freed between)."""
    sizes = [p.numel() for p in params]
    kinds = {(p.device, p.dtype) for p in params}
    if len(kinds) == 1 and _parallel(sum(sizes), params[0].device, generator):
        flat = gaussian_noise_(params[0].new_empty(sum(sizes)), std, generator)
        for param, part in zip(params, flat.split(sizes), strict=True):
            yield part.view(param.shape)
        return
    for param in params:
        yield gaussian_noise_(torch.empty_like(param, memory_format=torch.contiguous_format),
                              std, generator)
