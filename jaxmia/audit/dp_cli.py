"""The ``jaxmia dp-audit`` command: a flag per :class:`~jaxmia.audit.dp_audit.DPAuditConfig`
setting, the command line that reproduces a configuration, and the run (options and the
output directory checked before any training). :mod:`jaxmia.cli` adds the subcommand.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable

from jaxmia import engine
from jaxmia.audit import dp_report, fields, outputs
from jaxmia.audit.dp_audit import DPAuditConfig, run

__all__ = ["add_arguments", "add_parser", "command", "command_for"]

_HELP = {
    "epsilons": "comma-separated accountant epsilons to audit (inf: no noise)",
    "delta": "DP delta of the accountant and the bounds",
    "models": "models trained per epsilon, half with each canary",
    "dataset": "bundled dataset with an input feature that is 0 in every record",
    "records": "size of the fixed training set (a seeded random subset)",
    "hidden": "hidden units of the MLP",
    "epochs": "passes over the training set",
    "batch_size": "expected batch size (Poisson rate batch_size / records)",
    "learning_rate": "plain SGD step size",
    "clip": "DP-SGD per-example L2 clipping norm",
    "canaries": "input canaries of the one-run audit",
    "confidence": "probability that each lower bound holds",
    "repetitions": "simulated audits of the ideal mechanism per epsilon",
    "seed": "seed of the data subset, canaries and models",
    "output_dir": "where to write dp_audit.json, report.md and dp_audit.png",
}


_numbers = fields.comma_list(float, "numbers")


def _epsilon_list(text: str) -> tuple[float, ...]:
    epsilons = _numbers(text)
    if len(set(epsilons)) < len(epsilons):
        raise argparse.ArgumentTypeError(f"an epsilon is repeated in {text!r}")
    return epsilons


def add_arguments(parser) -> None:
    """Adds a flag per :class:`DPAuditConfig` field (``--batch-size``, ``-o``) and the
    run's own flags (``--pool``, ``-q``, ``--debug``) to an ``argparse`` parser."""
    for field in dataclasses.fields(DPAuditConfig):
        flags = ["--" + field.name.replace("_", "-")] + (
            ["-o"] if field.name == "output_dir" else []
        )
        kind = _epsilon_list if field.name == "epsilons" else type(field.default)
        shown = (
            ",".join(f"{e:g}" for e in field.default) if field.name == "epsilons" else field.default
        )
        parser.add_argument(
            *flags,
            dest=field.name,
            type=kind,
            default=None,
            help=f"{_HELP[field.name]} (default: {shown})",
        )
    parser.add_argument(
        "--pool",
        default=None,
        metavar="DIR",
        help="keep the trained models in DIR: a rerun reuses them, an interrupted run resumes",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the table")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def command_for(config: DPAuditConfig) -> str:
    """The ``jaxmia dp-audit`` command line that reproduces ``config``."""
    parts = ["jaxmia", "dp-audit"]
    for field in dataclasses.fields(DPAuditConfig):
        value = getattr(config, field.name)
        if value != field.default:
            shown = ",".join(f"{e:g}" for e in value) if field.name == "epsilons" else str(value)
            parts += ["--" + field.name.replace("_", "-"), shown]
    return " ".join(parts)


def command(args, progress: engine.ProgressFn | None) -> int:
    """Runs ``jaxmia dp-audit`` from parsed ``args``: checks the options and the output
    directory before training, prints progress and the table, writes the outputs."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(DPAuditConfig)}
    config = DPAuditConfig(**{k: v for k, v in given.items() if v is not None})
    outputs.prepare_output_dir(config.output_dir, dp_report.OUTPUTS)
    log = (lambda _: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    with outputs.claim(config.output_dir):
        result = run(config, pool_dir=args.pool, log=log, progress=None if args.quiet else progress)
        written = dp_report.write(result, config.output_dir, command_for(config))
    print(dp_report.table(result))
    if not args.quiet:
        print("wrote " + ", ".join(written.values()))
    return 0


def add_parser(
    subparsers, progress: Callable[[], engine.ProgressFn], prepare: Callable[[], None]
) -> argparse.ArgumentParser:
    """Adds ``dp-audit`` to the ``jaxmia`` subcommands; its ``handler`` default runs
    :func:`command` after ``prepare()`` (the CLI's compilation cache), with ``progress()``
    (the CLI's progress lines) unless ``--quiet``."""
    parser = subparsers.add_parser(
        "dp-audit",
        help="audit DP-SGD: empirical epsilon lower bounds next to the accountant's",
        description="Train thousands of DP-SGD models with and without canaries (a white-box "
        "Dirac gradient canary, a mislabelled record, a one-run audit) per accountant "
        "epsilon, bound epsilon from below (Clopper-Pearson, GDP, one run) next to the "
        "ideal mechanism's bounds, and write dp_audit.json, report.md and dp_audit.png.",
    )
    add_arguments(parser)

    def handler(args: argparse.Namespace) -> int:
        prepare()
        return command(args, None if args.quiet else progress())

    parser.set_defaults(handler=handler)
    return parser
