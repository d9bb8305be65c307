"""Black-box (loss) vs white-box (gradient) canary scores of the one-run audit, on digits.

For each setting and seed: draw the audit data of ``digits-underrep`` (subsampled to half,
``--canaries`` canaries), train the target (non-private, i.e. a broken "DP" run with noise
and clipping off, or DP), score the canaries both ways and print per score the canary AUC
(included vs excluded canaries) and the one-run bound, each score on its own at 95%. The
numbers in docs/audit.md ("White-box canary scores") come from

    python benchmarks/audit_canary_scores.py --out runs/canary-scores
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from disparate.audit import mia, runner
from disparate.audit.canaries import build_audit_data
from disparate.audit.one_run import audit_scores
from disparate.config import load_experiment
from disparate.data import load_dataset

SETTINGS = (  # (mode, epochs, seeds)
    ("non-private", 10, range(4)), ("non-private", 40, range(4)), ("dp", 40, range(6)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/canary-scores"))
    parser.add_argument("--canaries", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    both = runner.AuditOptions(canaries=args.canaries, canary_scores=runner.CANARY_SCORES)
    print("| mode | epochs | seed | claimed eps | " + " | ".join(
        f"{s} canary AUC | {s} bound (right/guesses)" for s in runner.CANARY_SCORES) + " |")
    print("|---|---:|---:|---:|" + "---:|---:|" * len(runner.CANARY_SCORES))
    for mode, epochs, seeds in SETTINGS:
        for seed in seeds:
            config = load_experiment("digits-underrep", [
                f"training.epochs={epochs}", "training.batch_size=64", "data.subsample=0.5",
                f"training.seed={seed}", f"data.seed={seed}"])
            delta = config.privacy.delta  # the DP run's, for the broken run's bound too
            if mode == "non-private":
                config = config.non_private()
            splits = load_dataset("digits", seed=seed)
            data = build_audit_data(config, splits.train, seed=seed, canaries=args.canaries)
            trained = runner.train_and_load(
                config, data.training_set(), splits.test,
                args.out / f"{mode}-{epochs}-{seed}", device="cpu", progress=False, log=None)
            claim = runner.claimed_privacy(trained.results)
            scores = runner.canary_scores(trained.model, data, both, trained.initial)
            cells = []
            for s in runner.CANARY_SCORES:
                inc = data.included
                bound = audit_scores(scores[s], inc, delta=delta)
                cells += [f"{mia.roc_auc(scores[s][inc], scores[s][~inc]):.3f}",
                          f"{bound.epsilon:.2f} ({bound.correct}/{bound.guesses})"]
            eps = "none" if claim is None else f"{claim['epsilon']:.2f}"
            print(f"| {mode} | {epochs} | {seed} | {eps} | " + " | ".join(cells) + " |",
                  flush=True)


if __name__ == "__main__":
    main()
