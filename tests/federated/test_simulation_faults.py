"""``federated compare`` never reports a run of another config (issue #18, point 2)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from disparate.config import from_dict
from disparate.federated.simulation import compare_federated
from disparate.synthetic.reddit import default_population, tiny_config, write_dump


def test_compare_refuses_the_results_of_another_config(tmp_path: Path) -> None:
    suffix = ".zst" if importlib.util.find_spec("zstandard") else ".bz2"
    write_dump(tmp_path / "data" / f"RC_2017-11{suffix}", default_population(12, seed=1),
               seed=2)
    base = tiny_config(tmp_path / "data", rounds=2)
    variants = {"non-private": ["privacy.clipping=false", "privacy.noise=false",
                                "privacy.noise_multiplier=null"], "dp": []}
    cfg = from_dict({**base, "federated": {**base["federated"], "variants": variants}})
    out = tmp_path / "cmp"
    compare_federated(cfg, out)
    other = from_dict({**base, "training": {**base["training"], "lr": 0.5},
                       "federated": {**base["federated"], "rounds": 3, "variants": variants}})
    with pytest.raises(ValueError, match=r"seed-0/non-private holds the results of another "
                                         r"config \(config_hash \w+; this config hashes to"):
        compare_federated(other, out)
