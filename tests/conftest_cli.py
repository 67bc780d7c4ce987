"""Runs ``jaxmia`` in-process for tests (importable: pytest puts ``tests/`` on the path)."""

from jaxmia import cli


def run_cli(args, capsys):
    """``(exit status, stdout, stderr)`` of ``jaxmia ARGS``."""
    try:
        rc = cli.main(args)
    except SystemExit as e:  # argparse exits on its own
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err
