"""Test-session settings that must be in place before torch is imported."""

import os

# OpenMP threads that spin while idle make small ops on a busy 2-core machine up to ~50x
# slower; passive waiting costs nothing measurable when the machine is idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


import pytest  # noqa: E402  (after the environment is set)
import torch  # noqa: E402


@pytest.fixture
def one_thread():
    """One torch thread (a 2-thread pool on a busy 2-core machine times the scheduler);
    the previous setting is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
