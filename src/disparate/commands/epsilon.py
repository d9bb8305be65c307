"""``disparate epsilon``: privacy loss of a DP-SGD configuration, or the noise for a target.

Examples::

    disparate epsilon --dataset-size 60000 --batch-size 256 --noise-multiplier 0.8 \\
        --epochs 60 --delta 1e-6
    disparate epsilon --dataset-size 60000 --batch-size 256 --target-epsilon 8 \\
        --epochs 60 --delta 1e-6 --method pld --json
    disparate epsilon --dataset-size 54649 --batch-size 256 --target-epsilon 5 --epochs 4 \\
        --clipping-policy dpsgd-f --option count_noise_std=12.8 --groups 10

With ``--clipping-policy`` the mechanism is the run's :class:`~disparate.privacy.plan.DPPlan`:
every step composes the gradient's Gaussian with the policy's auxiliary statistics, and z is
the gradient's noise multiplier (calibrated for the composed total).
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from disparate.privacy.accounting import (
    ERR_PLD_WITHOUT_REPLACEMENT,
    METHODS,
    SAMPLINGS,
    SHUFFLE_ACCOUNTINGS,
    EpsilonReport,
    bounded_epsilons,
    calibrate_noise_multiplier,
    compute_epsilon,
    steps_per_epoch,
    supported_methods,
    total_steps,
)

NAME = "epsilon"
DEFAULT_DELTA = 1e-6  # the paper's delta

ERR_METHODS_WITH_TARGET = "--methods applies only without --target-epsilon; use --method"
ERR_METHOD_WITHOUT_TARGET = "--method applies only with --target-epsilon; use --methods"
ERR_SHUFFLE_ACCOUNTING = "--shuffle-accounting applies only with --sampling shuffle"
ERR_TOLERANCE_WITHOUT_TARGET = "--tolerance applies only with --target-epsilon"
ERR_OPTION = "--option {value!r}: expected KEY=VALUE with a number VALUE, e.g. count_noise_std=4"
ERR_OPTION_WITHOUT_POLICY = "--option and --groups apply only with --clipping-policy"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``epsilon`` subcommand and set ``func=run``."""
    parser = subparsers.add_parser(
        NAME,
        help="privacy loss epsilon of DP-SGD (RDP, classic RDP, PLD) or noise for a target",
        description=(
            "Compute epsilon of DP-SGD with dp_accounting by three methods: 'rdp' (tight "
            "RDP conversion), 'rdp_classic' (TF Privacy 2019 orders and classic "
            "conversion, as in the paper) and 'pld' (privacy loss distributions). With "
            "--target-epsilon, solve for the noise multiplier instead."
        ),
    )
    parser.add_argument("--dataset-size", type=int, required=True, metavar="N")
    parser.add_argument("--batch-size", type=int, required=True, metavar="B")
    length = parser.add_mutually_exclusive_group(required=True)
    length.add_argument("--epochs", type=int, help="epochs of ceil(N/B) steps each")
    length.add_argument("--steps", type=int, help="number of DP-SGD steps")
    noise = parser.add_mutually_exclusive_group(required=True)
    noise.add_argument("--noise-multiplier", type=float, metavar="Z")
    noise.add_argument(
        "--target-epsilon",
        type=float,
        metavar="E",
        help="solve for the smallest noise multiplier whose epsilon is <= E",
    )
    parser.add_argument(
        "--delta", type=float, default=DEFAULT_DELTA, help="default: %(default)g (the paper's)"
    )
    parser.add_argument(
        "--sampling",
        choices=SAMPLINGS,
        default="poisson",
        help="how batches are drawn in training (default: %(default)s)",
    )
    parser.add_argument(
        "--shuffle-accounting",
        choices=SHUFFLE_ACCOUNTINGS,
        default=None,
        help="with --sampling shuffle: account as Poisson (the paper's approximation, "
        "default) or as sampling without replacement (replace-one relation, RDP only)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=None,
        help="methods to report (default: all that support the sampling)",
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        default=None,
        help="with --target-epsilon: the method to calibrate with (default: rdp)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="with --target-epsilon: absolute tolerance on the noise multiplier (default 1e-4)",
    )
    parser.add_argument("--clipping-policy", default=None, metavar="METHOD",
                        help="a clipping policy of disparate mitigate (dpsgd-f, adaptive-clip, "
                        "...): its auxiliary statistics are composed in every step")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of --clipping-policy (repeatable)")
    parser.add_argument("--groups", type=int, default=None, metavar="K",
                        help="number of groups, for a policy that clips by group")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)
    return parser


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _report_dict(report: EpsilonReport) -> dict[str, Any]:
    data = report.to_dict()
    data["epsilon"] = _json_number(report.epsilon)
    return data


def _format_epsilon(value: float) -> str:
    if not math.isfinite(value):
        return "inf"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3g}"


def _header(args: argparse.Namespace, steps: int, report: EpsilonReport) -> list[str]:
    if args.epochs is not None:
        per_epoch = steps_per_epoch(args.dataset_size, args.batch_size)
        length = f"{steps} ({args.epochs} epochs x {per_epoch} steps per epoch)"
    else:
        length = str(steps)
    return [
        f"  dataset size N      {report.dataset_size}",
        f"  batch size b        {report.batch_size} (q = b/N = {report.sampling_probability:.6g})",
        f"  noise multiplier z  {report.noise_multiplier:g}",
        f"  steps               {length}",
        f"  delta               {report.delta:g}",
        f"  sampling            {report.sampling}",
        f"  neighbouring        {report.neighboring_relation}",
    ] + ([f"  auxiliary z         {', '.join(f'{a:g}' for a in report.aux_noise_multipliers)} "
          f"(--clipping-policy {args.clipping_policy}, composed in every step)"]
         if report.aux_noise_multipliers else [])


def _notes(reports: list[EpsilonReport]) -> list[str]:
    notes = list(dict.fromkeys(r.note for r in reports if r.note))
    return [f"note: {note}" for note in notes]


def _validate(args: argparse.Namespace) -> None:
    target = args.target_epsilon is not None
    if target and args.methods is not None:
        raise ValueError(ERR_METHODS_WITH_TARGET)
    if not target and args.method is not None:
        raise ValueError(ERR_METHOD_WITHOUT_TARGET)
    if not target and args.tolerance is not None:
        raise ValueError(ERR_TOLERANCE_WITHOUT_TARGET)
    if args.shuffle_accounting is not None and args.sampling != "shuffle":
        raise ValueError(ERR_SHUFFLE_ACCOUNTING)
    if args.clipping_policy is None and (args.option or args.groups is not None):
        raise ValueError(ERR_OPTION_WITHOUT_POLICY)


def _aux_noise_multipliers(args: argparse.Namespace) -> tuple[float, ...]:
    """The noise multipliers of ``--clipping-policy``'s statistics, from its plan."""
    from disparate.privacy.plan import DPPlan

    options: dict[str, float] = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        try:
            options[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise ValueError(ERR_OPTION.format(value=item))
    plan = DPPlan(setting="dp", dataset_size=args.dataset_size, batch_size=args.batch_size,
                  sampling=args.sampling, shuffle_accounting=args.shuffle_accounting,
                  delta=args.delta, max_grad_norm=1.0, method=args.clipping_policy,
                  method_options=options, num_groups=args.groups)
    return plan.aux_noise_multipliers


def run(args: argparse.Namespace) -> int:
    """Print epsilons (or the calibrated noise multiplier) as a table or JSON."""
    _validate(args)
    if args.epochs is not None:
        steps = total_steps(args.dataset_size, args.batch_size, args.epochs)
    else:
        steps = args.steps
    common: dict[str, Any] = {
        "dataset_size": args.dataset_size,
        "batch_size": args.batch_size,
        "steps": steps,
        "delta": args.delta,
        "sampling": args.sampling,
        "shuffle_accounting": args.shuffle_accounting or "poisson",
    }
    if args.clipping_policy is not None:
        common["aux_noise_multipliers"] = _aux_noise_multipliers(args)
    if args.target_epsilon is not None:
        return _run_target(args, steps, common)
    return _run_epsilons(args, steps, common)


def _run_epsilons(args: argparse.Namespace, steps: int, common: dict[str, Any]) -> int:
    if args.methods is not None:
        methods = list(dict.fromkeys(args.methods))
    else:
        methods = list(METHODS)
    available = supported_methods(common["sampling"], common["shuffle_accounting"])
    if args.methods is not None:
        computed = methods  # an explicitly requested unsupported method is an error
    else:
        computed = [m for m in methods if m in available]
    reports, skipped = bounded_epsilons(noise_multiplier=args.noise_multiplier,
                                        methods=computed, **common)
    if not reports:  # only methods beyond the accountant's bound were asked for
        raise ValueError("; ".join(skipped.values()))
    unavailable = {m: skipped.get(m, ERR_PLD_WITHOUT_REPLACEMENT)
                   for m in methods if m not in reports}

    if args.json:
        out: dict[str, Any] = {m: _json_number(r.epsilon) for m, r in reports.items()}
        out.update(dict.fromkeys(unavailable))
        out["steps"] = steps
        details: dict[str, Any] = {m: _report_dict(r) for m, r in reports.items()}
        details.update({m: {"method": m, "unavailable": why} for m, why in unavailable.items()})
        out["details"] = details
        print(json.dumps(out, indent=2, allow_nan=False))
        return 0

    first = next(iter(reports.values()))
    lines = ["DP-SGD privacy loss", *_header(args, steps, first), ""]
    width = max(len(m) for m in methods)
    lines.append(f"  {'method':<{width}}  {'epsilon':>8}  how it was computed")
    for method in methods:
        if method in unavailable:
            lines.append(f"  {method:<{width}}  {'n/a':>8}  {unavailable[method]}")
            continue
        report = reports[method]
        flag = "~" if report.approximate else " "
        pad = " " * (width + 2 + 8 + 2)
        eps = flag + _format_epsilon(report.epsilon)
        lines.append(f"  {method:<{width}}  {eps:>8}  accountant: {report.accountant}")
        lines.append(f"  {pad}conversion: {report.conversion}")
    if any(r.approximate for r in reports.values()):
        lines.append("")
        lines.append("~ approximate: the accounting does not match the training sampler")
    notes = _notes(list(reports.values()))
    if notes:
        lines.append("")
        lines.extend(notes)
    print("\n".join(lines))
    return 0


def _run_target(args: argparse.Namespace, steps: int, common: dict[str, Any]) -> int:
    method = args.method or "rdp"
    extra: dict[str, Any] = {} if args.tolerance is None else {"tolerance": args.tolerance}
    z = calibrate_noise_multiplier(
        target_epsilon=args.target_epsilon, method=method, **common, **extra
    )
    report = compute_epsilon(noise_multiplier=z, method=method, **common)

    if args.json:
        out = {
            "method": method,
            "target_epsilon": args.target_epsilon,
            "noise_multiplier": z,
            "epsilon": _json_number(report.epsilon),
            "steps": steps,
            "details": _report_dict(report),
        }
        print(json.dumps(out, indent=2, allow_nan=False))
        return 0

    approx = " (approximate)" if report.approximate else ""
    lines = [
        f"noise multiplier z = {z:.4f} gives epsilon = {report.epsilon:.4f}{approx} "
        f"<= target {args.target_epsilon:g} (method {method})",
        *_header(args, steps, report),
        f"  accountant          {report.accountant}",
        f"  conversion          {report.conversion}",
    ]
    notes = _notes([report])
    if notes:
        lines.append("")
        lines.extend(notes)
    print("\n".join(lines))
    return 0
