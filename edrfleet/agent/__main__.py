"""Entry point of the host agent (``python3 -m edrfleet.agent`` or the agent zipapp).

Runs on the host's system python with bcc; reads a compiled bundle (JSON), never YAML.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from edrfleet.agent.pull import add_pull_arguments
from edrfleet.agent.pull import main as pull_main


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``agent run``; shared with ``edrfleet agent run``."""
    p.add_argument("--policy", required=True, type=Path, help="policy file to enforce")
    p.add_argument("--spool", type=Path, default=Path("/var/lib/edrfleet"),
                   help="directory for events.jsonl and status.json (default %(default)s)")
    p.add_argument("--host-name", default=None, help="host.name in events (default: hostname)")
    p.add_argument("--backend", choices=("auto", "lsm", "sigkill"), default="auto",
                   help="require a blocking backend (default: probe, lsm where it loads)")
    p.add_argument("--bpf-dir", type=Path, default=None, help="where bpf/edrfleet.c lives")
    p.add_argument("--syslog", default=None,
                   help="also send RFC 5424 syslog: udp://HOST:PORT, tcp://HOST:PORT, "
                        "tls://HOST:PORT or a unix socket path")
    p.add_argument("--syslog-ca", default=None, metavar="FILE",
                   help="CA certificates (PEM) a tls:// syslog server is checked against "
                        "(default: the system's)")
    p.add_argument("--webhook", default=None, type=_webhook_url, metavar="URL",
                   help="also POST batches of events to this http(s) URL")
    p.add_argument("--webhook-format", choices=("json", "es-bulk", "splunk-hec"),
                   default="json", help="request body (default %(default)s)")
    p.add_argument("--webhook-ca", default=None, metavar="FILE",
                   help="CA certificates (PEM) an https webhook is checked against "
                        "(default: the system's)")
    p.add_argument("--webhook-header-file", default=None, metavar="FILE",
                   help="'Name: value' lines sent with each request (credentials); read at "
                        "start and on SIGHUP")
    p.add_argument("--outputs", default=None, metavar="FILE", dest="outputs_file",
                   help="JSON file naming the syslog and webhook outputs (deploy writes "
                        "<config_dir>/outputs.json); read at start and on SIGHUP; instead of "
                        "--syslog/--webhook")
    p.add_argument("--spool-max-bytes", type=int, default=64 * 1024 * 1024,
                   help="rotate events.jsonl past this size (default %(default)s)")
    p.add_argument("--perfbuf", action="store_true", help="use a perf buffer, not a ring buffer")
    p.add_argument("--print-bpf", action="store_true", help=argparse.SUPPRESS)


def _webhook_url(url: str) -> str:
    """A URL with ``user:pass@`` would show its password to every user in ``ps``."""
    if "@" in url.partition("://")[2].partition("/")[0]:
        raise argparse.ArgumentTypeError(
            "the URL carries credentials (user:pass@), which `ps` shows to every local user; "
            "put 'Authorization: Basic <base64 of user:pass>' in --webhook-header-file instead")
    return url


def options_from(args: argparse.Namespace):
    from edrfleet.agent.run import Options

    opts = Options(policy=args.policy, spool=args.spool, backend=args.backend,
                   bpf_dir=args.bpf_dir, syslog=args.syslog, syslog_ca=args.syslog_ca,
                   webhook=args.webhook, webhook_format=args.webhook_format,
                   webhook_ca=args.webhook_ca, webhook_header_file=args.webhook_header_file,
                   outputs_file=args.outputs_file,
                   perfbuf=args.perfbuf, print_bpf=args.print_bpf,
                   spool_max_bytes=args.spool_max_bytes)
    if args.host_name:
        opts.host_name = args.host_name
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edrfleet-agent")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_arguments(sub.add_parser("run", help="enforce a compiled policy in the foreground"))
    add_pull_arguments(sub.add_parser("pull", help="print the spool's events after a cursor"))
    from edrfleet.agent import status, supervise

    supervise.add_arguments(sub.add_parser(
        "supervise", help="keep `run` alive in the background (hosts without systemd)"))
    supervise.add_service_arguments(sub.add_parser(
        "service", help="start, stop, restart or reload the agent (supervisor or systemd)"))
    status.add_wait_arguments(sub.add_parser(
        "wait", help="wait until status.json shows a policy in force (or a failure); print it",
        description="Exit 0: in force; 1: the agent failed or refused the reload; 3: timeout."))
    check = sub.add_parser("check", help="verify a compiled bundle would load here (no BPF)")
    check.add_argument("bundle", type=Path, help="compiled policy bundle (JSON)")
    check.add_argument("--bpf-dir", type=Path, default=None, help="where bpf/edrfleet.h lives")
    args = parser.parse_args(argv)
    if args.command == "pull":
        return pull_main(args)
    if args.command == "supervise":
        return supervise.supervise(args)
    if args.command == "service":
        return supervise.service(args)
    if args.command == "wait":
        return status.wait_main(args)
    if args.command == "check":
        from edrfleet.agent.check import run_check

        return run_check(args.bundle, args.bpf_dir)
    from edrfleet.agent.bundle_file import read_bundle  # here: `pull` starts without it
    from edrfleet.agent.run import run_agent

    return run_agent(options_from(args), read_bundle)


if __name__ == "__main__":
    sys.exit(main())
