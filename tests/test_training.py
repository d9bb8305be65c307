"""Tests of the one training loop: every shipped preset smoke-runs on tiny data in its real
format, the files of docs/results-format.md are written, and a resumed run equals an
uninterrupted one exactly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from disparate import randomness, training
from disparate import results as res
from disparate.config import list_presets, load_experiment
from disparate.data import write_idx
from disparate.metrics import Predictions

# Tiny, fast settings on top of digits-underrep (class 8 reduced to 10, N = 1,145).
TINY = ["data.subsample=150", "training.batch_size=30", "training.epochs=2",
        "training.num_threads=1", "evaluation.min_group_test_size=20"]

METRIC_KEYS = {"epoch", "steps", "examples", "train_loss", "train_accuracy", "test_loss",
               "test_accuracy", "group_accuracy", "group_grad_norm", "group_clipped_fraction",
               "group_nonfinite", "epsilon", "epsilon_approximate", "elapsed_s"}


def without_timings(results: dict) -> dict:
    """results.json without what is measured rather than computed: the run's seconds and
    the self-check's record (a resumed process checks its own first batch) but its outcome."""
    out = {k: v for k, v in results.items() if k != "wall_time_s"}
    if out.get("self_check"):
        out["self_check"] = {"passed": out["self_check"]["passed"]}
    return out


def tiny(*extra: str):
    return load_experiment("digits-underrep", [*TINY, *extra])


def write_tiny_mnist(directory: Path, *, per_class_train: int = 6, per_class_test: int = 3
                     ) -> Path:
    """MNIST IDX files (gzip, as distributed) with a few random images per class."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, per_class in (("train", per_class_train), ("t10k", per_class_test)):
        labels = np.repeat(np.arange(10, dtype=np.uint8), per_class)
        images = rng.integers(0, 256, size=(labels.size, 28, 28), dtype=np.uint8)
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return directory


# ------------------------------------------------------------------------------ presets

#: Datasets whose presets need generated files of their own format; their smoke tests
#: (tiny files in the real format, end to end) live next to the dataset's tests.
SMOKE_TESTED_ELSEWHERE = {
    "faces": "presets/test_faces.py",
    "tweets": "presets/test_tweets.py",
    "inaturalist": "presets/test_inaturalist.py",
}

def _tiny_overrides(name: str, tmp_path: Path) -> list[str]:
    """Overrides that keep a preset's experiment but make it a few steps on tiny data."""
    config = load_experiment(name)
    if getattr(config, "federated", None) is not None:
        pytest.skip("a federated experiment: trained and smoke-tested by disparate.federated")
    dataset = config.data.dataset
    common = ["training.epochs=1", "training.eval_batch_size=256", "training.num_threads=1"]
    if dataset == "digits":
        return [*common, "data.subsample=60", "training.batch_size=20"]
    if dataset in ("mnist", "fashion-mnist"):
        data_dir = write_tiny_mnist(tmp_path / "mnist")
        return [*common, f"data.data_dir={data_dir}", "data.download=false",
                "data.reduce={8: 2}", "training.batch_size=16"]
    if dataset in SMOKE_TESTED_ELSEWHERE:
        where = Path(__file__).resolve().parent / SMOKE_TESTED_ELSEWHERE[dataset]
        assert where.is_file(), f"{where} (the smoke test of the {dataset} presets) is missing"
        pytest.skip(f"the {dataset} presets are smoke-run on generated files in {where.name}")
    raise AssertionError(f"preset {name!r}: no tiny-data recipe for dataset {dataset!r}; "
                         "add one here so that every shipped preset is exercised")


@pytest.mark.parametrize("name", list_presets())
def test_every_shipped_preset_trains_on_tiny_data(name: str, tmp_path: Path) -> None:
    cfg = load_experiment(name, _tiny_overrides(name, tmp_path))
    out = training.train(cfg, tmp_path / "run", progress=False)
    for fname in ("config.yaml", "metrics.jsonl", "results.json", "checkpoint.pt"):
        assert (tmp_path / "run" / fname).is_file(), fname
    r = out.results
    assert r["experiment"] == name and r["mode"] == cfg.privacy.mode == "dp"
    assert r["privacy"]["is_private"] and r["privacy"]["epsilon"]["rdp"]["epsilon"] > 0
    assert 0.0 <= r["overall_accuracy"] <= 1.0
    assert [g["group"] for g in r["groups"]] == [str(i) for i in range(10)]
    reloaded = load_experiment(str(tmp_path / "run" / "config.yaml"))
    assert reloaded == cfg


def test_mnist_group_sizes_after_imbalance_are_recorded(tmp_path: Path) -> None:
    data_dir = write_tiny_mnist(tmp_path / "mnist", per_class_train=6, per_class_test=3)
    cfg = load_experiment("mnist-underrep", [
        f"data.data_dir={data_dir}", "data.download=false", "data.reduce={8: 2}",
        "training.batch_size=16", "training.epochs=1", "training.num_threads=1"])
    r = training.train(cfg, tmp_path / "run", progress=False).results
    groups = {g["group"]: g for g in r["groups"]}
    assert groups["8"]["train_size"] == 2 and groups["2"]["train_size"] == 6
    assert all(g["test_size"] == 3 for g in groups.values())  # the test set keeps all
    assert r["train_size"] == 9 * 6 + 2 and r["test_size"] == 30
    assert r["privacy"]["epsilon"]["rdp"]["dataset_size"] == 56  # epsilon uses the real N


# ------------------------------------------------------------------------------ files

def test_digits_sizes_metrics_and_epsilon(tmp_path: Path) -> None:
    cfg = load_experiment("digits-underrep", [
        "training.epochs=2", "training.batch_size=200", "training.num_threads=1"])
    out = training.train(cfg, tmp_path, progress=False)
    r = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert r == json.loads(json.dumps(out.results))
    groups = {g["group"]: g for g in r["groups"]}
    assert groups["8"]["train_size"] == 10 and groups["8"]["test_size"] == 52
    assert sum(g["train_size"] for g in r["groups"]) == r["train_size"] == 1145
    assert r["test_size"] == 540 and r["epochs"] == 2 and r["steps"] == 2 * 6
    assert groups["8"]["highlight"] and groups["2"]["highlight"] and not groups["0"]["highlight"]

    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2] and [m["steps"] for m in lines] == [6, 12]
    for m in lines:
        assert set(m) == METRIC_KEYS
        assert set(m["group_accuracy"]) == set(m["group_grad_norm"]) == {str(i) for i in range(10)}
        assert all(0.0 <= v <= 1.0 for v in m["group_clipped_fraction"].values())
        assert all(v > 0 for v in m["group_grad_norm"].values())
    assert 0 < lines[0]["epsilon"] < lines[1]["epsilon"]
    p = r["privacy"]
    assert lines[1]["epsilon"] == pytest.approx(p["epsilon"]["rdp"]["epsilon"])
    assert set(p["epsilon"]) == {"rdp", "rdp_classic", "pld"}
    assert p["epsilon"]["pld"]["epsilon"] < p["epsilon"]["rdp"]["epsilon"]
    assert p["epsilon"]["rdp"]["epsilon"] < p["epsilon"]["rdp_classic"]["epsilon"]
    assert (p["accountant"], p["delta"], p["sampling"]) == ("rdp", 1e-5, "poisson")
    assert p["noise_multiplier"] == 2.65 and p["max_grad_norm"] == 1.0
    assert "-DP for 12 steps" in p["statement"] and "conversion:" in p["statement"]
    assert r["overall_accuracy"] == lines[-1]["test_accuracy"]
    assert groups["8"]["accuracy"] == lines[-1]["group_accuracy"]["8"]

    # predictions.npz: one row per test example; the metrics of results.json come from it
    pred = Predictions.load(tmp_path)
    assert len(pred.labels) == 540 and pred.group_names == tuple(str(i) for i in range(10))
    acc8 = float(np.mean(pred.predictions[pred.groups == 8] == pred.labels[pred.groups == 8]))
    assert r["group_metrics"]["by_group"]["8"]["accuracy"] == groups["8"]["accuracy"] == acc8
    assert r["group_metrics"]["by_group"]["8"]["size"] == 52
    assert r["group_metrics"]["overall"]["loss"] == pytest.approx(r["test_loss"])
    env = r["environment"]
    assert env["device"] == "cpu" and env["packages"]["torch"] == torch.__version__.split("+")[0]


@pytest.mark.parametrize("mode", ["non-private", "clip-only", "noise-only"])
def test_runs_that_are_not_private_report_no_epsilon(mode: str, tmp_path: Path) -> None:
    cfg = tiny().with_mode(mode)
    r = training.train(cfg, tmp_path, progress=False).results
    p = r["privacy"]
    assert r["mode"] == mode and p["is_private"] is False and p["epsilon"] is None
    assert p["statement"].startswith("not differentially private")
    assert all(m["epsilon"] is None for m in res.read_metrics(tmp_path))
    clipped = res.read_metrics(tmp_path)[-1]["group_clipped_fraction"]
    if mode == "clip-only":
        assert p["max_grad_norm"] == 1.0 and any(v > 0 for v in clipped.values() if v)
    else:
        assert all(v in (0.0, None) for v in clipped.values())
    if mode == "noise-only":
        assert p["noise_std"] == pytest.approx(2.65)  # z*S of the DP config, kept by with_mode


def test_target_epsilon_calibrates_and_records_z(tmp_path: Path) -> None:
    # q = 10/150: the accountant is fast at small sampling rates.
    cfg = tiny("privacy.noise_multiplier=null", "privacy.target_epsilon=3.0",
               "training.batch_size=10", "training.epochs=1")
    r = training.train(cfg, tmp_path, progress=False).results
    p = r["privacy"]
    assert p["calibration"]["target_epsilon"] == 3.0 and p["calibration"]["method"] == "rdp"
    z = p["noise_multiplier"]
    assert z == p["calibration"]["noise_multiplier"] > 0
    assert 2.95 < p["epsilon"]["rdp"]["epsilon"] <= 3.0


def test_non_private_and_dp_share_batches_but_not_updates(tmp_path: Path) -> None:
    # Only with reproducible noise: a secret DP run's batches must not be those of a released
    # baseline, whose batches are rooted in the public training.seed.
    cfg = tiny("privacy.reproducible_noise=true")
    a = training.train(cfg.non_private(), tmp_path / "a", progress=False).metrics
    b = training.train(cfg, tmp_path / "b", progress=False).metrics
    assert [m["examples"] for m in a] == [m["examples"] for m in b]  # same Poisson batches
    assert a[0]["group_grad_norm"] == pytest.approx(b[0]["group_grad_norm"], rel=0.5)
    assert a[-1]["test_loss"] != b[-1]["test_loss"]
    secret = training.train(tiny(), tmp_path / "c", progress=False).metrics
    assert [m["examples"] for m in secret] != [m["examples"] for m in a]


def test_existing_run_needs_resume_or_overwrite(tmp_path: Path) -> None:
    training.train(tiny("training.epochs=1"), tmp_path, progress=False)
    with pytest.raises(ValueError, match="already holds a run"):
        training.train(tiny("training.epochs=1"), tmp_path, progress=False)
    training.train(tiny("training.epochs=1"), tmp_path, overwrite=True, progress=False)
    with pytest.raises(ValueError, match="holds the results of another config"):
        training.train(tiny("training.lr=0.01"), tmp_path, resume=True, progress=False)


def test_federated_experiments_are_refused_with_the_right_command(tmp_path: Path) -> None:
    federated = [n for n in list_presets()
                 if getattr(load_experiment(n), "federated", None) is not None]
    if not federated:
        pytest.skip("no federated preset shipped")
    with pytest.raises(ValueError, match=f"disparate federated run {federated[0]}"):
        training.train(load_experiment(federated[0]), tmp_path, progress=False)


def test_batch_larger_than_training_set_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="training.batch_size=5000"):
        training.train(tiny("training.batch_size=5000"), tmp_path, progress=False)


# ------------------------------------------------------------------------------ resume

class _Interrupt(Exception):
    pass


def _stop_after_epoch_1(line: str) -> None:
    if "epoch 1/" in line:
        raise _Interrupt


@pytest.mark.parametrize("reproducible", [True, False])
@pytest.mark.parametrize("sampling", ["poisson", "shuffle"])
def test_resume_reaches_the_same_result_as_an_uninterrupted_run(
        sampling: str, reproducible: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = ["training.epochs=3", "training.momentum=0.5", "privacy.noise_multiplier=1.0",
             f"privacy.sampling={sampling}", f"privacy.reproducible_noise={reproducible}"]
    if sampling == "shuffle":
        extra.append("privacy.shuffle_accounting=poisson")
    cfg = tiny(*extra)
    # Secret mode: the uninterrupted run and the first part of the cut one draw the same
    # secret; a resume that drew a fresh secret instead of the checkpoint's would differ.
    secrets = iter([7 << 100, 7 << 100, 9 << 100])
    monkeypatch.setattr(randomness, "new_secret", lambda: next(secrets))
    full = training.train(cfg, tmp_path / "full", progress=False)

    with pytest.raises(_Interrupt):
        training.train(cfg, tmp_path / "cut", progress=False, log=_stop_after_epoch_1)
    assert len(res.read_metrics(tmp_path / "cut")) == 1
    assert not (tmp_path / "cut" / "results.json").exists()
    resumed = training.train(cfg, tmp_path / "cut", resume=True, progress=False)

    def strip(d: dict, key: str) -> dict:
        return {k: v for k, v in d.items() if k != key}

    assert without_timings(resumed.results) == without_timings(full.results)
    assert [strip(m, "elapsed_s") for m in res.read_metrics(tmp_path / "cut")] == \
        [strip(m, "elapsed_s") for m in res.read_metrics(tmp_path / "full")]
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name  # bitwise
    assert torch.equal(a["optimizer"]["noise_generator"], b["optimizer"]["noise_generator"])

    # Resuming a finished run retrains nothing and rewrites the same results.
    again = training.train(cfg, tmp_path / "cut", resume=True, progress=False)
    assert without_timings(again.results) == without_timings(full.results)


def test_resume_without_checkpoint_starts_from_the_beginning(tmp_path: Path) -> None:
    notes: list[str] = []
    out = training.train(tiny("training.epochs=1"), tmp_path, resume=True, progress=False,
                         log=notes.append)
    assert out.metrics[-1]["epoch"] == 1
    assert "starting from the beginning" in notes[0]


def test_prepare_data_is_deterministic_and_keeps_the_test_set() -> None:
    a = training.prepare_data(tiny())
    b = training.prepare_data(tiny())
    assert torch.equal(a.train.inputs, b.train.inputs) and len(a.train) == 150
    assert len(a.test) == 540
    c = training.prepare_data(tiny("data.seed=1"))
    assert not torch.equal(a.train.labels, c.train.labels) or \
        not torch.equal(a.train.inputs, c.train.inputs)


# ------------------------------------------------------------------------------ secret noise

def _written_text(run_dir: Path, log_lines: list[str]) -> str:
    """Every file a run releases (all but the checkpoint), and its log, as one text."""
    texts = [p.read_bytes().decode("utf-8", "replace") for p in sorted(run_dir.rglob("*"))
             if p.is_file() and p.name != res.CHECKPOINT_FILE]
    return "\n".join([*texts, *log_lines])


def test_a_secret_run_releases_nothing_from_which_its_noise_can_be_regenerated(
        tmp_path: Path) -> None:
    from disparate import report

    lines: list[str] = []
    cfg = tiny("training.epochs=1")
    training.train(cfg, tmp_path, progress=False, log=lines.append)
    report.write_report(tmp_path)
    ckpt = torch.load(tmp_path / res.CHECKPOINT_FILE, weights_only=True)
    secret = int(ckpt["secret"], 16)
    tree = randomness.SeedTree(cfg.training.seed, secret)
    noise_seed = tree.seed_of("noise")
    state = ckpt["optimizer"]["noise_generator"]
    assert secret.bit_length() > 64 and noise_seed != randomness.stream_seed(0, "noise")
    text = _written_text(tmp_path, lines)
    assert "report.md" in {p.name for p in tmp_path.iterdir()}
    for value in (secret, noise_seed, tree.seed_of("sampling", 0)):
        for form in (str(value), f"{value:x}", f"{value:X}", f"{value:#x}"):
            assert form not in text, form
    raw = b"".join(p.read_bytes() for p in tmp_path.rglob("*")
                   if p.is_file() and p.name != res.CHECKPOINT_FILE)
    chunk = bytes(state[16:48].tolist())  # 32 bytes of the Mersenne-Twister state
    assert chunk not in raw and chunk.hex() not in text
    statement = json.loads((tmp_path / "results.json").read_text())["privacy"]["statement"]
    assert "seeded from the operating system's entropy: secret" in statement


@pytest.mark.parametrize("reproducible", [True, False])
def test_the_loop_seeds_noise_and_sampling_from_distinct_streams(
        reproducible: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The bug this prevents: with training.seed 0 the epoch-0 sampler and the noise
    # generator were seeded alike, so batch membership could be read off the step-0 noise.
    draws: list[tuple[str, int, bool]] = []  # (stream, 64-bit stream seed, secret)
    torch_generator = randomness.torch_generator

    def record(root: int, stream: str, *key: int, device: str = "cpu", secret: bool = False
               ) -> torch.Generator:
        draws.append((stream, randomness.stream_seed(root, stream, *key), secret))
        return torch_generator(root, stream, *key, device=device, secret=secret)

    monkeypatch.setattr(randomness, "torch_generator", record)
    cfg = tiny("training.seed=0", f"privacy.reproducible_noise={reproducible}")
    training.train(cfg, tmp_path, progress=False)
    noise_seeds = [seed for stream, seed, _ in draws if stream == "noise"]
    sampler_seeds = [seed for stream, seed, _ in draws if stream == "sampling"]
    assert len(noise_seeds) == 1 and len(sampler_seeds) == cfg.training.epochs
    assert noise_seeds[0] not in sampler_seeds and len(set(sampler_seeds)) == len(sampler_seeds)
    assert (noise_seeds[0] == randomness.stream_seed(0, "noise")) is reproducible
    # a secret stream's generator keeps the secret's entropy, not the 32 bits of manual_seed
    assert {secret for stream, _, secret in draws if stream in ("noise", "sampling")} == {
        not reproducible}


def test_two_secret_runs_with_the_same_seed_draw_different_noise_and_batches(
        tmp_path: Path) -> None:
    cfg = tiny("training.epochs=1")
    a = training.train(cfg, tmp_path / "a", progress=False)
    b = training.train(cfg, tmp_path / "b", progress=False)
    ma = torch.load(tmp_path / "a" / res.CHECKPOINT_FILE, weights_only=True)
    mb = torch.load(tmp_path / "b" / res.CHECKPOINT_FILE, weights_only=True)
    assert not torch.equal(ma["optimizer"]["noise_generator"], mb["optimizer"]["noise_generator"])
    assert any(not torch.equal(ma["model"][k], mb["model"][k]) for k in ma["model"])
    assert a.results["seed"] == b.results["seed"] == 0  # the public seed is the same
    assert a.results["privacy"]["noise_seeding"] == "secret"


def test_reproducible_noise_is_bit_identical_and_says_so(tmp_path: Path) -> None:
    cfg = tiny("training.epochs=1", "privacy.reproducible_noise=true")
    a = training.train(cfg, tmp_path / "a", progress=False)
    b = training.train(cfg, tmp_path / "b", progress=False)
    ma = torch.load(tmp_path / "a" / res.CHECKPOINT_FILE, weights_only=True)
    mb = torch.load(tmp_path / "b" / res.CHECKPOINT_FILE, weights_only=True)
    assert ma["secret"] is None
    assert all(torch.equal(ma["model"][k], mb["model"][k]) for k in ma["model"])
    assert without_timings(a.results) == without_timings(b.results)
    p = a.results["privacy"]
    assert p["noise_seeding"] == "reproducible"
    assert ("noise seeded from the recorded seed: reproducible, not private against anyone "
            "who has it") in p["statement"]


def test_statement_lists_what_it_does_not_cover(tmp_path: Path) -> None:
    p = training.train(tiny("training.epochs=1"), tmp_path, progress=False).results["privacy"]
    for released in ("gradient norms and clipped fractions", "training loss", "vocabularies",
                     "participants.csv", "hyperparameters tuned on the training data",
                     "several runs", "checkpoint.pt"):
        assert released in p["statement"], released
    assert p["not_covered"] == list(res.NOT_COVERED)


def test_shuffled_per_epoch_epsilon_is_marked_approximate(tmp_path: Path) -> None:
    lines: list[str] = []
    shuffled = tiny("training.epochs=1", "privacy.sampling=shuffle",
                    "privacy.shuffle_accounting=poisson")
    training.train(shuffled, tmp_path / "s", progress=False, log=lines.append)
    m = res.read_metrics(tmp_path / "s")[0]
    assert m["epsilon"] > 0 and m["epsilon_approximate"] is True
    assert any("eps " in line and "(approximate)" in line for line in lines)
    training.train(tiny("training.epochs=1"), tmp_path / "p", progress=False)
    assert res.read_metrics(tmp_path / "p")[0]["epsilon_approximate"] is False


EPSILON_FIGURE = re.compile(
    r"\(\s*\d[\d.]*\s*,\s*\d[\d.e-]*\s*\)\s*-?\s*DP|(epsilon|ε)\W{0,3}(\w+\W+){0,3}\d", re.I)


@pytest.mark.parametrize("mode", ["non-private", "clip-only", "noise-only"])
def test_reports_of_runs_that_are_not_private_state_no_epsilon(mode: str,
                                                               tmp_path: Path) -> None:
    from disparate import report

    cfg = tiny("training.epochs=1").with_mode(mode)
    training.train(cfg, tmp_path, progress=False)
    report.write_report(tmp_path)
    for name in ("report.md", "report.html"):
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert not EPSILON_FIGURE.search(text), EPSILON_FIGURE.search(text).group(0)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "1 epochs; batch size 30; learning rate 0.3" in md  # the settings used
    assert "training.epochs=1" in md and "data.subsample=150" in md  # the overrides
