"""The one training loop: data, model, DP optimizer, per-group metrics, checkpoints, resume.

Every run -- private or not -- trains through :class:`~disparate.privacy.DPOptimizer`, so the
per-example gradient norms (before clipping) are measured in every mode, and the baselines
train with exactly the batches the DP run uses. With ``training.per_example_stats: false`` the
modes that do not clip take :func:`plain_step` instead (the same batches, noise draws and
update, no per-example gradients) and record no norms. The mechanism -- sampler, clipping policy
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

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from disparate import distributed, records
from disparate import results as res
from disparate.config import ExperimentConfig
from disparate.data import DatasetSplits, GroupedDataset, load_dataset, reduce_groups, subsample
from disparate.data.images import augmentation_generator
from disparate.metrics import PREDICTIONS_FILE, Predictions
from disparate.models import build_model
from disparate.privacy import DPOptimizer, self_check
from disparate.privacy.noise import parameter_noise
from disparate.privacy.plan import DPPlan, build_plan
from disparate.randomness import SeedTree, stream_seed
from disparate.rundir import CHECKPOINT_VERSION, DIVERGED_FILE, RunDir

__all__ = [
    "CHECKPOINT_VERSION",
    "DIVERGED_FILE",
    "TrainingDivergedError",
    "RunResult",
    "build_model_for",
    "evaluate",
    "plain_step",
    "prepare_data",
    "resolve_noise",
    "train",
]

ERR_FEDERATED = (
    "experiment {name!r} is federated (it has a 'federated' section); this loop trains one "
    "model centrally -- use 'disparate federated run {name}'"
)
ERR_DIVERGED = (
    "training diverged at epoch {epoch}, step {step}: {what}; no results were written "
    "(see {path}). Lower training.lr, check the inputs, or use a larger noise budget"
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
    if len(y):
        outputs = model(x)
        losses = loss_fn(outputs, y)
        losses.sum().backward()
    else:  # an empty Poisson batch: only noise, as DPOptimizer
        outputs = losses = x.new_zeros(0)
    params = [p for p in model.parameters() if p.requires_grad]
    noise_std = distributed.noise_std_here(noise_std)  # once, on rank 0
    with torch.no_grad():
        noise = parameter_noise(params, noise_std, generator) if noise_std > 0 else None
        for param in params:
            if noise is not None:  # the sum added into the noise, as DPOptimizer
                grad = next(noise)
                param.grad = grad if param.grad is None else grad.add_(param.grad)
            elif param.grad is None:
                param.grad = torch.zeros_like(param)
        distributed.all_reduce_sum([p.grad for p in params])
        for param in params:
            param.grad.div_(expected_batch_size)  # the expected global batch size
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
    the per-example ``predictions`` (:class:`~disparate.metrics.Predictions`).

    In a process group every rank calls it: rank r evaluates batches r, r + N, ... (the
    batches of one process, so each example's numbers are those of one process) and every
    rank gets all of them."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    starts = range(0, len(dataset), batch_size)
    mine: dict[int, tuple[torch.Tensor, ...]] = {}
    for start in starts[distributed.rank()::distributed.world_size()]:
        x, y, g = dataset[slice(start, start + batch_size)]
        x, y = x.to(device), y.to(device)
        out = model(x)
        mine[start] = (y.cpu(), out.argmax(dim=1).cpu(), g.cpu(),
                       loss_fn(out, y).double().cpu())
    model.train(was_training)
    gathered = {start: row for part in distributed.gather(mine) for start, row in part.items()}
    rows = [gathered[start] for start in starts]
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
# One epoch of steps
# --------------------------------------------------------------------------------------------


@dataclass
class _EpochSums:
    """What the steps of one epoch add up, per group, on the device (no sync per step)."""

    loss: torch.Tensor  # () float64: sum of the examples' losses
    correct: torch.Tensor  # () long
    seen: torch.Tensor  # (G,) long: examples per group
    norm: torch.Tensor  # (G,) float64: sum of the finite per-example gradient norms
    clipped: torch.Tensor  # (G,) long: finite gradients that were clipped
    nonfinite: torch.Tensor  # (G,) long: examples whose gradient was not finite
    step_examples: torch.Tensor  # (steps,) long: examples of each step
    step_finite: torch.Tensor  # (steps,) long: finite losses of each step

    @classmethod
    def zeros(cls, n_groups: int, steps: int, device: str | torch.device) -> _EpochSums:
        def z(*shape: int, dtype: torch.dtype = torch.long) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=device)

        return cls(z(dtype=torch.float64), z(), z(n_groups), z(n_groups, dtype=torch.float64),
                   z(n_groups), z(n_groups), z(steps), z(steps))

    def all_reduce(self) -> None:
        """Sum every count over the ranks of a process group (a no-op in one process)."""
        distributed.all_reduce_sum([self.loss, self.correct, self.seen, self.norm,
                                    self.clipped, self.nonfinite, self.step_examples,
                                    self.step_finite])

    @property
    def first_bad(self) -> int:
        """The 1-based step that had examples but no finite loss, -1: none."""
        bad = ((self.step_examples > 0) & (self.step_finite == 0)).nonzero()
        return int(bad[0]) + 1 if len(bad) else -1


def _run_epoch(model: nn.Module, optimizer: DPOptimizer, loss_fn: nn.Module,
               batches: Sequence[torch.Tensor], data: tuple[torch.Tensor, ...],
               augment: Callable[..., torch.Tensor] | None, aug_rng: Any, n_groups: int,
               bar: Any, checked: dict[str, Any] | None, log: Log, *, plain: bool
               ) -> tuple[_EpochSums, dict[str, Any] | None]:
    """The optimizer steps of one epoch over ``batches`` (index tensors into ``data`` =
    (inputs, labels, groups) on the device); the first step of the process is preceded by
    the self-check (returned, with that step's time). ``plain``: :func:`plain_step` with the
    optimizer's wrapped optimizer and noise, no per-example norms (``sums.norm`` stays 0)."""
    x_all, y_all, g_all = data
    device = x_all.device
    sums = _EpochSums.zeros(n_groups, len(batches), device)

    def step(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(losses, outputs, norms, clipped) of one step; norms and clipped None if plain."""
        if plain:
            losses, outputs = plain_step(model, optimizer.optimizer, loss_fn, x, y,
                                         expected_batch_size=optimizer.expected_batch_size,
                                         noise_std=optimizer.noise_std,
                                         generator=optimizer.noise_generator)
            return losses, outputs, None, None
        result = optimizer.step(loss_fn, x, y, groups=g)
        return result.losses, result.outputs, result.norms, result.clip_weights < 1

    for k, idx in enumerate(batches, start=1):
        idx = idx.to(device)
        x, y, g = x_all[idx], y_all[idx], g_all[idx]
        if augment is not None:
            x = augment(x, aug_rng)
        x, y, g = distributed.shard(x, y, g)  # this rank's part of the global batch
        if checked is None and len(y):
            checked = self_check(model, loss_fn, x, y).as_dict()
            t_step = time.perf_counter()
            losses, outputs, norms, clipped = step(x, y, g)
            checked["first_step_seconds"] = time.perf_counter() - t_step
            log(f"self-check passed in {checked['seconds']:.2f} s "
                f"(first step {checked['first_step_seconds']:.2f} s)")
        else:
            losses, outputs, norms, clipped = step(x, y, g)
        if len(y):
            # one example's non-finite loss is dropped and counted (clip weight 0);
            # a step without any finite loss means the model itself diverged. The plain
            # step cannot drop one: it counts the non-finite losses, and a non-finite sum
            # stops the run as diverged.
            finite = torch.isfinite(losses if norms is None else norms)
            sums.step_examples[k - 1] = len(y)
            sums.step_finite[k - 1] = torch.isfinite(losses).sum()
            sums.loss += losses.double().sum()
            sums.correct += (outputs.argmax(dim=1) == y).sum()
            sums.seen += torch.bincount(g, minlength=n_groups)
            if norms is not None:
                sums.norm += torch.bincount(g, weights=norms.double().where(finite, 0.0),
                                            minlength=n_groups)
                sums.clipped += torch.bincount(g, weights=(clipped & finite).double(),
                                               minlength=n_groups).long()
            sums.nonfinite += torch.bincount(g, weights=(~finite).double(),
                                             minlength=n_groups).long()
        bar.update(1)
    sums.all_reduce()
    return sums, checked


def _metrics_line(epoch: int, steps_done: int, sums: _EpochSums, evaluation: Mapping[str, Any],
                  group_names: Sequence[str], epsilon: tuple[float | None, bool | None],
                  elapsed_s: float, *, norms_recorded: bool = True) -> dict[str, Any]:
    """The ``metrics.jsonl`` line of an epoch (``group_grad_norm`` None if not
    ``norms_recorded``)."""
    n_seen = int(sums.seen.sum())
    seen_l, norm_l, clip_l = sums.seen.tolist(), sums.norm.tolist(), sums.clipped.tolist()
    bad_l = sums.nonfinite.tolist()
    finite_l = [n - b for n, b in zip(seen_l, bad_l, strict=True)]
    return {
        "epoch": epoch,
        "steps": steps_done,
        "examples": n_seen,
        "train_loss": float(sums.loss) / n_seen if n_seen else None,
        "train_accuracy": int(sums.correct) / n_seen if n_seen else None,
        "test_loss": evaluation["test_loss"],
        "test_accuracy": evaluation["test_accuracy"],
        "group_accuracy": evaluation["group_accuracy"],
        "group_grad_norm": {name: (norm_l[i] / finite_l[i]
                                   if finite_l[i] and norms_recorded else None)
                            for i, name in enumerate(group_names)},
        "group_clipped_fraction": {name: (clip_l[i] / finite_l[i] if finite_l[i] else None)
                                   for i, name in enumerate(group_names)},
        # examples whose gradient was not finite, dropped (clip weight 0)
        "group_nonfinite": {name: bad_l[i] for i, name in enumerate(group_names)},
        "epsilon": epsilon[0],
        "epsilon_approximate": epsilon[1],
        "elapsed_s": elapsed_s,
    }


def _data_counts(dataset: GroupedDataset) -> dict[str, Any]:
    """What reading the data kept and skipped (malformed lines, GloVe coverage), if the
    dataset records it in its ``info``: shown in the log and saved in ``results.json``."""
    info = getattr(dataset, "info", None) or {}
    return {k: info[k] for k in ("counts", "glove") if isinstance(info.get(k), Mapping)}


def _check_finite(model: nn.Module, bad_step: int, epoch: int, steps: int, run: RunDir
                  ) -> None:
    """Raise :class:`TrainingDivergedError` (and write ``diverged.json``) if step ``bad_step``
    (1-based, -1: none) of ``epoch`` had a non-finite loss or a parameter is non-finite."""
    if bad_step > 0:
        step, what = bad_step, "non-finite training loss"
    else:
        names = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
        if not names:
            return
        step, what = steps, f"non-finite parameters ({', '.join(names[:3])})"
    path = run.diverged({"status": "diverged", "epoch": epoch, "step": step, "what": what})
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
        out_dir: The run directory (created if needed; :class:`~disparate.rundir.RunDir`).
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
    if not distributed.is_main():
        log, on_epoch, progress = None, None, False
    with RunDir.open(out_dir, config, resume=resume, overwrite=overwrite, log=log) as run:
        finished = run.finished()
        if finished is not None:
            return RunResult(run_dir=run.path, results=finished, metrics=run.read_metrics())
        return _train(run, t_start=t_start, splits=splits, device=device, progress=progress,
                      on_epoch=on_epoch)


def _train(run: RunDir, *, t_start: float, splits: DatasetSplits | None,
           device: str | torch.device, progress: bool | None,
           on_epoch: Callable[[Mapping[str, Any]], None] | None) -> RunResult:
    """Build, loop, log, checkpoint, finish: :func:`train` in an open run directory."""
    config, out = run.config, run.path
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
    if data_counts:
        run.log(f"data read: {res.dumps(data_counts)}")
    group_names = list(train_set.group_names)
    plan = resolve_noise(config, n_train, num_groups=len(group_names))
    spe = plan.steps_per_epoch

    state = run.resume_state()
    metrics: list[dict[str, Any]] = [] if state is None else list(state["metrics"])
    run.start(fresh=state is None, metrics=[records.EpochMetrics.from_json(m) for m in metrics])

    saved_secret = None if state is None else state.get("secret")
    seeds = distributed.share(SeedTree.for_run(  # rank 0's secret: one global batch per step
        tc.seed, private=config.privacy.is_private,
        reproducible=config.privacy.reproducible_noise,
        saved_secret=None if saved_secret is None else int(saved_secret, 16)))
    model = build_model_for(config, train_set).to(device)
    model.train()
    optimizer = plan.optimizer(_base_optimizer(config, model), model,
                               noise_generator=seeds.generator("noise", device=device))
    # a run that neither clips nor records norms needs no per-example gradients
    plain = plan.max_grad_norm is None and not tc.per_example_stats
    if plain:
        optimizer.close()  # the engine's hooks off: plain_step's model carries none
    loss_fn = nn.CrossEntropyLoss(reduction="none")

    start_epoch = 0
    elapsed_before = 0.0
    checked: dict[str, Any] | None = None  # the step-1 self-check of this process
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
        elapsed_before = float(state["elapsed_s"])
        run.log(f"resuming {out} after epoch {start_epoch}/{tc.epochs}")

    # Training data on the device once; batches are index tensors into it.
    data = (train_set.inputs.to(device), train_set.labels.to(device),
            train_set.groups.to(device))
    augment = train_set.train_transform  # per-batch augmentation (image datasets) or None

    bar = tqdm(total=tc.epochs * spe, initial=start_epoch * spe, unit="step",
               desc=f"{config.name} {config.privacy.mode} s{tc.seed}", leave=False,
               disable=(None if progress is None else not progress), dynamic_ncols=True)
    try:
        for epoch in range(start_epoch, tc.epochs):
            batches = plan.batches(seeds, epoch)
            aug_rng = augmentation_generator(tc.seed, epoch) if augment is not None else None
            sums, checked = _run_epoch(model, optimizer, loss_fn, batches, data, augment,
                                       aug_rng, len(group_names), bar, checked, run.log,
                                       plain=plain)
            _check_finite(model, sums.first_bad, epoch + 1, spe, run)
            evaluation = evaluate(model, test_set, batch_size=tc.eval_batch_size)
            steps_done = (epoch + 1) * spe
            line = _metrics_line(epoch + 1, steps_done, sums, evaluation, group_names,
                                 plan.epsilon(steps_done),
                                 elapsed_before + time.perf_counter() - t_start,
                                 norms_recorded=not plain)
            metrics.append(line)
            run.append_metrics(records.EpochMetrics.from_json(line))
            if epoch + 1 == tc.epochs and distributed.is_main():
                evaluation["predictions"].save(out / PREDICTIONS_FILE)
            run.save_checkpoint({
                "epoch": epoch + 1,
                "secret": None if seeds.secret is None else f"{seeds.secret:x}",  # secret
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "metrics": metrics,
                "elapsed_s": line["elapsed_s"],
                "self_check": checked,
            })
            bar.set_postfix_str(f"epoch {epoch + 1}/{tc.epochs} "
                                f"acc {_fmt_pct(line['test_accuracy'])}")
            run.log(_epoch_line(config, line))
            dropped = sum(line["group_nonfinite"].values())
            if dropped:
                run.log(f"note: {dropped} examples had a non-finite gradient and were "
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
    group_metrics = distributed.from_main(
        lambda: Predictions.load(out).metrics().to_dict()
        if (out / PREDICTIONS_FILE).exists() else None)
    if group_metrics is not None:
        extra["group_metrics"] = group_metrics
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
        if plain:  # group grad_norm is None: not measured, not missing
            results["per_example_stats"] = False
        return run.finish(records.RunResult.from_json(results))

    # The RDP bounds first (cheap): the results are on disk before the optional PLD runs.
    results = write_results(("rdp", "rdp_classic"))
    if plan.is_private:
        results = write_results(("rdp", "rdp_classic", "pld"))
    return RunResult(run_dir=out, results=results, metrics=metrics)
