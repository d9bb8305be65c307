"""The in-process engine end to end on a tiny synthetic dump: files, resume, CLI (comparisons:
``test_comparison.py``)."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from disparate import cli
from disparate.config import from_dict
from disparate.federated.simulation import (
    InProcessExecutor,
    load_federated_data,
    train_federated,
)
from disparate.results import read_metrics
from disparate.synthetic.reddit import default_population, tiny_config, write_dump

# Runs compared bit for bit (resume, order, engines): noise from the recorded seed.
REPRODUCIBLE = {"privacy": {"reproducible_noise": True}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fl-data")
    suffix = ".zst" if importlib.util.find_spec("zstandard") else ".bz2"
    write_dump(directory / f"RC_2017-11{suffix}", default_population(12, seed=1), seed=2)
    config = from_dict(tiny_config(directory, extra=REPRODUCIBLE))
    return config, load_federated_data(config)


def global_model(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["global"]


def test_run_writes_every_file(tiny, tmp_path: Path) -> None:
    config, data = tiny
    run = train_federated(config, tmp_path / "run", data=data)
    out = run.run_dir
    for name in ("config.yaml", "metrics.jsonl", "checkpoint.pt", "results.json",
                 "participants.csv", "predictions.json"):
        assert (out / name).is_file(), name
    metrics = read_metrics(out)
    assert [m["round"] for m in metrics] == [1, 2, 3]
    assert all(m["test_accuracy"] is not None and m["epsilon"] > 0 for m in metrics)
    assert metrics[-1]["epsilon"] > metrics[0]["epsilon"]
    r = json.loads((out / "results.json").read_text())
    assert r["kind"] == "federated" and r["mode"] == "dp" and r["engine"] == "simulation"
    assert r["participants"] == data.num_participants == 12
    assert [g["group"] for g in r["groups"]] == ["0-9", "10-39", "40+"]
    assert sum(g["participants"] for g in r["groups"]) == 12
    p = r["privacy"]
    assert p["level"] == "participant" and p["participants_per_round"] == 4
    assert p["noise_std_average"] == pytest.approx(2.0 * 0.5 / 4)
    assert "participant level" in p["statement"]
    assert set(p["epsilon"]) == {"rdp", "rdp_classic", "pld"}
    # the settings actually used, as a centralised run's, and the per-round mark (issue #11)
    s = r["settings"]
    assert (s["rounds"], s["participants_per_round"], s["local_epochs"]) == (
        3, 4, config.training.epochs)
    assert s["lr"] == config.training.lr and s["sampling"] == config.privacy.sampling
    assert all(m["epsilon_approximate"] is (config.privacy.sampling != "poisson")
               for m in metrics)
    assert r["output_diversity"]["distinct_predicted"] >= 1
    rows = list(csv.DictReader((out / "participants.csv").open()))
    assert len(rows) == 12 and {"vocab_size", "bucket", "accuracy"} <= set(rows[0])
    with pytest.raises(ValueError, match="already holds a run"):
        train_federated(config, out, data=data)


class Interrupt(Exception):
    pass


def test_resume_repeats_the_uninterrupted_run(tiny, tmp_path: Path) -> None:
    config, data = tiny
    full = train_federated(config, tmp_path / "full", data=data)

    class Breaking(InProcessExecutor):
        def run_round(self, round_index, *args):
            if round_index == 3:
                raise Interrupt
            super().run_round(round_index, *args)

    def factory(cfg, d, settings, device="cpu"):
        return Breaking(cfg, d, settings, device=device)

    with pytest.raises(Interrupt):
        train_federated(config, tmp_path / "resumed", data=data, executor=factory)
    assert len(read_metrics(tmp_path / "resumed")) == 2
    resumed = train_federated(config, tmp_path / "resumed", data=data, resume=True)
    a, b = global_model(full.run_dir), global_model(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.results["overall_accuracy"] == full.results["overall_accuracy"]
    assert [m["round"] for m in resumed.metrics] == [1, 2, 3]


def test_order_of_participants_does_not_matter(tiny, tmp_path: Path) -> None:
    config, data = tiny
    normal = train_federated(config, tmp_path / "a", data=data)

    class Reversed(InProcessExecutor):
        def run_round(self, round_index, participants, *args):
            super().run_round(round_index, list(reversed(participants)), *args)

    rev = train_federated(config, tmp_path / "b", data=data,
                          executor=lambda c, d, s, device="cpu": Reversed(c, d, s))
    a, b = global_model(normal.run_dir), global_model(rev.run_dir)
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)


def test_cli(tiny, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config, _ = tiny
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(config.data.data_dir, rounds=1)))
    assert cli.main(["federated", "run", str(path), "--out", str(tmp_path / "r"),
                     "--quiet", "--no-progress"]) == 0
    assert "participant level" in capsys.readouterr().out
    assert cli.main(["federated", "epsilon", "reddit-fl", "--participants", "80000"]) == 0
    text = capsys.readouterr().out
    assert "WARNING" in text and "z=0.01" in text and "pld" in text
    assert cli.main(["federated", "run", "mnist-underrep", "--out", str(tmp_path / "x")]) == 2
    assert "not a federated experiment" in capsys.readouterr().err
    dump = tmp_path / "sample" / "RC_2017-11.xz"
    assert cli.main(["federated", "sample-dump", str(dump), "--authors", "3", "--posts", "2",
                     "3"]) == 0
    assert dump.is_file()


def test_dp_fedavg_samples_participants_and_noise_from_a_secret_by_default(
        tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from disparate import randomness
    from disparate.config import apply_overrides

    config, data = tiny
    secret = apply_overrides(config, ["privacy.reproducible_noise=false"])
    a = train_federated(secret, tmp_path / "a", data=data)
    b = train_federated(secret, tmp_path / "b", data=data)
    ga, gb = global_model(a.run_dir), global_model(b.run_dir)
    assert any(not torch.equal(ga[k], gb[k]) for k in ga)  # same seed, other noise
    saved = torch.load(a.run_dir / "checkpoint.pt", weights_only=True)["secret"]
    released = "".join(p.read_text(encoding="utf-8") for p in a.run_dir.iterdir()
                       if p.is_file() and p.name != "checkpoint.pt")
    assert saved not in released and str(int(saved, 16)) not in released
    p = a.results["privacy"]
    assert p["noise_seeding"] == "secret" and "entropy: secret" in p["statement"]
    assert "participants.csv" in p["statement"]  # listed as not covered
    reproducible = train_federated(config, tmp_path / "r", data=data).results["privacy"]
    assert "reproducible, not private against anyone who has it" in reproducible["statement"]

    # Resume in secret mode: the checkpoint's secret, not a fresh one, continues the run.
    draws = iter([5 << 90, 5 << 90, 6 << 90])
    monkeypatch.setattr(randomness, "new_secret", lambda: next(draws))
    full = train_federated(secret, tmp_path / "full", data=data)

    class Breaking(InProcessExecutor):
        def run_round(self, round_index, *args):
            if round_index == 3:
                raise Interrupt
            super().run_round(round_index, *args)

    with pytest.raises(Interrupt):
        train_federated(secret, tmp_path / "cut", data=data,
                        executor=lambda c, d, s, device="cpu": Breaking(c, d, s))
    resumed = train_federated(secret, tmp_path / "cut", data=data, resume=True)
    gf, gr = global_model(full.run_dir), global_model(resumed.run_dir)
    assert all(torch.equal(gf[k], gr[k]) for k in gf)
