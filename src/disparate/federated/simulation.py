"""The federated training loop: rounds, evaluation, run directories, resume; the variants of
a comparison (:func:`variant_configs`, trained by :mod:`disparate.federated.comparison`).

:func:`train_federated` runs the rounds of a federated experiment through an *executor* that
trains the sampled participants and streams their updates into the server's aggregator:

- :class:`InProcessExecutor` (default): one process, participants one after another;
- ``disparate.federated.flower_app.FlowerExecutor``: the same local-update code run by Flower
  ClientApps (Flower's simulation engine on one machine or a Ray cluster).

Everything else -- participant sampling, clipping, averaging, noise, evaluation, metrics,
checkpoints and results -- is this module's and identical for both executors, so the two give
the same model for the same seeds.

A run directory holds (see ``docs/federated.md``): ``config.yaml``, ``metrics.jsonl`` (one line
per round), ``checkpoint.pt`` (global model, round, metrics; every
``federated.checkpoint_every`` rounds), ``results.json``, ``participants.csv`` (final
per-participant accuracy and vocabulary size) and ``predictions.json`` (output diversity).
"""

from __future__ import annotations

import csv
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from disparate import fileio, records
from disparate import results as res
from disparate.config import ExperimentConfig, apply_overrides, config_hash
from disparate.federated import metrics as fm
from disparate.federated.dpfedavg import (
    DPFedAvgSettings,
    StreamingAggregator,
    calibrate_participant_noise,
    initial_parameters,
    local_update,
    participant_epsilon,
    participant_epsilons,
    privacy_statement,
    sample_participants,
    server_step,
)
from disparate.federated.model import build_word_model, parameter_count, set_parameters
from disparate.federated.reddit import FederatedTextData, RedditOptions, load_reddit
from disparate.randomness import SeedTree, stream_seed
from disparate.rundir import CHECKPOINT_VERSION, RunDir

__all__ = [
    "CHECKPOINT_VERSION",
    "ENGINES",
    "FederatedRun",
    "InProcessExecutor",
    "PARTICIPANTS_FILE",
    "PREDICTIONS_FILE",
    "build_global_model",
    "load_federated_data",
    "resolve_settings",
    "train_federated",
    "variant_configs",
]

ENGINES: tuple[str, ...] = ("simulation", "flower")
PARTICIPANTS_FILE = "participants.csv"
PREDICTIONS_FILE = "predictions.json"

ERR_NOT_FEDERATED = (
    "{name}: not a federated experiment (no 'federated' section); federated presets: "
    "reddit-fl, reddit-fl-s8, reddit-fl-small"
)
ERR_DATASET = "data.dataset={name!r}: federated runs support 'reddit'"

Log = Callable[[str], None]


# --------------------------------------------------------------------------------- building


def load_federated_data(config: ExperimentConfig, log: Log | None = None) -> FederatedTextData:
    """The participants' data of a federated experiment (preprocessed once, then cached)."""
    if config.data.dataset != "reddit":
        raise ValueError(ERR_DATASET.format(name=config.data.dataset))
    return load_reddit(config.data.data_dir, dict(config.data.options), seed=config.data.seed,
                       log=log)


def seq_len_of(config: ExperimentConfig) -> int:
    return RedditOptions.from_mapping(dict(config.data.options)).seq_len


def build_global_model(config: ExperimentConfig, num_tokens: int) -> nn.Module:
    """The model G_0, initialised from the ``model_init`` stream of ``training.seed`` (the
    global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(config.training.seed, "model_init"))
        return build_word_model(config.model.name, num_tokens, dict(config.model.options))


def resolve_settings(config: ExperimentConfig, num_participants: int
                     ) -> tuple[DPFedAvgSettings, dict[str, Any] | None]:
    """Round settings and, with ``privacy.target_epsilon``, how z was calibrated."""
    if config.federated is None:
        raise ValueError(ERR_NOT_FEDERATED.format(name=config.name))
    calibration = None
    resolved = config
    if config.privacy.mode == "dp" and config.privacy.target_epsilon is not None:
        z, calibration = calibrate_participant_noise(config, num_participants)
        resolved = dataclasses.replace(config, privacy=dataclasses.replace(
            config.privacy, noise_multiplier=z, target_epsilon=None))
    settings = DPFedAvgSettings.from_config(resolved, num_participants,
                                            seq_len=seq_len_of(config))
    return settings, calibration


# --------------------------------------------------------------------------------- executors


class Executor(Protocol):
    """Trains a round's participants from G and adds their updates to ``aggregator``."""

    def run_round(self, round_index: int, participants: Sequence[int],
                  global_params: Mapping[str, Tensor], aggregator: StreamingAggregator
                  ) -> None: ...


class InProcessExecutor:
    """Participants trained one after another in this process, on one reusable local model."""

    def __init__(self, config: ExperimentConfig, data: FederatedTextData,
                 settings: DPFedAvgSettings, *, device: str | torch.device = "cpu") -> None:
        self.data = data
        self.settings = settings
        self.model = build_global_model(config, data.num_tokens).to(device)

    def run_round(self, round_index: int, participants: Sequence[int],
                  global_params: Mapping[str, Tensor], aggregator: StreamingAggregator
                  ) -> None:
        for pid in participants:
            update = local_update(self.model, global_params, self.data.train_tokens(pid),
                                  self.settings, round_index=round_index, participant=pid)
            aggregator.add(pid, update)


# --------------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class FederatedRun:
    """What :func:`train_federated` returns."""

    run_dir: Path
    results: dict[str, Any]
    metrics: list[dict[str, Any]]


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _evaluate(model: nn.Module, global_params: Mapping[str, Tensor], data: FederatedTextData,
              participants: np.ndarray, config: ExperimentConfig, seq_len: int
              ) -> fm.ParticipantEvaluation:
    set_parameters(model, global_params)
    return fm.evaluate_participants(model, data, participants, seq_len=seq_len,
                                    batch_windows=config.training.eval_batch_size)


def _privacy_block(config: ExperimentConfig, settings: DPFedAvgSettings,
                   calibration: Mapping[str, Any] | None, rounds: int, secret_noise: bool
                   ) -> dict[str, Any]:
    p = config.privacy
    reports, skipped = (participant_epsilons(settings, delta=p.delta, rounds=rounds)
                        if p.is_private else ({}, {}))
    block = res.privacy_block(p, noise_multiplier=settings.noise_multiplier,
                              reports=reports or None, steps=rounds, calibration=calibration,
                              secret_noise=secret_noise, skipped=skipped)
    head = _head_report(reports, p.accountant)
    statement = privacy_statement(settings, head, mode=p.mode,
                                  delta=p.delta if p.is_private else None)
    if p.is_private:
        statement += res.caveats(secret_noise=secret_noise)
    block.update(
        level="participant",
        rounds=rounds,
        participants=settings.num_participants,
        participants_per_round=settings.participants_per_round,
        participant_sampling=settings.sampling,
        noise_std_average=settings.noise_std,
        clip_mode=settings.clip_mode,
        description=(config.federated.describe() + "; " + _mechanism(config, settings)),
        statement=statement,
    )
    if head is not None:
        block["accountant"] = head.method
    return block


def _head_report(reports: Mapping[str, Any], accountant: str) -> Any:
    """The report of ``accountant`` (else RDP, else the first), or ``None`` without any."""
    if not reports:
        return None
    return reports.get(accountant) or reports.get("rdp") or next(iter(reports.values()))


def _resolved_settings(config: ExperimentConfig, settings: DPFedAvgSettings) -> dict[str, Any]:
    """The ``settings`` of results.json, as a centralised run's (``results.resolved_settings``),
    read at the participant level: local epochs, the rounds and the round's mechanism."""
    fed = config.federated
    return {**res.resolved_settings(config), "local_epochs": config.training.epochs,
            "rounds": fed.rounds, "participants_per_round": fed.participants_per_round,
            "server_lr": fed.server_lr, "clip_mode": fed.clip_mode,
            "mechanism": _mechanism(config, settings)}


def _mechanism(config: ExperimentConfig, settings: DPFedAvgSettings) -> str:
    mode = config.privacy.mode
    if mode == "dp":
        return (f"updates clipped to S={settings.clip_norm:g}, noise "
                f"z={settings.noise_multiplier:g} (std {settings.noise_std:g} on the average)")
    if mode == "clip-only":
        return f"updates clipped to S={settings.clip_norm:g}, no noise (not private)"
    if mode == "noise-only":
        return f"noise std {settings.noise_std:g} on the average, no clipping (not private)"
    return "plain FedAvg: no clipping, no noise (not private)"


def train_federated(
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    data: FederatedTextData | None = None,
    executor: Executor | Callable[..., Executor] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
    log: Log | None = None,
    engine: str = "simulation",
) -> FederatedRun:
    """Run the rounds of a federated experiment into ``out_dir`` (see the module docstring).

    Args:
        config: A resolved experiment with a ``federated`` section.
        out_dir: The run directory.
        data: Pre-loaded participants' data (e.g. shared by the runs of a comparison).
        executor: An executor, or a factory ``(config, data, settings, device=...)`` of one;
            default :class:`InProcessExecutor`.
        resume: Continue from ``checkpoint.pt`` (the result equals an uninterrupted run).
        overwrite: Start again even if ``out_dir`` already holds a run.
        device: Torch device of the global model (and the in-process executor).
        progress: tqdm bar over rounds: True / False, or None for a terminal only.
        log: Called with a summary line per evaluated round; None for silence.
        engine: Recorded in ``results.json`` (``"simulation"`` or ``"flower"``).
    """
    t_start = time.perf_counter()
    if config.federated is None:
        raise ValueError(ERR_NOT_FEDERATED.format(name=config.name))
    with RunDir.open(out_dir, config, resume=resume, overwrite=overwrite, log=log) as run:
        finished = run.finished()
        if finished is not None:
            return FederatedRun(run_dir=run.path, results=finished,
                                metrics=run.read_metrics())
        return _train_federated(run, t_start=t_start, data=data, executor=executor,
                                device=device, progress=progress, engine=engine)


def _train_federated(run: RunDir, *, t_start: float, data: FederatedTextData | None,
                     executor: Executor | Callable[..., Executor] | None,
                     device: str | torch.device, progress: bool | None, engine: str
                     ) -> FederatedRun:
    """Build, loop, log, checkpoint, finish: :func:`train_federated` in an open run
    directory."""
    config, out = run.config, run.path
    fed = config.federated
    if config.training.num_threads is not None:
        torch.set_num_threads(config.training.num_threads)
    data = data if data is not None else load_federated_data(config, log=run.log)
    n = data.num_participants
    settings, calibration = resolve_settings(config, n)
    seq_len = settings.seq_len

    state = run.resume_state()
    metrics: list[dict[str, Any]] = [] if state is None else list(state["metrics"])
    run.start(fresh=state is None, stale=(PARTICIPANTS_FILE, PREDICTIONS_FILE),
              metrics=[records.RoundMetrics.from_json(m) for m in metrics])

    saved_secret = None if state is None else state.get("secret")
    seeds = SeedTree.for_run(config.training.seed, private=config.privacy.is_private,
                             reproducible=config.privacy.reproducible_noise,
                             saved_secret=None if saved_secret is None else int(saved_secret, 16))
    model = build_global_model(config, data.num_tokens).to(device)
    global_params = initial_parameters(model)
    start_round = 0
    elapsed_before = 0.0
    bucket_sums: dict[str, list[float]] = {"norm": [], "clipped": [], "count": []}
    names = fed.bucket_names()
    if state is not None:
        global_params = {k: v.to(device) for k, v in state["global"].items()}
        start_round = int(state["round"])
        elapsed_before = float(state["elapsed_s"])
        bucket_sums = {k: list(v) for k, v in state["bucket_sums"].items()}
        run.log(f"resuming {out} after round {start_round}/{fed.rounds}")
    if not bucket_sums["count"]:
        bucket_sums = {k: [0.0] * len(names) for k in ("norm", "clipped", "count")}

    if executor is None:
        executor = InProcessExecutor(config, data, settings, device=device)
    elif not hasattr(executor, "run_round"):
        executor = executor(config, data, settings, device=device)
    buckets = fm.bucket_index(data.vocab_sizes, fed.vocab_buckets)
    bucket_of = {i: int(b) for i, b in enumerate(buckets)}
    everyone = np.arange(n)
    if fed.eval_participants is not None and fed.eval_participants < n:
        rng = np.random.default_rng(stream_seed(settings.seed, "fl_eval_subset"))
        interim = np.sort(rng.choice(n, size=fed.eval_participants, replace=False))
    else:
        interim = everyone
    final_eval: fm.ParticipantEvaluation | None = None

    bar = tqdm(total=fed.rounds, initial=start_round, unit="round",
               desc=f"{config.name} {config.privacy.mode} s{settings.seed}", leave=False,
               disable=(None if progress is None else not progress), dynamic_ncols=True)
    try:
        for r in range(start_round, fed.rounds):
            round_index = r + 1
            t_round = time.perf_counter()
            participants = sample_participants(settings, round_index, seeds)
            aggregator = StreamingAggregator(global_params, denominator=fed.participants_per_round,
                                             clip_norm=settings.clip_norm)
            executor.run_round(round_index, participants, global_params, aggregator)
            global_params = server_step(global_params, aggregator.average(), settings,
                                        round_index, seeds)
            stats = aggregator.stats
            by_bucket = fm.stats_by_bucket(stats, bucket_of, names)
            for s in stats:
                b = bucket_of.get(s.participant, -1)
                if b >= 0:
                    bucket_sums["norm"][b] += s.norm
                    bucket_sums["clipped"][b] += 1.0 if s.clipped else 0.0
                    bucket_sums["count"][b] += 1.0
            line: dict[str, Any] = {
                "round": round_index,
                "participants": len(stats),
                "train_loss": _mean([s.loss for s in stats]),
                "local_steps": sum(s.steps for s in stats),
                "train_tokens": sum(s.tokens for s in stats),
                "update_norm": _mean([s.norm for s in stats]),
                "clipped_fraction": _mean([1.0 if s.clipped else 0.0 for s in stats]),
                "bucket_update_norm": by_bucket["update_norm"],
                "bucket_clipped_fraction": by_bucket["clipped_fraction"],
                "round_s": time.perf_counter() - t_round,
            }
            last = round_index == fed.rounds
            if last or round_index % fed.eval_every == 0:
                evaluation = _evaluate(model, global_params, data, everyone if last else interim,
                                       config, seq_len)
                if last:
                    final_eval = evaluation
                overall = evaluation.overall()
                groups = fm.bucket_summary(evaluation, data, fed.vocab_buckets, names)
                line.update(
                    evaluated=overall["participants_evaluated"],
                    test_accuracy=overall["test_accuracy"],
                    test_loss=overall["test_loss"],
                    mean_participant_accuracy=overall["mean_participant_accuracy"],
                    accuracy_excluding_unk=overall["accuracy_excluding_unk"],
                    group_accuracy={g["group"]: g["accuracy"] for g in groups},
                    distinct_predicted=int(np.count_nonzero(evaluation.predicted_counts)),
                )
                if config.privacy.is_private:
                    line["epsilon"], line["epsilon_approximate"] = participant_epsilon(
                        settings, delta=config.privacy.delta, rounds=round_index,
                        method=config.privacy.accountant)
                else:
                    line["epsilon"], line["epsilon_approximate"] = None, None
            line["elapsed_s"] = elapsed_before + time.perf_counter() - t_start
            metrics.append(line)
            run.append_metrics(records.RoundMetrics.from_json(line))
            if last or round_index % fed.checkpoint_every == 0:
                run.save_checkpoint({
                    "round": round_index,
                    "secret": None if seeds.secret is None else f"{seeds.secret:x}",  # secret
                    "global": {k: v.detach().cpu() for k, v in global_params.items()},
                    "metrics": metrics, "elapsed_s": line["elapsed_s"],
                    "bucket_sums": bucket_sums,
                })
            bar.update(1)
            if "test_accuracy" in line:
                acc = line["test_accuracy"]
                bar.set_postfix_str(f"acc {100 * acc:.1f}%" if acc is not None else "")
                run.log(_round_line(config, line))
    finally:
        bar.close()

    if final_eval is None:  # resumed after the last round: evaluate the saved model
        final_eval = _evaluate(model, global_params, data, everyone, config, seq_len)
    wall = elapsed_before + time.perf_counter() - t_start
    results = _build_results(config, settings, calibration, data, final_eval, metrics,
                             bucket_sums, model, wall, engine, seeds.is_secret)
    _write_participants(out / PARTICIPANTS_FILE, final_eval, data, fed.vocab_buckets, names)
    res.write_json(out / PREDICTIONS_FILE, fm.output_diversity(final_eval, data.vocab,
                                                                top=200))
    results = run.finish(records.RunResult.from_json(results))
    return FederatedRun(run_dir=out, results=results, metrics=metrics)


def _round_line(config: ExperimentConfig, m: Mapping[str, Any]) -> str:
    acc = m.get("test_accuracy")
    eps = f"  eps {m['epsilon']:.4g}" if m.get("epsilon") is not None else ""
    return (f"[{config.name} {config.privacy.mode} seed {config.training.seed}] round "
            f"{m['round']}/{config.federated.rounds}  train loss {m['train_loss'] or 0:.3f}  "
            f"test acc {'n/a' if acc is None else f'{100 * acc:.2f}%'}  distinct predicted "
            f"{m.get('distinct_predicted')}  clipped {m['clipped_fraction'] or 0:.2f}{eps}  "
            f"({m['elapsed_s']:.1f} s)")


def _build_results(config: ExperimentConfig, settings: DPFedAvgSettings,
                   calibration: Mapping[str, Any] | None, data: FederatedTextData,
                   evaluation: fm.ParticipantEvaluation, metrics: Sequence[Mapping[str, Any]],
                   bucket_sums: Mapping[str, list[float]], model: nn.Module, wall: float,
                   engine: str, secret_noise: bool) -> dict[str, Any]:
    fed = config.federated
    names = fed.bucket_names()
    overall = evaluation.overall()
    groups = fm.bucket_summary(evaluation, data, fed.vocab_buckets, names)
    min_size = config.evaluation.min_group_test_size
    for b, g in enumerate(groups):
        count = bucket_sums["count"][b]
        g["grad_norm"] = bucket_sums["norm"][b] / count if count else None
        g["clipped_fraction"] = bucket_sums["clipped"][b] / count if count else None
        g["updates"] = int(count)
        g["small_test"] = g["participants_evaluated"] < min_size
        g["highlight"] = g["group"] in config.evaluation.highlight
    round_times = [m["round_s"] for m in metrics if m.get("round_s") is not None]
    return {
        "kind": "federated",
        "experiment": config.name,
        "mode": config.privacy.mode,
        "engine": engine,
        "seed": config.training.seed,
        "data_seed": config.data.seed,
        "config_hash": config_hash(config),
        "rounds": fed.rounds,
        "participants": data.num_participants,
        "participants_per_round": fed.participants_per_round,
        "model_parameters": parameter_count(model),
        "vocabulary": data.num_tokens,
        "overall_accuracy": overall["test_accuracy"],
        "mean_participant_accuracy": overall["mean_participant_accuracy"],
        "accuracy_excluding_unk": overall["accuracy_excluding_unk"],
        "test_loss": overall["test_loss"],
        "train_loss": metrics[-1].get("train_loss") if metrics else None,
        "train_size": int(data.train_sizes().sum()),
        "test_size": overall["test_tokens"],
        "epochs": fed.rounds,
        "steps": sum(int(m.get("local_steps") or 0) for m in metrics),
        "output_diversity": fm.output_diversity(evaluation, data.vocab),
        "highlight": list(config.evaluation.highlight),
        "groups": groups,
        "privacy": _privacy_block(config, settings, calibration, fed.rounds, secret_noise),
        "settings": _resolved_settings(config, settings),
        "data": {k: data.meta.get(k) for k in (
            "participants", "authors_seen", "posts", "mean_posts_per_participant", "tokens",
            "train_tokens", "test_tokens", "unk_fraction", "vocab_coverage", "inputs")},
        "wall_time_s": float(wall),
        "mean_round_s": sum(round_times) / len(round_times) if round_times else None,
    }


def _write_participants(path: Path, evaluation: fm.ParticipantEvaluation,
                        data: FederatedTextData, edges: Sequence[int],
                        names: Sequence[str]) -> None:
    parts = evaluation.participants
    buckets = fm.bucket_index(data.vocab_sizes[parts], edges)
    acc = evaluation.accuracy
    with fileio.atomic_write(path) as f:
        w = csv.writer(f)
        w.writerow(["participant", "vocab_size", "bucket", "train_tokens", "test_tokens",
                    "correct", "accuracy"])
        train_sizes = data.train_sizes()
        for j, pid in enumerate(parts):
            b = int(buckets[j])
            w.writerow([int(pid), int(data.vocab_sizes[pid]), names[b] if b >= 0 else "",
                        int(train_sizes[pid]), int(evaluation.tokens[j]),
                        int(evaluation.correct[j]),
                        "" if np.isnan(acc[j]) else f"{acc[j]:.6f}"])


# --------------------------------------------------------------------------------- variants


NON_PRIVATE_OVERRIDES: tuple[str, ...] = (
    "privacy.clipping=false", "privacy.noise=false", "privacy.noise_multiplier=null",
    "privacy.target_epsilon=null", "privacy.noise_std=null", "privacy.shuffle_accounting=null",
)


def variant_configs(config: ExperimentConfig, overrides: Sequence[str] = ()
                    ) -> dict[str, ExperimentConfig]:
    """The runs of a comparison: ``federated.variants`` (or non-private + the config itself).

    Every variant gets its own overrides, then ``overrides`` (so that command-line ``--set``
    values win), and ``federated.variants`` cleared; the non-private variant is the baseline.
    """
    if config.federated is None:
        raise ValueError(ERR_NOT_FEDERATED.format(name=config.name))
    variants = dict(config.federated.variants)
    if not variants:
        variants = {"non-private": NON_PRIVATE_OVERRIDES, config.privacy.mode: ()}
    built = {name: apply_overrides(config, [*extra, *overrides, "federated.variants={}"])
             for name, extra in variants.items()}
    # the non-private runs first (the baseline), then the others in their (sorted) order
    out = {name: built[name] for name in sorted(
        built, key=lambda k: built[k].privacy.mode != "non-private")}
    if not any(c.privacy.mode == "non-private" for c in out.values()):
        raise ValueError(f"{config.name}: the variants {list(out)} have no non-private run "
                         "to compare with")
    return out
