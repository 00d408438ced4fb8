"""edrfleet.fleet.report.formats / html_report: hostile command lines stay inert text."""

from __future__ import annotations

import csv
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from edrfleet.fleet.report.formats import render, terminal_safe
from edrfleet.fleet.report.pull import HostPull
from edrfleet.fleet.report.summary import summarize
from tests.unit.helpers.report_helpers import T0, event, store_with

HOSTILE = [
    "<script>alert('x')</script>",
    '"><img src=x onerror=alert(1)>',
    "\x1b[2J\x1b[H\x1b]0;title\x07\x1b[31mred\x1b[0m",
    "two\nlines\r\nand\ttab\x01soh\x7fdel\x9bcsi",
    "[bold red]markup[/] [link=http://evil]x[/link]",
    "bad utf-8 \udcff\udcfe end",
    "=cmd|' /C calc'!A0",
    "\u202egnp.exe \u2028 \u200b",
    "rm -rf /" + "A" * 100_000,
]


@pytest.fixture()
def summary(tmp_path: Path) -> dict:
    return hostile_summary(tmp_path)


def hostile_summary(tmp_path: Path) -> dict:
    """A summary (with its event lists) of hostile command lines, users, parents and
    working directories; web2 failed to pull."""
    events = [event(f"e{i}", cmd=c, ts=T0 + i, rule=f"rule-{c[:5]}",
                    action="would_block" if i % 3 == 1 else "blocked",
                    severity=("low", "medium", "high", "critical")[i % 4],
                    fields={"user.name": c[:30], "process.working_directory": c[:60],
                            "process.parent.executable": '"><img src=x onerror=alert(2)>',
                            "threat.technique.id": ["T1485"]})
              for i, c in enumerate(HOSTILE)]
    store = store_with(tmp_path, {"web1": events, "web2": [event("w2", action="logged")]})
    pulls = {"web1": HostPull("web1", ok=True),
             "web2": HostPull("web2", ok=False, error="Unreachable: \x1b[31m<b>down</b>")}
    return summarize(store, ["web1", "web2"], pulls=pulls, now=T0 + 60, latest_events=50,
                     per_host_events=5)


def test_terminal_safe_removes_escapes_and_shows_controls() -> None:
    assert terminal_safe("\x1b[31mred\x1b[0m") == "red"
    assert terminal_safe("\x1b]0;title\x07x") == "x"
    assert terminal_safe("a\nb\tc\x00d\x7f") == "a\\nb\\tc\\x00d\\x7f"
    assert terminal_safe("\u202eabc\udcff") == "\\u202eabc\\udcff"
    assert terminal_safe("x" * 10, limit=5) == "xxxx…"
    assert terminal_safe("é ✓ 日本") == "é ✓ 日本"


def _no_control(text: str) -> None:
    bad = [c for c in text if (ord(c) < 0x20 and c not in "\n") or 0x7f <= ord(c) < 0xa0
           or 0xd800 <= ord(c) < 0xe000 or c in "\u202e\u2028\u200b"]
    assert not bad, bad[:5]


def test_table_has_no_escape_sequences_or_markup_effects(summary: dict) -> None:
    for color in (False, True):
        out = render(summary, "table", terminal=color, width=200)
        if color:
            out = re.sub(r"\x1b\[[0-9;]*m", "", out)  # our own colours only: SGR
        _no_control(out)
        assert "[bold red]markup[/]" in out  # printed as typed, not interpreted
        assert "<script>alert('x')</script>" in out
        assert "two\\nlines\\r\\nand\\ttab\\x01soh" in out
        assert max(len(x) for x in out.splitlines()) <= 200
        assert "A" * 1000 not in out  # long lines cut
        assert "web2: not pulled: Unreachable:" in out


def test_json_is_ascii_and_loses_nothing(summary: dict) -> None:
    out = render(summary, "json")
    out.encode("ascii")
    back = json.loads(out)
    cmds = {c["command_line"] for c in back["top_blocked"]}
    assert "<script>alert('x')</script>" in cmds
    assert "two\nlines\r\nand\ttab\x01soh\x7fdel\x9bcsi" in cmds
    assert back["failed_hosts"] == ["web2"]


def test_csv_quotes_every_hostile_value_and_defuses_formulas(summary: dict) -> None:
    rows = list(csv.reader(io.StringIO(render(summary, "csv", section="top"))))
    assert rows[0] == ["action", "rule", "count", "hosts", "variants", "pattern",
                       "command_line", "last"]
    cmds = {r[6] for r in rows[1:]}
    assert "two\nlines\r\nand\ttab\x01soh\x7fdel\x9bcsi" in cmds
    assert '"><img src=x onerror=alert(1)>' in cmds
    assert "'=cmd|' /C calc'!A0" in cmds and "=cmd|' /C calc'!A0" not in cmds
    assert all(len(r) == len(rows[0]) for r in rows)
    on_tty = render(summary, "csv", terminal=True, section="top")
    assert "\x1b" not in on_tty and "\x00" not in on_tty
    hosts = list(csv.reader(io.StringIO(render(summary, "csv", section="hosts"))))
    assert hosts[0][0] == "name" and "'=" not in "".join(hosts[0])
    assert {r[0] for r in hosts[1:]} == {"web1", "web2"}
    assert all(len(r) == len(hosts[0]) for r in hosts)


@pytest.mark.parametrize("section, first", [
    ("hosts", "name"), ("rules", "rule"), ("top", "action"), ("totals", "generated_at"),
    ("timeline", "start")])
def test_csv_is_one_table_per_section(summary: dict, section: str, first: str) -> None:
    """One header, then rows of that table only: a spreadsheet or a SIEM takes it as is."""
    got = list(csv.reader(io.StringIO(render(summary, "csv", section=section))))
    assert got[0][0] == first
    assert all(len(r) == len(got[0]) for r in got)
    rows = {"hosts": summary["hosts"], "rules": summary["rules"],
            "top": summary["top_blocked"] + summary["top_would_block"], "totals": [{}],
            "timeline": summary["timeline"]["buckets"]}[section]
    assert len(got) == 1 + len(rows) > 1
    assert render(summary, "csv") == render(summary, "csv", section="hosts")  # the default


def test_csv_refuses_an_unknown_section(summary: dict) -> None:
    with pytest.raises(ValueError, match="--section 'all'"):
        render(summary, "csv", section="all")


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data):
        self.text.append(data)


def test_html_renders_hostile_values_as_text_and_loads_nothing(summary: dict) -> None:
    out = render(summary, "html")
    p = _Collect()
    p.feed(out)
    assert "script" not in p.tags and "img" not in p.tags
    assert not [a for a, _ in p.attrs if a.startswith("on") or a in ("src", "href")]
    text = "".join(p.text)
    assert "<script>alert('x')</script>" in text
    assert '"><img src=x onerror=alert(1)>' in text
    assert "[bold red]markup[/]" in text
    assert "\x1b" not in out and "\x00" not in out
    assert "default-src 'none'" in out  # CSP: no script, nothing fetched
    assert "<svg" in out and "<rect" in out  # the inline timeline
    assert "http://evil" not in [v for _, v in p.attrs]
    assert "Not pulled: web2" in text
    assert "A" * 4000 in text and "A" * 4100 not in text  # a 100 KB line is cut, not dropped
    out.encode("utf-8")  # lone surrogates did not survive into the file


def test_html_lists_events_per_host_with_severity_colours_and_techniques(summary: dict):
    out = render(summary, "html")
    p = _Collect()
    p.feed(out)
    text = "".join(p.text)
    classes = {v for a, v in p.attrs if a == "class"}
    assert {"sev-low", "sev-medium", "sev-high", "sev-critical", "act-blocked",
            "act-would"} <= classes
    assert classes <= {"n", "cmd", "cmd event", "path", "muted", "failed", "legend muted",
                       "host", "sev-low", "sev-medium", "sev-high", "sev-critical",
                       "act-blocked", "act-would", "act-logged"}
    for heading in ("Newest events", "Per host", "Would block (monitor mode)",
                    "ATT&CK technique", "working directory", "parent", "user", "variants"):
        assert heading in text
    assert "T1485" in text
    assert '"><img src=x onerror=alert(2)>' in text  # the hostile parent, as text
    assert p.tags.count("section") == 2  # web1 and web2 each have events
    assert p.tags.count("table") == 7  # hosts, rules, 2 top lists, events, 2 host sections


def test_html_of_an_empty_period_has_no_chart(tmp_path: Path) -> None:
    s = summarize(store_with(tmp_path, {}), ["web1"], now=T0)
    out = render(s, "html")
    assert "no events in this period" in out and "<rect" not in out


def test_unknown_format_is_refused(summary: dict) -> None:
    with pytest.raises(ValueError, match="--format 'xml'"):
        render(summary, "xml")
