"""``edrfleet policy check|compile|test``: validate, compile and try a policy offline.

FILE is a policy YAML or a compiled bundle JSON (detected by content).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from edrfleet.cli import fleet_args
from edrfleet.cli.exits import EXIT_OK, EXIT_USAGE
from edrfleet.policy import PolicyError, PolicyErrors, simulate
from edrfleet.policy.bundle import bundle_summary
from edrfleet.policy.compile import compile_file
from edrfleet.policy.corpus import read_corpus, run_corpus
from edrfleet.policy.errors import inert


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "policy", help="check, compile and test a policy offline",
        description="Check, compile and test a policy (YAML) or a compiled bundle (JSON).")
    sub = parser.add_subparsers(dest="policy_command", required=True, metavar="ACTION")

    check = sub.add_parser("check", help="validate and compile; print a summary")
    check.add_argument("file", metavar="FILE", help="policy YAML or bundle JSON")
    check.set_defaults(func=cmd_check)

    comp = sub.add_parser("compile", help="write the bundle JSON")
    comp.add_argument("file", metavar="FILE", help="policy YAML or bundle JSON")
    comp.add_argument("-o", "--output", metavar="OUT", help="output file (default: stdout)")
    comp.add_argument("--summary-json", metavar="FILE",
                      help='also write {"rules": N, "mode": M, "sha256": H, "out": OUT} to FILE '
                           "('-': stdout, then -o is needed)")
    comp.set_defaults(func=cmd_compile)

    test = sub.add_parser(
        "test", help="which rule matches a command, and the action",
        usage=TEST_USAGE, description="Decide one command line with the policy, as the kernel "
        "would, and print the matching rules and the action.")
    _test_options(test)
    test.add_argument("argv", nargs=argparse.REMAINDER, metavar="FILE [OPTIONS] -- CMD [ARGS...]",
                      help="policy YAML or bundle JSON, then the command line after '--'")
    test.set_defaults(func=cmd_test)

    render = sub.add_parser(
        "render", help="one host's policy, rendered from templates/policy.yaml.j2",
        description="Render (and compile, to check it) the policy of one inventory host with its "
        "merged variables and the facts gathered from it over SSH.")
    fleet_args.add_inventory(render)
    render.add_argument("host", metavar="HOST")
    render.add_argument("--no-facts", action="store_true",
                        help="do not connect: render with edrfleet_facts = {}")
    render.set_defaults(func=cmd_render)
    from edrfleet.cli import policy_sigma

    policy_sigma.register(sub)


TEST_USAGE = ("edrfleet policy test FILE [--format text|json] [--uid N] [--filename PATH] "
              "[--parent PATH] [--ancestor PATH]... [--inet-stdio self|parent]... [--cwd DIR] "
              "[--fileless] -- CMD [ARGS...]\n"
              "       edrfleet policy test FILE [--format text|json] --corpus JSONL")


def _test_options(parser: argparse.ArgumentParser, defaults: bool = True) -> None:
    keep = {} if defaults else {"default": argparse.SUPPRESS}
    parser.add_argument("--format", choices=("text", "json"), **({"default": "text"} | keep))
    parser.add_argument("--uid", type=int, help="uid of the exec (default: yours)",
                        **({"default": None} | keep))
    parser.add_argument("--filename", metavar="PATH", **({"default": None} | keep),
                        help="path as executed (default: CMD, looked up on $PATH)")
    parser.add_argument("--parent", metavar="PATH", **({"default": None} | keep),
                        help="the parent's executable (default: unknown, parent rules do not "
                        "match)")
    parser.add_argument("--ancestor", metavar="PATH", action="append",
                        **({"default": []} | keep),
                        help="an executable above the parent, nearest first (repeat it; "
                        "match.ancestor sees the parent and these)")
    parser.add_argument("--inet-stdio", metavar="WHOSE", action="append",
                        choices=("self", "parent"), **({"default": []} | keep),
                        help="fd 0, 1 or 2 of the new process (self) or of its parent is a "
                        "network socket (repeat for both)")
    parser.add_argument("--cwd", metavar="DIR", **({"default": None} | keep),
                        help="working directory of the exec (default: unknown, cwd rules do "
                        "not match and relative path arguments are not joined)")
    parser.add_argument("--corpus", metavar="JSONL", **({"default": None} | keep),
                        help="decide every command line of a JSONL corpus offline and print "
                        "a table by category")
    parser.add_argument("--fileless", action="store_true", **({"default": False} | keep),
                        help="the executable is run from memory or a deleted file (memfd)")


def _report(exc: PolicyError) -> int:
    errors = exc.errors if isinstance(exc, PolicyErrors) else [exc]
    for err in errors:
        print(err.format(), file=sys.stderr)
    return EXIT_USAGE


def cmd_check(args: argparse.Namespace) -> int:
    try:
        bundle = compile_file(args.file)
    except PolicyError as exc:
        return _report(exc)
    print(inert(f"{args.file}: OK"))
    for line in bundle_summary(bundle):
        print(inert(f"  {line}"))
    return EXIT_OK


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def cmd_compile(args: argparse.Namespace) -> int:
    from edrfleet.fleet.deploy.hostpolicy import compile_file_cached

    if args.summary_json == "-" and not args.output:
        print("policy compile: --summary-json - needs -o OUT (stdout cannot hold both)",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        text, bundle = compile_file_cached(args.file)
    except PolicyError as exc:
        return _report(exc)
    sha, rules, mode = bundle["sha256"], len(bundle["rules"]), bundle["mode"]
    if args.output:
        _write(args.output, text)
        print(f"{args.output}: {rules} rules, mode {mode}, sha256 {sha}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if args.summary_json:  # what the role reads (roles/edrfleet_agent/tasks/policy.yml)
        summary = json.dumps({"rules": rules, "mode": mode, "sha256": sha,
                              "out": args.output or "-"}) + "\n"
        if args.summary_json == "-":
            sys.stdout.write(summary)
        else:
            _write(args.summary_json, summary)
    return EXIT_OK


FAIL_CLOSED = {
    "unscanned": "the command line is longer than the kernel scans for this executable, "
                 "which has block rules (limits.unscanned: block)",
    "dropped": "more rule groups apply to this executable than the kernel evaluates, and one "
               "left out has a block rule (limits.unscanned: block)",
}


def describe(bundle: dict[str, Any], decision: Any) -> str:
    """One readable line for a decision (control characters escaped)."""
    return inert(_describe(bundle, decision))


def _describe(bundle: dict[str, Any], decision: Any) -> str:
    severity = {r["id"]: r["severity"] for r in bundle["rules"]}
    others = [r for r in decision.rules if r != decision.rule]
    tail = f" (also matched: {', '.join(others)})" if others else ""
    if decision.rule is None and decision.reason:
        verb = "would be blocked (monitor mode)" if bundle["mode"] == "monitor" else "blocked"
        return f"{verb}: {FAIL_CLOSED.get(decision.reason, decision.reason)}{tail}"
    if decision.rule is None:
        return "allowed: no rule matched"
    verb = {"allow": "allowed by", "log": "logged by", "block": "blocked by"}[decision.action]
    if decision.action == "block" and bundle["mode"] == "monitor":
        verb = "would be blocked (monitor mode) by"
    return f"{verb} rule '{decision.rule}' ({severity[decision.rule]}){tail}"


def cmd_test(args: argparse.Namespace) -> int:
    # argparse cannot mix options after a positional with a "-- CMD" tail through nested
    # subparsers, so the tail is split here: FILE and options before '--', the command after.
    argv = list(args.argv)
    split = argv.index("--") if "--" in argv else len(argv)
    head, command = argv[:split], argv[split + 1:]
    mini = argparse.ArgumentParser(prog="edrfleet policy test", usage=TEST_USAGE)
    mini.add_argument("file", metavar="FILE")
    _test_options(mini, defaults=False)
    opts = mini.parse_args(head, namespace=argparse.Namespace(
        format=args.format, uid=args.uid, filename=args.filename, corpus=args.corpus,
        parent=args.parent, cwd=args.cwd, fileless=args.fileless, ancestor=args.ancestor,
        inet_stdio=args.inet_stdio))
    if opts.corpus and command:
        mini.error("give either --corpus JSONL or a command line after '--', not both")
    if not command and not opts.corpus:
        mini.error("give the command line after '--' (or --corpus JSONL)")
    try:
        bundle = compile_file(opts.file)
    except PolicyError as exc:
        return _report(exc)
    if opts.corpus:
        return _test_corpus(bundle, opts.corpus, opts.format)
    uid = os.getuid() if opts.uid is None else opts.uid
    decision = simulate(bundle, command, filename=opts.filename, uid=uid, parent=opts.parent,
                        cwd=opts.cwd, fileless=opts.fileless, ancestors=opts.ancestor,
                        inet_stdio=opts.inet_stdio)
    if opts.format == "json":
        print(json.dumps(decision.to_json()))
    else:
        print(describe(bundle, decision))
        for note in decision.notes:
            host = " (depends on the host)" if note.host else ""
            print(inert(f"  judged: {note.kind}: {note.detail}{host}"))
    return EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:
    from edrfleet.fleet.deploy.preview import preview_host_policy
    from edrfleet.fleet.inventory.load import load_inventory

    inventory = load_inventory(fleet_args.inventory_sources(args))
    fleet_args.warn_typos([h for h in inventory.hosts.values() if h.name == args.host])
    hp = preview_host_policy(inventory, args.host, facts=not args.no_facts,
                             connect_timeout=fleet_args.config()["timeout"])
    sys.stdout.write(hp.yaml_text)
    print(f"{args.host}: {len(hp.bundle['rules'])} rules, sha256 {hp.sha256}", file=sys.stderr)
    return EXIT_OK


def _test_corpus(bundle: dict[str, Any], path: str, fmt: str) -> int:
    report = run_corpus(bundle, read_corpus(path))
    if fmt == "json":
        print(json.dumps({"corpus": path, **report.to_json()}))
        return EXIT_OK
    print(f"{'category':<26} {'lines':>6} {'block':>6} {'log':>6} {'allow':>6} {'blocked':>8}")
    for name, n in report.categories.items():
        print(f"{name:<26} {n.total:>6} {n.block:>6} {n.log:>6} {n.allow:>6} "
              f"{n.blocked_pct:>7.1f}%")
    return EXIT_OK
