"""Test-session settings that must be in place before torch is imported."""

import os

# OpenMP threads that spin while idle make small ops on a busy 2-core machine up to ~50x
# slower; passive waiting costs nothing measurable when the machine is idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
