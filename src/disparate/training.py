"""The one training loop: data, model, DP optimizer, per-group metrics, checkpoints, resume.

Every run -- private or not -- trains through :class:`~disparate.privacy.DPOptimizer`, so the
per-example gradient norms (before clipping) are measured in every mode, and the baselines
train with exactly the batches the DP run uses. The mechanism -- sampler, clipping policy
(``config.mitigation``; default DP-SGD's flat clipping), noise and accounting -- is one
:class:`~disparate.privacy.plan.DPPlan` built from the config (:func:`resolve_noise`), whose
named settings are the modes of ``config.privacy.mode``::

    mode          DPOptimizer
    dp            the policy's weights (S), noise_multiplier=z (calibrated first if target_epsilon)
    clip-only     the policy's weights (S), no noise
    noise-only    no clipping, noise_std
    non-private   no clipping, no noise

Randomness (:mod:`disparate.randomness`, ``docs/privacy.md``): the data (split, imbalance,
subsample) depends on ``data.seed``; model initialisation and augmentation on streams of
``training.seed``; the batches of each epoch and the noise on the ``sampling`` and ``noise``
streams, which a DP run roots in a secret from the operating system's entropy (kept only in
``checkpoint.pt``) unless ``privacy.reproducible_noise`` roots them in ``training.seed``. A run
stopped after any epoch and resumed from its checkpoint repeats the uninterrupted run exactly,
in both cases.

Files written to the run directory are described in ``docs/results-format.md``.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from disparate import distributed, fileio
from disparate import results as res
from disparate.config import (
    ExperimentConfig,
    config_hash,
    config_hashes,
    save_config,
)
from disparate.data import DatasetSplits, GroupedDataset, load_dataset, reduce_groups, subsample
from disparate.data.images import augmentation_generator
from disparate.metrics import PREDICTIONS_FILE, Predictions
from disparate.models import build_model
from disparate.privacy import DPOptimizer, self_check
from disparate.privacy.noise import add_gaussian_noise
from disparate.privacy.plan import DPPlan, build_plan
from disparate.randomness import SeedTree, stream_seed

__all__ = [
    "CHECKPOINT_VERSION",
    "DIVERGED_FILE",
    "TrainingDivergedError",
    "RunResult",
    "build_model_for",
    "check_run_dir",
    "evaluate",
    "plain_step",
    "prepare_data",
    "resolve_noise",
    "train",
]

CHECKPOINT_VERSION = 1
#: Written instead of ``results.json`` by a run that diverged (see :class:`TrainingDivergedError`).
DIVERGED_FILE = "diverged.json"

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
ERR_FEDERATED = (
    "experiment {name!r} is federated (it has a 'federated' section); this loop trains one "
    "model centrally -- use 'disparate federated run {name}'"
)
ERR_DIVERGED = (
    "training diverged at epoch {epoch}, step {step}: {what}; no results were written "
    "(see {path}). Lower training.lr, check the inputs, or use a larger noise budget"
)
ERR_DISTRIBUTED_POLICY = (
    "mitigation.method={method!r} releases private statistics of every batch, which are not yet "
    "gathered across processes: run it in one process (WORLD_SIZE={world}); flat DP-SGD "
    "(mitigation.method='dpsgd') runs distributed"
)
ERR_EMPTY_TRAIN = "the training set is empty after data.reduce / data.subsample: expected >= 1"

Log = Callable[[str], None]


class TrainingDivergedError(RuntimeError):
    """A run whose loss or parameters became non-finite; never reported as an accuracy."""

    def __init__(self, message: str, *, epoch: int, step: int, what: str) -> None:
        super().__init__(message)
        self.epoch, self.step, self.what = epoch, step, what


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


def prepare_data(config: ExperimentConfig) -> DatasetSplits:
    """The dataset, then ``data.reduce`` on the training split, then ``data.subsample``.

    Every step is seeded by ``data.seed``; the test split keeps all its examples.
    """
    dc = config.data
    splits = load_dataset(dc.dataset, data_dir=dc.data_dir, download=dc.download, seed=dc.seed,
                          **dict(dc.options))
    train_set = splits.train
    if dc.reduce:
        train_set = reduce_groups(train_set, dict(dc.reduce), seed=dc.seed)
    if dc.subsample is not None:
        train_set = subsample(train_set, dc.subsample, seed=dc.seed)
    return DatasetSplits(train_set, splits.test)


def build_model_for(config: ExperimentConfig, dataset: GroupedDataset) -> nn.Module:
    """The configured model, initialised from the ``model_init`` stream of ``training.seed``
    (global RNG left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(config.training.seed, "model_init"))
        return build_model(
            config.model.name,
            num_classes=dataset.num_classes,
            input_shape=dataset.input_shape,
            dataset_inputs=dataset.model_inputs(),
            **dict(config.model.options),
        )


def _base_optimizer(config: ExperimentConfig, model: nn.Module) -> torch.optim.Optimizer:
    tc = config.training
    params = [p for p in model.parameters() if p.requires_grad]
    if tc.optimizer == "adam":
        return torch.optim.Adam(params, lr=tc.lr)
    return torch.optim.SGD(params, lr=tc.lr, momentum=tc.momentum)


def plain_step(model: nn.Module, optimizer: torch.optim.Optimizer,
               loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
               x: torch.Tensor, y: torch.Tensor, *, expected_batch_size: float,
               noise_std: float, generator: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of a run that needs neither clipping nor per-example norms (modes non-private
    and noise-only): a plain forward and backward of the summed per-example losses, then what
    :class:`DPOptimizer` does with an unclipped sum -- noise of ``noise_std`` per coordinate
    from ``generator`` (the same draws, in the same order), division by
    ``expected_batch_size``, ``optimizer.step()``. ``optimizer`` is the wrapped torch
    optimizer; ``model`` must carry no :class:`GradSampleEngine` hooks. Returns the detached
    per-example losses and outputs."""
    optimizer.zero_grad(set_to_none=True)
    outputs = model(x)
    losses = loss_fn(outputs, y)
    losses.sum().backward()
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                grad = torch.zeros_like(param) if param.grad is None else param.grad
                param.grad = add_gaussian_noise(grad, noise_std, generator).div_(
                    expected_batch_size)
    optimizer.step()
    return losses.detach(), outputs.detach()


def resolve_noise(config: ExperimentConfig, dataset_size: int, *, num_groups: int | None = None
                  ) -> DPPlan:
    """The run's mechanism (:class:`~disparate.privacy.plan.DPPlan`); with
    ``privacy.target_epsilon``, z is calibrated here first.

    Calibration uses ``privacy.calibrate_with`` (default: the configured accountant) for the
    run's total number of steps, ``epochs * ceil(N / b)`` with N the training-set size after
    imbalance, composed with the clipping policy's auxiliary statistics (``mitigation``).
    """
    return build_plan(config.privacy, dataset_size=dataset_size,
                      batch_size=config.training.batch_size, epochs=config.training.epochs,
                      mitigation=config.mitigation, num_groups=num_groups)


def _with_policy(privacy: Mapping[str, Any], plan: DPPlan, optimizer: DPOptimizer
                 ) -> dict[str, Any]:
    """The privacy block with the clipping policy's components (noise multipliers) and, in
    words, in the statement; the policy's final settings (an adapted bound)."""
    block = dict(privacy)
    mechanism = plan.mechanism()
    if optimizer.policy is not None:
        mechanism["policy_settings"] = optimizer.policy.settings()
    block["mechanism"] = mechanism
    extra = plan.statement_extra()
    if extra:
        block["statement"] = f"{block['statement']}. {extra}"
    return block


@torch.no_grad()
def evaluate(model: nn.Module, dataset: GroupedDataset, *, batch_size: int = 1024
             ) -> dict[str, Any]:
    """Loss and accuracy overall and per group (``None`` for a group without examples), and
    the per-example ``predictions`` (:class:`~disparate.metrics.Predictions`)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    rows: list[tuple[torch.Tensor, ...]] = []
    for start in range(0, len(dataset), batch_size):
        x, y, g = dataset[slice(start, start + batch_size)]
        x, y = x.to(device), y.to(device)
        out = model(x)
        rows.append((y.cpu(), out.argmax(dim=1).cpu(), g.cpu(), loss_fn(out, y).double().cpu()))
    model.train(was_training)
    columns = ([torch.cat(c).numpy() for c in zip(*rows, strict=True)] if rows
               else [np.zeros(0, dtype=np.int64)] * 4)
    labels, preds, groups, losses = columns
    predictions = Predictions(labels=labels, predictions=preds, groups=groups, losses=losses,
                              group_names=tuple(dataset.group_names),
                              class_names=tuple(dataset.class_names))
    metrics = predictions.metrics()
    return {
        "test_loss": metrics.overall.loss,
        "test_accuracy": metrics.overall.accuracy,
        "group_accuracy": {name: m.accuracy for name, m in metrics.by_group.items()},
        "predictions": predictions,
    }


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


def check_run_dir(out_dir: str | Path, *, resume: bool, overwrite: bool,
                  digest: Sequence[str] | None = None) -> Path:
    """``out_dir`` as a Path; refuses one that holds a run unless resuming or overwriting,
    and, resuming, one whose ``results.json`` is of none of the config hashes ``digest``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{out}: exists and is not a directory; "
                                 "choose another --out")
    results_path = out / res.RESULTS_FILE
    held = (out / res.CHECKPOINT_FILE).exists() or results_path.exists()
    if held and not resume and not overwrite:
        raise ValueError(ERR_EXISTING_RUN.format(path=out))
    if resume and not overwrite and digest is not None and results_path.exists():
        saved = res.load_results(out).get("config_hash")
        if saved not in digest:
            raise ValueError(ERR_STALE_RESULTS.format(path=out, saved=saved, current=digest[0],
                                                      config=out / res.CONFIG_FILE))
    return out


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with fileio.atomic_write(path, "wb") as f:
        torch.save(state, f)


def _load_checkpoint(path: Path) -> dict[str, Any]:
    return fileio.load_torch(path)


def _write_metrics(path: Path, metrics: list[dict[str, Any]]) -> None:
    fileio.write_text(path, "".join(res.dumps(m) + "\n" for m in metrics))


def _append_metrics(path: Path, line: Mapping[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(res.dumps(line) + "\n")


def _data_counts(dataset: GroupedDataset) -> dict[str, Any]:
    """What reading the data kept and skipped (malformed lines, GloVe coverage), if the
    dataset records it in its ``info``: shown in the log and saved in ``results.json``."""
    info = getattr(dataset, "info", None) or {}
    return {k: info[k] for k in ("counts", "glove") if isinstance(info.get(k), Mapping)}


def _check_finite(model: nn.Module, bad_step: int, epoch: int, steps: int, out: Path) -> None:
    """Raise :class:`TrainingDivergedError` (and write ``diverged.json``) if step ``bad_step``
    (1-based, -1: none) of ``epoch`` had a non-finite loss or a parameter is non-finite."""
    if bad_step > 0:
        step, what = bad_step, "non-finite training loss"
    else:
        names = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
        if not names:
            return
        step, what = steps, f"non-finite parameters ({', '.join(names[:3])})"
    path = out / DIVERGED_FILE
    if distributed.is_main():
        res.write_json(path, {"status": "diverged", "epoch": epoch, "step": step, "what": what})
    raise TrainingDivergedError(ERR_DIVERGED.format(epoch=epoch, step=step, what=what,
                                                    path=path),
                                epoch=epoch, step=step, what=what)


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    """What :func:`train` returns: the run directory, ``results.json`` and the metrics lines."""

    run_dir: Path
    results: dict[str, Any]
    metrics: list[dict[str, Any]]


def _fmt_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _epoch_line(config: ExperimentConfig, m: Mapping[str, Any]) -> str:
    groups = ", ".join(f"{h}: {_fmt_pct(m['group_accuracy'].get(h))}"
                       for h in config.evaluation.highlight if h in m["group_accuracy"])
    approx = " (approximate)" if m.get("epsilon_approximate") else ""
    eps = f"  eps {m['epsilon']:.2f}{approx}" if m.get("epsilon") is not None else ""
    return (f"[{config.name} {config.privacy.mode} seed {config.training.seed}] "
            f"epoch {m['epoch']}/{config.training.epochs}  train loss {_fmt(m['train_loss'])}  "
            f"test loss {_fmt(m['test_loss'])}  test acc {_fmt_pct(m['test_accuracy'])}"
            + (f"  [{groups}]" if groups else "") + eps + f"  ({m['elapsed_s']:.1f} s)")


@distributed.on_main_rank(fileio.holds_run_dir)
def train(
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    splits: DatasetSplits | None = None,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
    log: Log | None = None,
    on_epoch: Callable[[Mapping[str, Any]], None] | None = None,
) -> RunResult:
    """Train ``config`` into ``out_dir``; write config.yaml, metrics.jsonl, results.json and
    checkpoint.pt (after every epoch).

    Args:
        config: The resolved experiment.
        out_dir: The run directory (created if needed).
        resume: Continue from ``out_dir/checkpoint.pt`` (model, optimizer with its noise
            generator, the secret root of a DP run, epoch, metrics); the final result equals
            that of an uninterrupted run.
            Without a checkpoint the run starts from the beginning. A finished run is not
            retrained; its results are rewritten from the checkpoint's metrics (or, without a
            checkpoint, returned as they are). Results of another config are refused.
        overwrite: Start again even if ``out_dir`` already holds a run (otherwise an error).
        splits: Pre-built (train, test) data, e.g. to share one load between the runs of a
            comparison; must equal :func:`prepare_data` of ``config`` for the saved config to
            describe it. ``None``: built from ``config``.
        device: Torch device to train on.
        progress: tqdm progress bar: True / False, or None to show it only on a terminal.
        log: Called with one summary line per epoch (and notes); None for silence.
        on_epoch: Called with each epoch's metrics line (e.g. a TensorBoard writer).

    In a process group (``docs/distributed.md``) every rank calls ``train`` alike; rank 0
    alone reads and writes ``out_dir`` and calls ``log`` and ``on_epoch``.
    """
    t_start = time.perf_counter()
    if getattr(config, "federated", None) is not None:
        raise ValueError(ERR_FEDERATED.format(name=config.name))
    distributed.check_launched()
    main = distributed.is_main()
    if not main:
        log, on_epoch, progress = None, None, False
    out = distributed.from_main(lambda: check_run_dir(out_dir, resume=resume,
                                                      overwrite=overwrite,
                                                      digest=config_hashes(config)))
    ckpt_path = out / res.CHECKPOINT_FILE
    metrics_path = out / res.METRICS_FILE
    if resume and distributed.from_main(
            lambda: not ckpt_path.exists() and (out / res.RESULTS_FILE).exists()):
        # finished, of this config (checked above), its checkpoint deleted: keep the results
        return distributed.from_main(lambda: RunResult(
            run_dir=out, results=res.load_results(out), metrics=res.read_metrics(out)))
    tc = config.training
    if tc.num_threads is not None:
        torch.set_num_threads(tc.num_threads)

    if splits is None:
        splits = distributed.main_first(lambda: prepare_data(config))  # one download
    train_set, test_set = splits
    n_train = len(train_set)
    if n_train == 0:
        raise ValueError(ERR_EMPTY_TRAIN)
    batch_size = tc.batch_size
    if batch_size > n_train:
        raise ValueError(
            f"training.batch_size={batch_size}: expected <= the training-set size {n_train} "
            f"(after data.reduce / data.subsample)")
    data_counts = _data_counts(train_set)
    if data_counts and log is not None:
        log(f"data read: {res.dumps(data_counts)}")
    group_names = list(train_set.group_names)
    plan = resolve_noise(config, n_train, num_groups=len(group_names))
    if distributed.world_size() > 1 and plan.aux_noise_multipliers:
        # each rank would release its shard's statistics: N noisy releases, not one
        raise ValueError(ERR_DISTRIBUTED_POLICY.format(method=plan.method,
                                                       world=distributed.world_size()))
    spe = plan.steps_per_epoch
    digest = config_hash(config)

    state: dict[str, Any] | None = distributed.from_main(
        lambda: _load_checkpoint(ckpt_path) if resume and ckpt_path.exists() else None)
    if state is not None:
        if state.get("config_hash") not in config_hashes(config):
            raise ValueError(ERR_RESUME_MISMATCH.format(
                path=out, saved=state.get("config_hash"), current=digest,
                config=out / res.CONFIG_FILE))
    elif resume and log is not None:
        log(f"no checkpoint in {out}; starting from the beginning")

    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / res.CONFIG_FILE)
        (out / DIVERGED_FILE).unlink(missing_ok=True)
        if not resume or state is None:  # a fresh start: no stale files of an earlier run
            (out / res.RESULTS_FILE).unlink(missing_ok=True)
            ckpt_path.unlink(missing_ok=True)

    saved_secret = None if state is None else state.get("secret")
    seeds = distributed.share(SeedTree.for_run(  # rank 0's secret: one global batch per step
        tc.seed, private=config.privacy.is_private,
        reproducible=config.privacy.reproducible_noise,
        saved_secret=None if saved_secret is None else int(saved_secret, 16)))
    model = build_model_for(config, train_set).to(device)
    model.train()
    optimizer = plan.optimizer(_base_optimizer(config, model), model,
                               noise_seed=seeds.seed_of("noise"))
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    n_groups = len(group_names)

    start_epoch = 0
    metrics: list[dict[str, Any]] = []
    elapsed_before = 0.0
    checked: dict[str, Any] | None = None  # the step-1 self-check of this process
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
        metrics = list(state["metrics"])
        elapsed_before = float(state["elapsed_s"])
        if log is not None:
            log(f"resuming {out} after epoch {start_epoch}/{tc.epochs}")
    if main:
        _write_metrics(metrics_path, metrics)

    # Training data on the device once; batches are index tensors into it.
    x_all = train_set.inputs.to(device)
    y_all = train_set.labels.to(device)
    g_all = train_set.groups.to(device)
    augment = train_set.train_transform  # per-batch augmentation (image datasets) or None

    bar = tqdm(total=tc.epochs * spe, initial=start_epoch * spe, unit="step",
               desc=f"{config.name} {config.privacy.mode} s{tc.seed}", leave=False,
               disable=(None if progress is None else not progress), dynamic_ncols=True)
    try:
        for epoch in range(start_epoch, tc.epochs):
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.long, device=device)
            seen = torch.zeros(n_groups, dtype=torch.long, device=device)
            norm_sum = torch.zeros(n_groups, dtype=torch.float64, device=device)
            clipped = torch.zeros(n_groups, dtype=torch.long, device=device)
            nonfinite = torch.zeros(n_groups, dtype=torch.long, device=device)
            # per step, over all ranks: examples and finite losses (no sync per step)
            step_examples = torch.zeros(spe, dtype=torch.long, device=device)
            step_finite = torch.zeros(spe, dtype=torch.long, device=device)
            batches = plan.batches(seeds.root("sampling"), epoch)
            aug_rng = augmentation_generator(tc.seed, epoch) if augment is not None else None
            for k, idx in enumerate(batches, start=1):
                idx = idx.to(device)
                x, y, g = x_all[idx], y_all[idx], g_all[idx]
                if augment is not None:
                    x = augment(x, aug_rng)
                x, y, g = distributed.shard(x, y, g)  # this rank's part of the global batch
                if checked is None and len(y):
                    checked = self_check(model, loss_fn, x, y).as_dict()
                    t_step = time.perf_counter()
                    step = optimizer.step(loss_fn, x, y, groups=g)
                    checked["first_step_seconds"] = time.perf_counter() - t_step
                    if log is not None:
                        log(f"self-check passed in {checked['seconds']:.2f} s "
                            f"(first step {checked['first_step_seconds']:.2f} s)")
                else:
                    step = optimizer.step(loss_fn, x, y, groups=g)
                if len(y):
                    finite = torch.isfinite(step.norms)
                    # one example's non-finite loss is dropped and counted (clip weight 0);
                    # a step without any finite loss means the model itself diverged
                    step_examples[k - 1] = len(y)
                    step_finite[k - 1] = torch.isfinite(step.losses).sum()
                    loss_sum += step.losses.double().sum()
                    correct += (step.outputs.argmax(dim=1) == y).sum()
                    seen += torch.bincount(g, minlength=n_groups)
                    norm_sum += torch.bincount(g, weights=step.norms.double().where(finite, 0.0),
                                               minlength=n_groups)
                    clipped += torch.bincount(g, weights=((step.clip_weights < 1) & finite)
                                              .double(), minlength=n_groups).long()
                    nonfinite += torch.bincount(g, weights=(~finite).double(),
                                                minlength=n_groups).long()
                bar.update(1)
            distributed.all_reduce_sum([loss_sum, correct, seen, norm_sum, clipped, nonfinite,
                                        step_examples, step_finite])
            bad = ((step_examples > 0) & (step_finite == 0)).nonzero()
            _check_finite(model, int(bad[0]) + 1 if len(bad) else -1, epoch + 1, spe, out)
            evaluation = evaluate(model, test_set, batch_size=tc.eval_batch_size)
            steps_done = (epoch + 1) * spe
            n_seen = int(seen.sum())
            seen_l, norm_l, clip_l = seen.tolist(), norm_sum.tolist(), clipped.tolist()
            bad_l = nonfinite.tolist()
            finite_l = [n - b for n, b in zip(seen_l, bad_l, strict=True)]
            epsilon, epsilon_approximate = plan.epsilon(steps_done)
            line = {
                "epoch": epoch + 1,
                "steps": steps_done,
                "examples": n_seen,
                "train_loss": float(loss_sum) / n_seen if n_seen else None,
                "train_accuracy": int(correct) / n_seen if n_seen else None,
                "test_loss": evaluation["test_loss"],
                "test_accuracy": evaluation["test_accuracy"],
                "group_accuracy": evaluation["group_accuracy"],
                "group_grad_norm": {name: (norm_l[i] / finite_l[i] if finite_l[i] else None)
                                    for i, name in enumerate(group_names)},
                "group_clipped_fraction": {name: (clip_l[i] / finite_l[i] if finite_l[i] else None)
                                           for i, name in enumerate(group_names)},
                # examples whose gradient was not finite, dropped (clip weight 0)
                "group_nonfinite": {name: bad_l[i] for i, name in enumerate(group_names)},
                "epsilon": epsilon,
                "epsilon_approximate": epsilon_approximate,
                "elapsed_s": elapsed_before + time.perf_counter() - t_start,
            }
            metrics.append(line)
            elapsed = line["elapsed_s"]
            if main:
                _append_metrics(metrics_path, line)
                if epoch + 1 == tc.epochs:
                    evaluation["predictions"].save(out / PREDICTIONS_FILE)
                _save_checkpoint(ckpt_path, {
                    "version": CHECKPOINT_VERSION,
                    "config_hash": digest,
                    "epoch": epoch + 1,
                    "secret": None if seeds.secret is None else f"{seeds.secret:x}",  # secret
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "metrics": metrics,
                    "elapsed_s": elapsed,
                    "self_check": checked,
                })
            acc = line["test_accuracy"]
            bar.set_postfix_str(f"epoch {epoch + 1}/{tc.epochs} acc {_fmt_pct(acc)}")
            if log is not None:
                log(_epoch_line(config, line))
                if sum(bad_l):
                    log(f"note: {sum(bad_l)} examples had a non-finite gradient and were "
                        "dropped (clip weight 0)")
            if on_epoch is not None:
                on_epoch(line)
    finally:
        bar.close()
        optimizer.close()

    total_steps = tc.epochs * spe
    wall = elapsed_before + time.perf_counter() - t_start
    if state is not None and start_epoch >= tc.epochs:
        wall = float(state["elapsed_s"])

    # What results.json holds beside the privacy block: computed (and read) once, written
    # with the RDP bounds and again after the PLD.
    extra: dict[str, Any] = {
        # seconds and outcome of the step-1 self-check (privacy.selfcheck); kept across a resume
        "self_check": checked if checked is not None else (state or {}).get("self_check"),
    }
    if main and (out / PREDICTIONS_FILE).exists():
        extra["group_metrics"] = Predictions.load(out).metrics().to_dict()
    if data_counts:
        extra["data_counts"] = data_counts
    nonfinite_by_group = metrics[-1].get("group_nonfinite", {})

    def write_results(methods: tuple[str, ...]) -> dict[str, Any]:
        reports, skipped = plan.reports(total_steps, methods)
        privacy = res.privacy_block(config.privacy, noise_multiplier=plan.z, reports=reports,
                                    steps=total_steps, calibration=plan.calibration,
                                    secret_noise=seeds.is_secret, skipped=skipped)
        if config.mitigation is not None:
            privacy = _with_policy(privacy, plan, optimizer)
        results = res.build_run_results(
            config,
            group_names=group_names,
            train_sizes=train_set.group_sizes(),
            test_sizes=test_set.group_sizes(),
            final_metrics=metrics[-1],
            privacy=privacy,
            wall_time_s=wall,
            device=str(device),
        )
        for group in results["groups"]:
            group["nonfinite"] = nonfinite_by_group.get(group["group"])
        results.update(extra)
        res.write_json(out / res.RESULTS_FILE, results)
        return results

    # The RDP bounds first (cheap): the results are on disk before the optional PLD runs.
    # Rank 0 writes them; every other rank gets what it wrote.
    results = distributed.from_main(lambda: write_results(("rdp", "rdp_classic")))
    if plan.is_private:
        results = distributed.from_main(lambda: write_results(("rdp", "rdp_classic", "pld")))
    return RunResult(run_dir=out, results=results, metrics=metrics)
