"""``jaxmia`` command line.

``jaxmia audit`` runs :func:`jaxmia.audit.run` and writes the report; every option of
:class:`jaxmia.audit.AuditConfig` is a flag, and ``--config FILE.toml`` reads the same
names from a file (flags given on the command line win). A user mistake (bad option,
missing dataset, unwritable output directory) prints one line and exits with status 2.
"""

from __future__ import annotations

import os
import signal
import sys


def _interrupted(signum: int, frame: object) -> None:
    try:
        sys.stderr.write("jaxmia: interrupted\n")
        sys.stderr.flush()
    finally:
        os._exit(130)


if __name__ == "__main__" or os.path.basename(sys.argv[0]) in ("jaxmia", "jaxmia.exe"):
    signal.signal(signal.SIGINT, _interrupted)  # the command: Ctrl-C in the imports below

import argparse  # noqa: E402
import atexit  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any, NoReturn  # noqa: E402

from jaxmia._src.audit import fields  # noqa: E402
from jaxmia._src.audit.runtime import (  # noqa: E402
    COMPILATION_CACHE_BYTES,
    Progress,
    repair_compilation_cache,
    use_compilation_cache,
    use_cpu_cores,
)

__all__ = [
    "COMPILATION_CACHE_BYTES",
    "Progress",
    "build_parser",
    "main",
    "repair_compilation_cache",
    "use_compilation_cache",
    "use_cpu_cores",
]


class _Parser(argparse.ArgumentParser):
    argv: tuple[str, ...] = ()

    def parse_args(self, args=None, namespace=None):
        self.argv = tuple(sys.argv[1:] if args is None else args)
        return super().parse_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        parser = self._command()  # unknown options are reported by the top-level parser
        hint = ""
        if message.startswith("unrecognized arguments:"):
            unknown = [w.split("=")[0] for w in message.split()[2:] if w.startswith("--")]
            hint = "".join(f"; did you mean {g}?" for g in map(parser._suggest, unknown) if g)
        self.exit(2, f"jaxmia: error: {message}{hint} (see '{parser.prog} --help')\n")

    @staticmethod
    def _subcommands(parser: argparse.ArgumentParser) -> dict[str, _Parser]:
        subs = (a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return next(subs, {})

    def _command(self) -> _Parser:
        """The (sub)command parser that the parsed words name, e.g. ``jaxmia pool train``."""
        parser = self
        for word in self.argv:
            chosen = self._subcommands(parser).get(word)
            if chosen is None:
                break
            parser = chosen
        return parser

    def _suggest(self, flag: str) -> str | None:
        """The option meant by an unknown ``flag``: one whose setting it names
        (``--num-shadows`` sets ``num_shadows``, which is ``--shadows``) or one spelled
        nearly like it, from this parser and its subcommands."""
        import difflib

        by_dest: dict[str, str] = {}
        parsers = [self]
        for parser in parsers:
            parsers.extend(self._subcommands(parser).values())
            for action in parser._actions:
                long = [o for o in action.option_strings if o.startswith("--")]
                if long and action.dest not in ("help", argparse.SUPPRESS):
                    by_dest.setdefault(action.dest, long[0])
                    by_dest.update({o: o for o in long})
        wanted = flag.lstrip("-").replace("-", "_")
        if wanted in by_dest:
            return by_dest[wanted]
        close = difflib.get_close_matches(flag, [o for o in by_dest if o.startswith("--")], 1)
        return close[0] if close else None


def _add_pool_option(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--pool",
        type=str,
        default=None,
        metavar="DIR",
        help="keep the shadow pool in DIR: a rerun reuses it, an interrupted run resumes, "
        f"more --shadows grow it; one of other settings is refused ({default})",
    )
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="delete the shadow pool in the pool directory first and train it anew (only "
        "a directory that holds nothing but a pool is deleted)",
    )


def _add_audit_options(parser: argparse.ArgumentParser, *, hosts: bool = True) -> None:
    """A flag for every setting of :class:`jaxmia.audit.AuditConfig`, generated from its
    fields' metadata (:func:`jaxmia._src.audit.config.options`), plus the run's own flags (with
    ``hosts``, those of a run over several processes). A registered attack's option whose
    flag is one of the run's is refused in one line (a ValueError)."""
    try:
        _add_flags(parser, hosts)
    except argparse.ArgumentError as e:
        raise ValueError(f"an attack's option clashes with a flag of jaxmia: {e}") from None


def _add_flags(parser: argparse.ArgumentParser, hosts: bool) -> None:
    from jaxmia._src.audit import config

    fields.add_flags(parser, config.options())
    parser.add_argument("--config", type=str, default=None, help="TOML file with the same options")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the results table")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    if not hosts:
        return
    group = parser.add_argument_group(
        "several hosts (JAX multi-process runtime; the pool directory on a file system they share)"
    )
    group.add_argument("--coordinator", help="host:port of process 0")
    group.add_argument("--num-processes", type=int, default=1, help="number of processes")
    group.add_argument("--process-id", type=int, default=0, help="this process's index")


_HELP = {
    "audit": "audit a model trained on a dataset with shadow-model attacks",
    "study": "sweep one factor of the audit and record every attack's AUC and TPR",
    "pool": "train, resume or grow a shadow pool on disk, or describe one",
    "plot-studies": "draw study directories in one figure",
    "dp-audit": "audit DP-SGD: empirical epsilon lower bounds next to the accountant's",
}
"""The subcommands and their one-line help (``jaxmia --help``)."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``jaxmia`` parser: ``audit``, ``study`` and ``pool train`` take a flag per audit
    setting; ``pool info`` describes a pool.

    Args:
      only: build the options of this subcommand alone, the others with their name and
        help only (the command line builds those of the command it runs, so that
        ``jaxmia --help`` does not import JAX); default every subcommand's.
    """
    parser = _Parser(prog="jaxmia", description="JAX-accelerated membership inference audits.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    builders = {
        "audit": _audit_parser,
        "study": _study_parser,
        "pool": _pool_parser,
        "plot-studies": _plots_parser,
        "dp-audit": _dp_parser,
    }
    for name, build in builders.items():
        if only is None or only == name:
            build(sub)
        else:
            sub.add_parser(name, help=_HELP[name])
    return parser


def _audit_parser(sub) -> None:
    from jaxmia._src.attacks import registry

    audit = sub.add_parser(
        "audit",
        help=_HELP["audit"],
        description="Train a target and a shadow pool, run membership-inference attacks "
        f"({', '.join(registry.names())}) and write metrics.json, scores.npz, roc.png, signals.png "
        "and report.md.",
    )
    _add_audit_options(audit)
    _add_pool_option(audit, "default: OUTPUT_DIR/pool")


def _study_parser(sub) -> None:
    from jaxmia import study as studies

    study = sub.add_parser(
        "study",
        help=_HELP["study"],
        description="Run one audit per value of a factor (number of shadows, epochs, "
        "width, classes, access level, defence strength) and write study.json, study.csv "
        "and study.png.",
    )
    study.add_argument("--factor", required=True, help=", ".join(studies.factors()))
    study.add_argument("--values", required=True, help=studies.VALUES_HELP)
    study.add_argument(
        "--retrain",
        action="store_true",
        help="delete this study's shadow pools (OUTPUT_DIR/pools) first and train them anew",
    )
    _add_audit_options(study, hosts=False)  # one host: its audits would race to write


def _pool_parser(sub) -> None:
    pool = sub.add_parser(
        "pool",
        help=_HELP["pool"],
        description="Shadow pools kept on disk (format: see jaxmia._src.engine.store.pools).",
    )
    pool_sub = pool.add_subparsers(dest="pool_command", parser_class=_Parser, required=True)
    train = pool_sub.add_parser(
        "train",
        help="train the shadow pool that 'jaxmia audit' with the same options would use",
        description="Train (or resume, or grow) the shadow pool of an audit and keep it in "
        "--pool DIR; 'jaxmia audit --pool DIR' with the same options then reuses it.",
    )
    _add_audit_options(train)
    _add_pool_option(train, "required")
    info = pool_sub.add_parser("info", help="describe a shadow pool directory")
    info.add_argument("dir", help="the pool directory")
    info.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def _plots_parser(sub) -> None:
    plots = sub.add_parser("plot-studies", help=_HELP["plot-studies"])
    plots.add_argument("out", help="the .png figure to write")
    plots.add_argument("dirs", nargs="+", metavar="DIR", help="study directories (study.json)")
    plots.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def _dp_parser(sub) -> None:
    from jaxmia._src.dp_audit import cli as dp_cli

    dp_cli.add_parser(sub, Progress, use_compilation_cache)  # jaxmia dp-audit


def _chosen(argv: Sequence[str]) -> str:
    """The subcommand the words ``argv`` run ("" for none: ``jaxmia --help``)."""
    first = next((w for w in argv if not w.startswith("-")), "")
    return first if first in _HELP else ""


def _config(args: argparse.Namespace, **defaults: Any) -> Any:
    """The :class:`jaxmia.audit.AuditConfig` of --config, overridden by the flags given, over
    ``defaults`` (:func:`jaxmia._src.audit.fields.from_command_line`)."""
    from jaxmia._src.audit import config

    build = config.AuditConfig.from_dict
    return fields.from_command_line(args, config.options(), "audit", build, defaults)


def _study(args: argparse.Namespace) -> int:
    use_cpu_cores()
    use_compilation_cache()
    from jaxmia import study
    from jaxmia._src.audit import outputs
    from jaxmia._src.engine.store.files import inside

    base = _config(args, output_dir="jaxmia-study")
    factor_values = study.parse_values(args.factor, args.values, base)
    pool_root = inside(base.output_dir, "pools")  # never a link: refused before anything
    names = sorted({study.pool_name(args.factor, v, base) for v in factor_values})
    pool_dirs = [inside(pool_root, name) for name in names]
    outputs.prepare_output_dir(base.output_dir, study.OUTPUTS)
    log = (lambda _: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    with outputs.claim(base.output_dir):
        for pool_dir in pool_dirs:
            _retrain(args, pool_dir, log)
        result = study.run(args.factor, factor_values, base, log=log, pool_root=pool_root)
        written = study.write(result, base.output_dir)
    print(study.table(result))
    if not args.quiet:
        print("wrote " + ", ".join(written.values()))
    return 0


def _pool_dir(args: argparse.Namespace, config: Any) -> str | os.PathLike:
    """``--pool`` or ``OUTPUT_DIR/pool`` (across processes: on a shared file system), the
    latter never a symbolic link (:func:`jaxmia._src.engine.store.files.inside`): the user named the
    output directory, not where a link in it leads."""
    from jaxmia._src.engine.store.files import inside

    return args.pool or inside(config.output_dir, "pool")


def _retrain(args: argparse.Namespace, pool_dir: str, log) -> None:
    """``--retrain``: process 0 removes the pool at ``pool_dir``
    (:func:`jaxmia._src.engine.store.pools.remove`); every process waits for it, so that none reads
    the pool process 0 removes."""
    from jaxmia._src.engine import distributed
    from jaxmia._src.engine.store import pools

    if args.retrain and distributed.is_main_process() and pools.remove(pool_dir):
        log(f"removed the shadow pool in {pool_dir} (--retrain)")
    distributed.barrier("jaxmia-retrain")


def _join(args: argparse.Namespace) -> bool:
    """Joins JAX's multi-process runtime where ``--coordinator`` is given; whether this
    is process 0 (or the only one), which writes the outputs."""
    from jaxmia._src.engine import distributed

    if args.coordinator:
        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    return distributed.is_main_process()


def _pool_train(args: argparse.Namespace) -> int:
    use_cpu_cores()
    use_compilation_cache()
    from jaxmia._src import audit
    from jaxmia._src.engine.store import pools

    if not args.pool:
        raise ValueError("jaxmia pool train needs --pool DIR")
    main_process = _join(args)  # each process trains its devices' models, process 0 reports
    config = _config(args)
    quiet = args.quiet or not main_process
    log = (lambda _: None) if quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    _retrain(args, args.pool, log)
    audit.train_pool(config, args.pool, log=log, progress=None if quiet else Progress())
    if main_process:
        print(pools.info(args.pool))
    return 0


def _plot_studies(args: argparse.Namespace) -> int:
    from jaxmia import multiples

    print("wrote " + multiples.write(args.out, args.dirs))
    return 0


def _pool_info(args: argparse.Namespace) -> int:
    from jaxmia._src.engine.store import pools

    print(pools.info(args.dir))
    return 0


def _audit(args: argparse.Namespace) -> int:
    use_cpu_cores()
    use_compilation_cache()
    from jaxmia._src.audit import outputs, report

    main_process = _join(args)
    config = _config(args)
    pool_dir = _pool_dir(args, config)  # a linked OUTPUT_DIR/pool refused before anything
    if not main_process:
        return _audit_run(args, config, pool_dir, main_process)
    outputs.prepare_output_dir(config.output_dir, report.OUTPUTS)  # fail before training
    with outputs.claim(config.output_dir):
        return _audit_run(args, config, pool_dir, main_process)


def _audit_run(
    args: argparse.Namespace, config: Any, pool_dir: str | os.PathLike, main_process: bool
) -> int:
    """The audit of ``jaxmia audit`` once its options are checked and its output directory
    claimed: train (or read) the pool in ``pool_dir``, attack, write the report."""
    from jaxmia._src import audit
    from jaxmia._src.engine.store import pools

    quiet = args.quiet or not main_process
    log = (lambda _: None) if quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    _retrain(args, pool_dir, log)
    try:
        result = audit.run(
            config, log=log, progress=None if quiet else Progress(), pool_dir=pool_dir
        )
    except pools.PoolError as e:
        if args.pool:
            raise
        raise pools.PoolError(
            f"{e} (the audit keeps its pool in OUTPUT_DIR/pool; choose another with "
            "--pool DIR or --output-dir DIR)"
        ) from None
    if not main_process:
        return 0
    written = result.write(config.output_dir)
    print(result.table())
    if not args.quiet:
        print(
            f"target train/test accuracy {result.target_accuracy['train']:.3f}/"
            f"{result.target_accuracy['test']:.3f}; report: {written['report']}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``jaxmia`` with the words ``argv`` (default: the command line); returns the
    exit status (2 after a user mistake, reported in one line; 130 after Ctrl-C, at any
    moment, also while JAX is still being imported)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("jaxmia: interrupted", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    use_cpu_cores()  # before the parser, whose settings import JAX
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser(only=_chosen(argv))
    except ValueError as e:  # an installed attack plugin that does not load: one line
        print(f"jaxmia: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    commands = {
        "study": _study,
        "audit": _audit,
        "plot-studies": _plot_studies,
        "dp-audit": getattr(args, "handler", None),
    }
    if args.command == "pool":
        commands["pool"] = _pool_train if args.pool_command == "train" else _pool_info
    try:
        return commands[args.command](args)
    except (ValueError, OSError) as e:  # user mistakes: one line, no traceback
        if args.debug:
            raise
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"jaxmia: error: {message}", file=sys.stderr)
        return 2


def entry() -> None:
    """The ``jaxmia`` command: :func:`main`, where Ctrl-C ends the process at once with one
    line and status 130 wherever it arrives (in JAX's import or a gc callback a
    ``KeyboardInterrupt`` is swallowed or crashes the teardown). All writes are atomic.

    Once :func:`main` returns, the exit handlers run and the process ends without the
    interpreter's teardown, which spends about 0.6 s freeing JAX's objects after an audit:
    every file jaxmia writes is complete and synced by then."""
    signal.signal(signal.SIGINT, _interrupted)
    status = main()
    _flush()
    atexit._run_exitfuncs()  # e.g. JAX's shutdown of several processes, logging's flush
    _flush()
    os._exit(status)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or a reader that went away (| head)
            pass


if __name__ == "__main__":
    entry()
