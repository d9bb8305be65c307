"""The Flower ServerApp/ClientApp pair gives the same model as the in-process simulation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("flwr", reason="Flower is an optional extra: pip install 'disparate[flower]'")
flower_app = pytest.importorskip(
    "disparate.federated.flower_app", reason="the Flower engine needs flwr >= 1.21",
    exc_type=ImportError)

from disparate.config import from_dict  # noqa: E402
from disparate.federated.simulation import load_federated_data, train_federated  # noqa: E402
from disparate.synthetic.reddit import (  # noqa: E402
    default_population,
    tiny_config,
    write_dump,
)

# Runs compared bit for bit (resume, order, engines): noise from the recorded seed.
REPRODUCIBLE = {"privacy": {"reproducible_noise": True}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fl-flower")
    write_dump(directory / "RC_2017-11.bz2", default_population(12, seed=1), seed=2)
    config = from_dict(tiny_config(directory, rounds=2, extra=REPRODUCIBLE))
    data = load_federated_data(config)
    reference = train_federated(config, directory / "simulation", data=data)
    return config, data, reference


def global_model(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["global"]


def assert_same_model(a: Path, b: Path) -> None:
    ga, gb = global_model(a), global_model(b)
    assert list(ga) == list(gb)
    for name in ga:
        assert torch.equal(ga[name], gb[name]), name


@pytest.mark.parametrize("num_nodes,max_in_flight", [(3, None), (2, 1)])
def test_flower_run_equals_in_process_run(tiny, tmp_path: Path, num_nodes: int,
                                          max_in_flight: int | None) -> None:
    config, data, reference = tiny
    grid = flower_app.InProcessGrid(flower_app.client_app, num_nodes, data=data,
                                    config=config)
    run = flower_app.run_in_process(config, tmp_path / "flower", data=data, grid=grid,
                                    max_in_flight=max_in_flight)
    assert_same_model(reference.run_dir, run.run_dir)
    assert run.results["engine"] == "flower"
    for key in ("overall_accuracy", "mean_participant_accuracy", "groups"):
        assert run.results[key] == reference.results[key]
    assert (tmp_path / "flower" / "participants.csv").read_text() == (
        reference.run_dir / "participants.csv").read_text()
    nodes = {node for node, _ in grid.delivered}
    assert nodes == set(range(1, num_nodes + 1))  # participants spread over the nodes


def test_messages_carry_distinct_parameters(tiny) -> None:
    config, data, _ = tiny
    from disparate.federated.dpfedavg import initial_parameters
    from disparate.federated.simulation import build_global_model

    params = initial_parameters(build_global_model(config, data.num_tokens))
    record = flower_app.to_record(params)
    assert "decoder.weight" not in record and "encoder.weight" in record
    back = flower_app.from_record(record)
    assert all(torch.equal(back[n], params[n]) for n in params)


def test_flwr_run_entry_point_reads_the_run_config(tiny, tmp_path: Path) -> None:
    """The module-level ``server_app`` (for ``flwr run``) takes the experiment from the run
    config and gives the same model."""
    import yaml
    from flwr.app import Context, RecordDict

    config, data, reference = tiny
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(config.data.data_dir, rounds=2,
                                               extra=REPRODUCIBLE)))
    grid = flower_app.InProcessGrid(flower_app.client_app, 2, data=data, config=config)
    run_config = {"experiment": str(path), "overrides": "", "out-dir": str(tmp_path / "r")}
    with flower_app.server_identity():
        flower_app.server_app(grid, Context(0, 0, {}, RecordDict(), run_config))
    assert_same_model(reference.run_dir, tmp_path / "r")


@pytest.mark.skipif(not os.environ.get("DISPARATE_TEST_RAY"),
                    reason="starts Ray (about 30 s); set DISPARATE_TEST_RAY=1 to run")
def test_flower_simulation_runtime_with_ray(tiny, tmp_path: Path) -> None:
    config, _, reference = tiny
    flower_app.run_flower(config, tmp_path / "ray", supernodes=2)
    assert_same_model(reference.run_dir, tmp_path / "ray")
