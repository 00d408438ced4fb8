"""The `edrfleet` command: parse arguments, dispatch, map errors to exit codes.

Each command family lives in its own module with a ``register(subparsers)`` function that adds
its parser and sets ``func`` (called with the parsed namespace, returns the exit status).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edrfleet import __version__
from edrfleet.cli.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from edrfleet.errors import EdrfleetError, InputError


def build_parser() -> argparse.ArgumentParser:
    from edrfleet.cli import (
        agent_cmd,
        config_cmd,
        deploy_cmd,
        events_cmd,
        inventory_cmd,
        lab_cmd,
        paths_cmd,
        policy_cmd,
        report_cmd,
    )

    parser = argparse.ArgumentParser(
        prog="edrfleet",
        description="Block high-risk command executions in the kernel, across a fleet.",
    )
    parser.add_argument("--version", action="version", version=f"edrfleet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (policy_cmd, agent_cmd, inventory_cmd, lab_cmd, report_cmd, events_cmd,
                   deploy_cmd, config_cmd, paths_cmd):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # the fleet commands say first what was interrupted, and how far
        print(f"edrfleet: interrupted (Ctrl-C) during {args.command}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    # Messages may carry a host's stderr: printed inert (edrfleet.fleet.report.inert).
    except EdrfleetError as exc:  # its message names the file:line or the host, and the fix
        _error(exc)
        return exit_status(exc)
    except (OSError, ValueError) as exc:  # a file that cannot be read; the agent's own errors
        _error(exc)
        return EXIT_USAGE


def _error(exc: BaseException) -> None:
    from edrfleet.fleet.report.inert import terminal_lines

    print(f"edrfleet: error: {terminal_lines(exc)}", file=sys.stderr)


def exit_status(exc: EdrfleetError) -> int:
    """2 for bad input (fix it and rerun), 1 for a host that failed or was unreachable."""
    return EXIT_USAGE if isinstance(exc, InputError) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
