"""``edrfleet agent run``: the host agent in the foreground, fed from a YAML policy or a bundle.

On the controller's venv the policy may be YAML: it is compiled here, and compiled again on
every SIGHUP, so a policy that fails validation never replaces the running one.
"""

from __future__ import annotations

import argparse
from typing import Any

from edrfleet.agent.__main__ import add_run_arguments, options_from


def _run(args: argparse.Namespace) -> int:
    from edrfleet.agent.run import run_agent
    from edrfleet.policy.compile import compile_file

    return run_agent(options_from(args), compile_file)


def register(subparsers: Any) -> None:
    agent = subparsers.add_parser("agent", help="the host agent")
    sub = agent.add_subparsers(dest="agent_command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="enforce a policy in the foreground (what the unit starts)")
    add_run_arguments(run)
    run.set_defaults(func=_run)
    from edrfleet.agent.pinned import disarm

    off = sub.add_parser("disarm", help="end enforcement: stop the agent, unpin its programs "
                                        "(killing or stopping the agent does not)")
    disarm.add_arguments(off)
    off.set_defaults(func=disarm.main)
