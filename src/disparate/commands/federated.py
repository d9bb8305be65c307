"""``disparate federated``: DP-FedAvg next-word prediction on Reddit (paper Section 4.4, Fig. 3).

Subcommands::

    disparate federated preprocess reddit-fl --data-dir ~/data/reddit
    disparate federated run reddit-fl-small --data-dir ~/data/reddit --out runs/fl-small
    disparate federated run reddit-fl --variant non-private --out runs/fl-np
    disparate federated run reddit-fl --engine flower --supernodes 8 --ray-address auto ...
    disparate federated compare reddit-fl-small --data-dir ~/data/reddit --out runs/fig3
    disparate federated compare reddit-fl-small --seeds 3 --jobs 3 --out runs/fig3
    disparate federated epsilon reddit-fl --participants 80000
    disparate federated report runs/fig3
    disparate federated sample-dump /tmp/reddit/RC_2017-11.zst --authors 300

``compare`` trains the experiment's variants (``federated.variants``: the paper's non-private,
S = 10 and S = 8 models) x seeds as a sweep over a run store
(:func:`disparate.federated.comparison.compare_federated`) and writes Figure 3; ``run`` trains
one configuration.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from disparate.commands.run import add_sweep_arguments
from disparate.config import ConfigError, ExperimentConfig, load_experiment

NAME = "federated"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", metavar="EXPERIMENT",
                        help="a federated preset (reddit-fl, reddit-fl-s8, reddit-fl-small) "
                             "or a .yaml file")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override (repeatable), e.g. "
                                                  "federated.rounds=10")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="directory of the pushshift dumps (sets data.data_dir)")


def _training(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, metavar="T",
                        help="torch threads (sets training.num_threads)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar per round (default: on a terminal)")
    parser.add_argument("--quiet", action="store_true", help="no per-evaluation log lines")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``federated`` and its subcommands; set ``func=run``."""
    parser = subparsers.add_parser(
        NAME,
        help="DP-FedAvg language model on Reddit: preprocess, run, compare (Figure 3)",
        description=("Federated learning of a next-word model on Reddit comments with "
                     "DP-FedAvg (paper Section 4.4 and Figure 3): accuracy by participant "
                     "vocabulary size and output diversity of non-private and DP models."),
    )
    sub = parser.add_subparsers(dest="federated_command", metavar="SUBCOMMAND")

    p = sub.add_parser("preprocess", help="read the dumps once and cache the participants")
    _common(p)

    p = sub.add_parser("run", help="train one federated configuration")
    _common(p)
    _training(p)
    p.add_argument("--variant", default=None,
                   help="train this entry of federated.variants (e.g. non-private, dp-S8)")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory")
    p.add_argument("--resume", action="store_true", help="continue from checkpoint.pt")
    p.add_argument("--overwrite", action="store_true", help="start again in DIR")
    p.add_argument("--engine", choices=("simulation", "flower"), default="simulation",
                   help="in-process simulation (default) or Flower (pip install "
                        "'disparate[flower]')")
    p.add_argument("--supernodes", type=int, default=2, metavar="K",
                   help="with --engine flower: Flower SuperNodes (workers), default 2")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --engine flower: join this Ray cluster (e.g. 'auto')")
    p.add_argument("--cpus-per-client", type=float, default=1.0,
                   help="with --engine flower: CPUs per ClientApp (default 1)")
    p.add_argument("--gpus-per-client", type=float, default=0.0,
                   help="with --engine flower: GPUs per ClientApp (default 0)")

    p = sub.add_parser("compare", help="train the variants and write Figure 3 and a report")
    _common(p)
    _training(p)
    p.add_argument("--out", required=True, metavar="DIR", help="comparison directory")
    p.add_argument("--seeds", type=int, default=1, metavar="K",
                   help="seeds 0..K-1 (training.seed), default 1")
    p.add_argument("--only", nargs="+", default=None, metavar="VARIANT",
                   help="train only these variants (finished ones are always reported)")
    add_sweep_arguments(p)
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue unfinished runs and reuse finished ones (default); "
                        "--no-resume refuses runs that already hold files")
    p.add_argument("--overwrite", action="store_true",
                   help="train every run of the variants trained again from the start")

    p = sub.add_parser("epsilon", help="participant-level epsilon of a federated config")
    _common(p)
    p.add_argument("--participants", type=int, default=None, metavar="N",
                   help="number of participants N (default: from the preprocessed data)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("report", help="re-render the report of a comparison directory")
    p.add_argument("directory", metavar="DIR")

    p = sub.add_parser("sample-dump", help="write a small synthetic dump in pushshift format")
    p.add_argument("path", metavar="FILE", help="e.g. /tmp/reddit/RC_2017-11.zst "
                                                "(.zst, .bz2, .xz, .gz or plain)")
    p.add_argument("--authors", type=int, default=200, help="number of authors (default 200)")
    p.add_argument("--posts", type=int, nargs=2, default=(150, 500), metavar=("MIN", "MAX"),
                   help="posts per author (default 150 500, the paper's filter)")
    p.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run, parser=parser)
    return parser


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(args.overrides)
    if getattr(args, "data_dir", None):
        overrides.append(f"data.data_dir={args.data_dir}")
    if getattr(args, "threads", None):
        overrides.append(f"training.num_threads={args.threads}")
    return overrides


def _load(args: argparse.Namespace) -> ExperimentConfig:
    config = load_experiment(args.experiment, _overrides(args))
    if config.federated is None:
        raise ConfigError(f"{args.experiment}: not a federated experiment (no 'federated' "
                          "section); federated presets: reddit-fl, reddit-fl-s8, "
                          "reddit-fl-small")
    return config


def _log(args: argparse.Namespace) -> Any:
    return None if getattr(args, "quiet", False) else (lambda line: print(line, flush=True))


def run(args: argparse.Namespace) -> int:
    """Dispatch to the subcommand."""
    command = args.federated_command
    if command is None:
        args.parser.print_help()
        return 2
    return {"preprocess": _preprocess, "run": _run, "compare": _compare, "epsilon": _epsilon,
            "report": _report, "sample-dump": _sample_dump}[command](args)


def _preprocess(args: argparse.Namespace) -> int:
    from disparate.federated.simulation import load_federated_data

    data = load_federated_data(_load(args), log=lambda line: print(line, flush=True))
    meta = {k: data.meta.get(k) for k in (
        "participants", "authors_seen", "posts", "mean_posts_per_participant", "tokens",
        "train_tokens", "test_tokens", "unk_fraction", "vocab_size", "vocab_coverage",
        "preprocessing_s")}
    print(f"cache: {data.path}")
    print(json.dumps(meta, indent=2))
    return 0


def _run(args: argparse.Namespace) -> int:
    from disparate.federated.simulation import train_federated, variant_configs

    config = _load(args)
    if args.variant is not None:
        variants = variant_configs(config, _overrides(args))  # --set wins over the variant
        if args.variant not in variants:
            raise ValueError(f"--variant={args.variant!r}: expected one of {list(variants)}")
        config = variants[args.variant]
    if args.engine == "flower":
        if args.supernodes < 1:
            raise ValueError(f"--supernodes={args.supernodes}: expected an integer >= 1 "
                             "(the number of Flower virtual workers)")
        from disparate.federated.flower_app import run_flower

        run_flower(config, args.out, supernodes=args.supernodes, ray_address=args.ray_address,
                   num_cpus_per_client=args.cpus_per_client,
                   num_gpus_per_client=args.gpus_per_client, resume=args.resume,
                   overwrite=args.overwrite, progress=args.progress, device=args.device,
                   log=_log(args))
        from disparate.results import load_results

        results = load_results(args.out)
    else:
        results = train_federated(config, args.out, resume=args.resume,
                                  overwrite=args.overwrite, device=args.device,
                                  progress=args.progress, log=_log(args)).results
    acc = results["overall_accuracy"]
    print(f"test accuracy {100 * acc:.2f}%  mean participant accuracy "
          f"{100 * results['mean_participant_accuracy']:.2f}%  distinct predicted words "
          f"{results['output_diversity']['distinct_predicted']}  "
          f"({results['wall_time_s']:.0f} s, {results['mean_round_s']:.2f} s/round)")
    print(results["privacy"]["statement"])
    print(f"results: {Path(args.out) / 'results.json'}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from disparate.federated.comparison import compare_federated

    if args.seeds < 1:
        raise ValueError(f"--seeds={args.seeds}: expected an integer >= 1")
    config = _load(args)
    log = _log(args)
    outcome = compare_federated(config, args.out, seeds=list(range(args.seeds)),
                                overrides=_overrides(args), only=args.only,
                                runs_dir=args.runs_dir, resume=args.resume,
                                overwrite=args.overwrite, backend=args.backend, jobs=args.jobs,
                                address=args.address, device=args.device, log=log, echo=log,
                                progress=args.progress)
    for v in outcome["figure3"]["variants"]:
        if v.get("groups"):
            print(f"{v['name']:>12}: test acc {100 * v['overall_accuracy']['mean']:.2f}%  "
                  f"distinct predicted {v['distinct_predicted']['mean']:.0f}")
        else:
            print(f"{v['name']:>12}: not finished")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def _epsilon(args: argparse.Namespace) -> int:
    from disparate.federated.dpfedavg import participant_epsilons
    from disparate.federated.simulation import load_federated_data, resolve_settings

    config = _load(args)
    n = args.participants
    if n is None:
        n = load_federated_data(config).num_participants
    if not config.privacy.is_private:
        print(f"not differentially private: {config.privacy.describe()}")
        return 0
    settings, _ = resolve_settings(config, n)
    reports, skipped = participant_epsilons(settings, delta=config.privacy.delta)
    if args.json:
        out = {m: (r.epsilon if math.isfinite(r.epsilon) else None) for m, r in reports.items()}
        out["details"] = {m: r.to_dict() for m, r in reports.items()}
        out["skipped"] = skipped
        print(json.dumps(out, indent=2, default=str))
        return 0
    print(f"DP-FedAvg, participant level: N={n}, C={settings.participants_per_round} "
          f"(q={settings.sampling_rate:.6g}), S={settings.clip_norm:g}, "
          f"z={settings.noise_multiplier:g} (noise std on the average "
          f"{settings.noise_std:g}), {settings.rounds} rounds, delta={config.privacy.delta:g}")
    for method, rep in reports.items():
        flag = "~" if rep.approximate else " "
        print(f"  {method:<12}{flag}{rep.epsilon:.6g}")
    for method, why in skipped.items():
        print(f"  {method:<12} {why}")
    first = next(iter(reports.values()))
    if first.note:
        print(f"note: {first.note}")
    if first.epsilon > 100:
        print("WARNING: an epsilon this large is no meaningful privacy guarantee")
    return 0


def _report(args: argparse.Namespace) -> int:
    from disparate.federated.report import write_federated_report

    directory = Path(args.directory)
    if not (directory / "figure3.json").is_file():
        raise ValueError(f"{directory}: no figure3.json (written by 'disparate federated "
                         "compare')")
    written = write_federated_report(directory)
    print(f"report: {written['markdown']}")
    return 0


def _sample_dump(args: argparse.Namespace) -> int:
    from disparate.synthetic.reddit import sample_population, write_dump

    authors = sample_population(args.authors, posts=tuple(args.posts), seed=args.seed)
    path = write_dump(args.path, authors, seed=args.seed)
    print(f"wrote {path} ({path.stat().st_size} bytes, {args.authors} authors)")
    return 0
