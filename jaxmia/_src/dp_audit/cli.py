"""The ``jaxmia dp-audit`` command: a flag and a TOML key per
:class:`~jaxmia._src.dp_audit.pipeline.DPAuditConfig` setting (from its fields, with the machinery
of ``jaxmia audit``'s settings, :mod:`jaxmia._src.audit.fields`), the command line that
reproduces a configuration, and the run (options and the output directory checked before
any training). :mod:`jaxmia.cli` adds the subcommand.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from jaxmia._src import engine
from jaxmia._src.audit import fields, outputs
from jaxmia._src.dp_audit import report as dp_report
from jaxmia._src.dp_audit.pipeline import DPAuditConfig, run

__all__ = ["OPTIONS", "add_arguments", "add_parser", "command", "command_for", "config_of"]

OPTIONS = fields.options_of(DPAuditConfig)
"""The settings of :class:`DPAuditConfig` as the command line and TOML see them, in
declaration order."""


def add_arguments(parser) -> None:
    """Adds a flag per :class:`DPAuditConfig` setting (``--batch-size``, ``-o``),
    ``--config FILE.toml`` and the run's own flags (``--pool``, ``-q``, ``--debug``) to an
    ``argparse`` parser."""
    fields.add_flags(parser, OPTIONS)
    parser.add_argument(
        "--config",
        type=str,
        default=None,
        help="TOML file with the same settings (top level or a [dp-audit] table); flags win",
    )
    parser.add_argument(
        "--pool",
        default=None,
        metavar="DIR",
        help="keep the trained models in DIR: a rerun reuses them, an interrupted run resumes",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the table")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def config_of(args: argparse.Namespace) -> DPAuditConfig:
    """The settings of ``--config`` (if given), overridden by the flags given, checked
    (an error names a setting as it was given: flag or key)."""
    return fields.from_command_line(args, OPTIONS, "dp-audit", DPAuditConfig.from_dict)


def command_for(config: DPAuditConfig) -> str:
    """The ``jaxmia dp-audit`` command line that reproduces ``config``."""
    values = {option.name: getattr(config, option.name) for option in OPTIONS}
    return fields.command_line(["jaxmia", "dp-audit"], OPTIONS, values)


def command(args, progress: engine.ProgressFn | None) -> int:
    """Runs ``jaxmia dp-audit`` from parsed ``args``: checks the options and the output
    directory before training, prints progress and the table, writes the outputs."""
    config = config_of(args)
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
