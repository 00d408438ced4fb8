"""The `edrfleet` command: parse arguments, dispatch, map errors to exit codes.

Each command family lives in its own module with a ``register(subparsers)`` function that adds
its parser and sets ``func`` (called with the parsed namespace, returns the exit status).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edrfleet import __version__

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and something failed (a host, a check)
EXIT_USAGE = 2  # bad input: arguments, files, policy


def build_parser() -> argparse.ArgumentParser:
    from edrfleet.cli import (
        agent_cmd,
        deploy_cmd,
        inventory_cmd,
        lab_cmd,
        policy_cmd,
        report_cmd,
    )

    parser = argparse.ArgumentParser(
        prog="edrfleet",
        description="Block high-risk command executions in the kernel, across a fleet.",
    )
    parser.add_argument("--version", action="version", version=f"edrfleet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (policy_cmd, agent_cmd, inventory_cmd, lab_cmd, report_cmd, deploy_cmd):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except (OSError, ValueError) as exc:  # our errors subclass these and carry file:line
        print(f"edrfleet: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
