"""Orchestration of an audit: train the DP model and its non-private twin, attack, bound.

For every seed (``data.seed`` and ``training.seed`` set to it, as in ``disparate compare``):
the audit data are drawn (:mod:`disparate.audit.canaries`), the non-private and the DP model
train on the members plus the included canaries with the one training loop
(:func:`disparate.training.train`, given the data from outside), and ``reference_models``
reference models per mode train on the reference sets. Then, per group and overall:

- the loss-threshold and the offline-LiRA attacks on members vs non-members
  (:mod:`disparate.audit.mia`);
- the one-run lower bound on epsilon from the canaries' losses (:mod:`disparate.audit.one_run`)
  at the run's own delta, set beside the epsilon the DP run claims for its N.

``audit.json`` (:data:`AUDIT_FILE`) holds the per-seed numbers and, over seeds, the mean and
the 95% Student-t interval (:func:`disparate.results.summarize`); run directories are
``seed-<s>/<mode>`` and ``seed-<s>/<mode>-ref-<k>``, beside ``seed-<s>/audit_data.json``, the
fingerprint of the seed's audit data, which ``resume`` checks before reusing finished runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from disparate import results as res
from disparate.audit import mia
from disparate.audit.canaries import AuditData, build_audit_data, check_counts
from disparate.audit.one_run import DEFAULT_GUESS_FRACTIONS, audit_scores, check_guess_fractions
from disparate.audit.whitebox import gradient_alignment_scores
from disparate.config import ExperimentConfig
from disparate.data import DatasetNotFoundError, DatasetSplits, GroupedDataset, load_dataset

__all__ = ["AUDIT_FILE", "ATTACKS", "CANARY_SCORES", "DATA_FILE", "MODES", "OVERALL",
           "AuditOptions", "TrainedModel", "canary_bounds", "canary_scores", "claimed_privacy",
           "data_fingerprint", "headline", "run_audit", "train_and_load"]

AUDIT_FILE = "audit.json"
ATTACKS = ("loss", "lira")
MODES = ("non-private", "dp")
OVERALL = "all"
ERR_NOT_DP = (
    "audit compares a DP model with its non-private twin, but {name!r} is in privacy mode "
    "{mode!r}; expected mode 'dp'"
)
ERR_BETA = "beta={value!r}: expected 0 < beta < 1"
#: How a canary is scored: "loss" (black-box: its loss under the final model, lower is "in")
#: or "gradient" (white-box: :func:`disparate.audit.whitebox.gradient_alignment_scores`).
CANARY_SCORES = ("loss", "gradient")
ERR_NO_INITIAL = "canary score 'gradient' needs the initial model: pass initial="
ERR_CANARY_SCORES = (
    "canary_scores={value!r}: expected a non-empty tuple of distinct names from {choices}"
)
ERR_RESUME_DATA = (
    "cannot resume {path}: its runs were trained on other audit data (fingerprint {saved}, "
    "now {current}); resume with the same experiment, --set overrides and audit options, or "
    "start again without --resume"
)
ERR_RESUME_UNKNOWN = (
    "cannot resume {path}: it holds runs but no {name} to check their audit data against; "
    "start again without --resume"
)
DATA_FILE = "audit_data.json"
Log = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class AuditOptions:
    """How an audit is run; checked before any training.

    Attributes:
        canaries: M, spread evenly over the groups (0: no one-run bound).
        holdout_fraction: Share of each group's training examples held out as non-members.
        reference_models: Offline-LiRA reference models per mode (even, >= 2).
        beta: 1 - the confidence of the lower bound.
        guess_fractions: The guesser's guess counts, as fractions of the canaries.
        canary_scores: The canary scores tried (:data:`CANARY_SCORES`); with several, each
            is tested at ``beta / len(canary_scores)`` and the best bound is reported.
    """

    canaries: int = 200
    holdout_fraction: float = 0.3
    reference_models: int = 2
    beta: float = 0.05
    guess_fractions: tuple[float, ...] = DEFAULT_GUESS_FRACTIONS
    canary_scores: tuple[str, ...] = ("loss",)

    def __post_init__(self) -> None:
        check_counts(canaries=self.canaries, holdout_fraction=self.holdout_fraction,
                     reference_models=self.reference_models)
        if not (isinstance(self.beta, (int, float)) and 0 < self.beta < 1):
            raise ValueError(ERR_BETA.format(value=self.beta))
        object.__setattr__(self, "guess_fractions", check_guess_fractions(self.guess_fractions))
        scores = self.canary_scores
        if (isinstance(scores, str) or not isinstance(scores, Sequence) or not scores
                or len(set(scores)) != len(scores) or not set(scores) <= set(CANARY_SCORES)):
            raise ValueError(ERR_CANARY_SCORES.format(value=scores,
                                                      choices=", ".join(CANARY_SCORES)))
        object.__setattr__(self, "canary_scores", tuple(scores))


@dataclass(frozen=True)
class TrainedModel:
    """A trained model, its ``results.json`` and the model it started from (white-box)."""

    model: nn.Module
    results: dict[str, Any]
    initial: nn.Module | None = None


def train_and_load(config: ExperimentConfig, train_set: GroupedDataset,
                   test_set: GroupedDataset, run_dir: str | Path, *, device: str,
                   progress: bool | None, log: Log | None, resume: bool = False
                   ) -> TrainedModel:
    """Train ``config`` on ``train_set`` (the one training loop); load the model it saved.

    ``resume``: continue ``run_dir`` from its checkpoint (a finished run is not retrained);
    otherwise start it again.
    """
    from disparate.training import build_model_for, train

    result = train(config, run_dir, resume=resume, overwrite=not resume,
                   splits=DatasetSplits(train_set, test_set), device=device,
                   progress=progress, log=log)
    initial = build_model_for(config, train_set)  # theta_0: the seeded model_init stream
    model = build_model_for(config, train_set)
    state = torch.load(result.run_dir / res.CHECKPOINT_FILE, map_location="cpu",
                       weights_only=True)
    model.load_state_dict(state["model"])
    return TrainedModel(model.to(device), result.results, initial.to(device))


def claimed_privacy(results: dict[str, Any]) -> dict[str, Any] | None:
    """The (epsilon, delta) a run's ``results.json`` claims, with its statement; None if not DP."""
    privacy = results["privacy"]
    if not privacy.get("is_private"):
        return None
    head = privacy["epsilon"][privacy["accountant"]]
    return {"epsilon": float(head["epsilon"]), "delta": float(privacy["delta"]),
            "accountant": privacy["accountant"], "statement": privacy["statement"],
            "train_size": int(results["train_size"])}


def _group_masks(groups: np.ndarray, names: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    return [(name, groups == g) for g, name in enumerate(names)] + [
        (OVERALL, np.ones(groups.shape, dtype=bool))]


def _attack(scores: np.ndarray, is_member: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    pos, neg = scores[mask & is_member], scores[mask & ~is_member]
    if pos.size == 0 or neg.size == 0:
        return {"members": int(pos.size), "nonmembers": int(neg.size)}
    return mia.attack_metrics(pos, neg)


def canary_scores(model: nn.Module, data: AuditData, options: AuditOptions,
                  initial: nn.Module | None = None) -> dict[str, np.ndarray]:
    """Each of ``options.canary_scores`` for the M canaries (higher: "in")."""
    canaries = data.canaries()
    out: dict[str, np.ndarray] = {}
    for kind in options.canary_scores:
        if kind == "loss":
            out[kind] = -mia.per_example_outputs(model, canaries.inputs, canaries.labels)[0]
        else:
            if initial is None:
                raise ValueError(ERR_NO_INITIAL)
            out[kind] = gradient_alignment_scores(initial, model, canaries.inputs,
                                                  canaries.labels)
    return out


def canary_bounds(model: nn.Module, data: AuditData, *, delta: float, options: AuditOptions,
                  initial: nn.Module | None = None) -> dict[str, dict[str, Any] | None]:
    """One-run bound per group (that group's canaries) and overall; None without canaries.

    With several canary scores, each is tested at ``beta / len(options.canary_scores)``
    (Bonferroni) and the best bound is kept, with ``score`` naming it and ``by_score``
    giving every score's bound.
    """
    scores = canary_scores(model, data, options, initial)
    level = options.beta / len(options.canary_scores)
    out: dict[str, dict[str, Any] | None] = {}
    for name, mask in _group_masks(data.canaries().groups.numpy(), data.pool.group_names):
        if not mask.any():
            out[name] = None
            continue
        tried = {kind: audit_scores(s[mask], data.included[mask], delta=delta, beta=level,
                                    guess_fractions=options.guess_fractions).to_dict()
                 for kind, s in scores.items()}
        kind = max(tried, key=lambda k: tried[k]["epsilon_lower_bound"])  # first of the best
        out[name] = {**tried[kind], "confidence": 1 - options.beta, "score": kind,
                     "by_score": {k: t["epsilon_lower_bound"] for k, t in tried.items()}}
    return out


def _audit_mode(data: AuditData, target: TrainedModel, references: Sequence[TrainedModel],
                options: AuditOptions, delta: float, highlight: Sequence[str]) -> dict[str, Any]:
    """Attacks and one-run bounds of one trained model, per group and overall."""
    pool = data.pool
    population = np.concatenate([data.members, data.nonmembers])
    is_member = np.r_[np.ones(data.members.size, bool), np.zeros(data.nonmembers.size, bool)]
    idx = torch.as_tensor(population)
    x, y = pool.inputs[idx], pool.labels[idx]
    loss, phi = mia.per_example_outputs(target.model, x, y)
    ref_phi = np.stack([mia.per_example_outputs(r.model, x, y)[1] for r in references])
    out_mask = np.stack([~np.isin(population, s) for s in data.reference_sets])
    scores = {"loss": -loss, "lira": mia.lira_offline_scores(phi, ref_phi, out_mask)}
    bounds = canary_bounds(target.model, data, delta=delta, options=options,
                           initial=target.initial)
    groups = pool.groups.numpy()[population]
    out: dict[str, Any] = {}
    roc: dict[str, list[float]] = {}
    balanced = is_member | np.isin(population, data.balanced_nonmembers)
    for name, mask in _group_masks(groups, pool.group_names):
        if name == OVERALL:
            mask = balanced
        entry: dict[str, Any] = {a: _attack(scores[a], is_member, mask) for a in ATTACKS}
        entry["one_run"] = bounds[name]
        out[name] = entry
        if (name in highlight or name == OVERALL) and "auc" in entry["lira"]:
            roc[name] = mia.roc_on_grid(scores["lira"][mask & is_member],
                                        scores["lira"][mask & ~is_member])
    accuracy = {g["group"]: g["accuracy"] for g in target.results["groups"]}
    accuracy[OVERALL] = target.results["overall_accuracy"]
    return {"groups": out, "roc_lira": roc, "accuracy": accuracy,
            "claim": claimed_privacy(target.results)}


def data_fingerprint(data: AuditData) -> str:
    """SHA-256 of who is a member, a non-member, a canary (with its label and bit), a
    reference-set example: equal fingerprints, equal training sets."""
    digest = hashlib.sha256()
    for arr in (data.members, data.nonmembers, data.canary_index, data.canary_labels,
                data.included, *data.reference_sets):
        digest.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def _check_or_record(seed_dir: Path, data: AuditData, *, resume: bool) -> None:
    """Write the seed's fingerprint; resuming, first refuse runs of other audit data."""
    path = seed_dir / DATA_FILE
    current = data_fingerprint(data)
    if resume and path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))["sha256"]
        if saved != current:
            raise ValueError(ERR_RESUME_DATA.format(path=seed_dir, saved=saved[:12],
                                                    current=current[:12]))
        return
    if resume and seed_dir.is_dir() and any(seed_dir.iterdir()):
        raise ValueError(ERR_RESUME_UNKNOWN.format(path=seed_dir, name=DATA_FILE))
    seed_dir.mkdir(parents=True, exist_ok=True)
    res.write_json(path, {"sha256": current})


def run_audit(config: ExperimentConfig, out_dir: str | Path, *, seeds: Sequence[int],
              options: AuditOptions = AuditOptions(), device: str = "cpu",
              progress: bool | None = None, log: Log | None = None, resume: bool = False
              ) -> dict[str, Any]:
    """Audit ``config`` (mode ``dp``) and its non-private twin for every seed; write audit.json.

    ``resume``: reuse the finished runs of an earlier call on the same audit data (checked by
    fingerprint) and continue unfinished ones from their checkpoints, then attack again.
    """
    from disparate.comparison import seeded

    if config.privacy.mode != "dp":
        raise ValueError(ERR_NOT_DP.format(name=config.name, mode=config.privacy.mode))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    highlight = list(config.evaluation.highlight)
    per_seed: list[dict[str, Any]] = []
    for seed in seeds:
        cfg = seeded(config, seed)
        dc = cfg.data
        try:
            splits = load_dataset(dc.dataset, data_dir=dc.data_dir, download=dc.download,
                                  seed=dc.seed, **dict(dc.options))
        except DatasetNotFoundError as exc:
            raise ValueError(str(exc)) from exc
        data = build_audit_data(cfg, splits.train, seed=seed, canaries=options.canaries,
                                holdout_fraction=options.holdout_fraction,
                                reference_models=options.reference_models)
        train_set = data.training_set()
        seed_entry: dict[str, Any] = {"seed": seed, "sizes": _sizes(data)}
        base = out / f"seed-{seed}"
        _check_or_record(base, data, resume=resume)
        for mode, run_cfg in (("non-private", cfg.non_private()), ("dp", cfg)):
            if log is not None:
                log(f"seed {seed}: training the {mode} model on {len(train_set)} examples "
                    f"({int(data.included.sum())} of {data.included.size} canaries included)")
            target = train_and_load(run_cfg, train_set, splits.test, base / mode,
                                    device=device, progress=progress, log=log, resume=resume)
            refs = [train_and_load(run_cfg, data.pool.subset(s), splits.test,
                                   base / f"{mode}-ref-{k}", device=device,
                                   progress=progress, log=None, resume=resume)
                    for k, s in enumerate(data.reference_sets)]
            seed_entry[mode] = _audit_mode(data, target, refs, options, cfg.privacy.delta,
                                           highlight)
        per_seed.append(seed_entry)
    audit = _aggregate(config, per_seed, options, seeds)
    res.write_json(out / AUDIT_FILE, audit)
    return audit


def _sizes(data: AuditData) -> dict[str, dict[str, int]]:
    names = data.pool.group_names
    groups = data.pool.groups.numpy()

    def count(idx: np.ndarray) -> list[int]:
        return np.bincount(groups[idx], minlength=len(names)).tolist()

    members, nonmembers = count(data.members), count(data.nonmembers)
    canaries = count(data.canary_index)
    included = count(data.canary_index[data.included])
    table = {name: {"members": members[g], "nonmembers": nonmembers[g], "canaries": canaries[g],
                    "canaries_included": included[g]} for g, name in enumerate(names)}
    table[OVERALL] = {key: sum(v[key] for v in table.values())
                      for key in ("members", "nonmembers", "canaries", "canaries_included")}
    return table


METRICS = ("auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "advantage")


def _aggregate(config: ExperimentConfig, per_seed: Sequence[dict[str, Any]],
               options: AuditOptions, seeds: Sequence[int]) -> dict[str, Any]:
    """Mean and 95% interval over seeds of every metric; the bounds beside the claims."""
    names = [*per_seed[0]["sizes"].keys()]
    modes: dict[str, Any] = {}
    for mode in MODES:
        rows = []
        for name in names:
            entries = [s[mode]["groups"][name] for s in per_seed]
            row: dict[str, Any] = {"group": name,
                                   "highlight": name in config.evaluation.highlight,
                                   "accuracy": res.summarize(
                                       [s[mode]["accuracy"].get(name) for s in per_seed])}
            for attack in ATTACKS:
                row[attack] = {m: res.summarize([e[attack].get(m) for e in entries])
                               for m in METRICS}
            row["attack_counts"] = {k: [e["lira"][k] for e in entries]
                                    for k in ("members", "nonmembers")}
            bounds = [e["one_run"] for e in entries]
            row["one_run"] = {"epsilon_lower_bound": [None if b is None
                                                      else b["epsilon_lower_bound"]
                                                      for b in bounds],
                              "per_seed": bounds}
            rows.append(row)
        modes[mode] = {"groups": rows,
                       "roc_lira": {"fpr": list(mia.FPR_GRID),
                                    "tpr": per_seed[0][mode]["roc_lira"], "seed": seeds[0]}}
    claims = [s["dp"]["claim"] for s in per_seed]
    overall_bounds = [s["dp"]["groups"][OVERALL]["one_run"] for s in per_seed]
    exceeded = [b is not None and b["epsilon_lower_bound"] > c["epsilon"]
                for b, c in zip(overall_bounds, claims, strict=True)]
    return {
        "experiment": config.name,
        "description": config.description,
        "seeds": list(seeds),
        "options": dataclasses.asdict(options),
        "privacy_description": config.privacy.describe(),
        "claims": claims,
        "sizes": [s["sizes"] for s in per_seed],
        "modes": modes,
        "claim_exceeded": exceeded,
        "headline": headline(claims, [s["dp"]["groups"] for s in per_seed], options,
                             config.evaluation.highlight),
        "per_seed": list(per_seed),
    }


def _eps(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2f}"


def headline(claims: Sequence[dict[str, Any]], dp_groups: Sequence[dict[str, Any]],
             options: AuditOptions, highlight: Sequence[str]) -> str:
    """'claimed (4.96, 1e-05)-DP; empirical lower bound 0.00 (95%, one-run audit, ...)'."""
    eps = sorted({round(c["epsilon"], 2) for c in claims})
    claim = _eps(eps[0]) if len(eps) == 1 else f"{_eps(eps[0])}-{_eps(eps[-1])}"
    conf = f"{100 * (1 - options.beta):g}%"

    def bounds(name: str) -> str:
        values = [g[name]["one_run"]["epsilon_lower_bound"] for g in dp_groups
                  if g[name]["one_run"] is not None]
        return ", ".join(_eps(v) for v in values) or "n/a"

    seeds = "one per seed, " if len(dp_groups) > 1 else ""
    scored = ("" if options.canary_scores == ("loss",)
              else f", {' and '.join(options.canary_scores)} scores")
    text = (f"claimed ({claim}, {claims[0]['delta']:g})-DP; empirical lower bound "
            f"{bounds(OVERALL)} ({seeds}{conf}, one-run audit, {options.canaries:,} canaries"
            f"{scored})")
    groups = [h for h in highlight if h in dp_groups[0]]
    if groups:
        text += "; per group: " + "; ".join(f"{h}: {bounds(h)}" for h in groups)
    return text
