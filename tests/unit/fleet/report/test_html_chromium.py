"""The HTML report in a real browser: Debian's chromium, headless, loads a report full of
hostile command lines; the DOM it ends with has the tables and nothing a payload would have
done, and its screenshot is a rendered page, not a blank one.

A control page carrying the same payloads unescaped, loaded the same way, shows that this
browser does run them (so the report's check could fail).  chromium is a test-only tool:
``scripts/setup.sh --test`` installs it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from edrfleet.fleet.report.formats import render
from edrfleet.fleet.report.pull import HostPull
from edrfleet.fleet.report.summary import summarize
from tests.unit.helpers.png import pixels
from tests.unit.helpers.report_helpers import T0, event, store_with

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                "(fix: scripts/setup.sh --test, as root)")

PWN = "document.body.setAttribute('data-pwned','1')"
PAYLOADS = [f'<img src=x onerror="{PWN}">', f"<script>{PWN};document.title='PWNED'</script>",
            f"\"><svg onload=\"{PWN}\">", f"</td></tr></table><iframe srcdoc='<script>"
            f"parent.{PWN}</script>'>", "<style>body{display:none}</style>",
            "\x1b]0;pwned\x07\u202egnp.exe"]
WIDTH, HEIGHT = 1280, 2000
CRITICAL = (0x7B, 0x10, 0x10)  # td.sev-critical's background
BLOCKED = (0xC0, 0x39, 0x2B)  # the timeline's blocked bars


@pytest.fixture()
def workdir() -> Iterator[Path]:
    # /tmp, not pytest's deep directories: chromium's profile sockets need short paths
    d = Path(tempfile.mkdtemp(prefix="edrfleet-chromium-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def chromium(workdir: Path, page: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={workdir / 'profile'}",
         f"--window-size={WIDTH},{HEIGHT}", *mode, page.as_uri()],
        capture_output=True, text=True, timeout=180, check=True)


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.title: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        (self.title if self._in_title else self.text).append(data)


def dom_of(workdir: Path, page: Path) -> _Dom:
    dom = _Dom()
    dom.feed(chromium(workdir, page, "--dump-dom").stdout)
    return dom


def hostile_report(workdir: Path) -> Path:
    sev = ("low", "medium", "high", "critical")
    events = [event(f"e{i}", cmd=f"{p} rm -rf /srv/{i}", ts=T0 + 60 * i, rule=f"r{i % 3}",
                    severity=sev[i % 4], action="would_block" if i % 2 else "blocked",
                    fields={"user.name": p, "process.working_directory": p,
                            "process.parent.executable": p,
                            "threat.technique.id": ["T1485"]})
              for i, p in enumerate(PAYLOADS * 2)]
    store = store_with(workdir, {"web1": events, "<b>web2</b>": [event("w", action="logged")]})
    summary = summarize(store, ["web1", "<b>web2</b>"], now=T0 + 3600, latest_events=50,
                        per_host_events=5,
                        pulls={"web1": HostPull("web1", ok=True),
                               "<b>web2</b>": HostPull("<b>web2</b>", ok=True)})
    store.close()
    page = workdir / "report.html"
    page.write_text(render(summary, "html"), encoding="utf-8")
    return page


def test_the_control_page_shows_this_browser_runs_such_payloads(workdir: Path) -> None:
    page = workdir / "control.html"
    page.write_text(f"<!DOCTYPE html><html><head><title>t</title></head><body>"
                    f"{''.join(PAYLOADS[:2])}</body></html>", encoding="utf-8")
    dom = dom_of(workdir, page)
    assert ("data-pwned", "1") in dom.attrs and "PWNED" in "".join(dom.title)


def test_the_report_loads_with_its_tables_and_no_payload_ran(workdir: Path) -> None:
    dom = dom_of(workdir, hostile_report(workdir))
    assert not {"script", "img", "iframe", "style"} & set(dom.tags[dom.tags.index("body"):])
    assert [t for t in dom.tags if t == "svg"] == ["svg"]  # only the timeline's
    assert not [a for a, _ in dom.attrs if a == "data-pwned" or a.startswith("on")]
    assert "PWNED" not in "".join(dom.title)
    assert dom.tags.count("table") >= 7 and dom.tags.count("section") == 2
    text = "".join(dom.text)
    for p in PAYLOADS[:5]:
        assert p in text  # shown as text, in full
    assert "\\u202egnp.exe" in text and "\x1b" not in text
    for heading in ("Newest events", "Per host", "Would block (monitor mode)"):
        assert heading in text


def test_the_report_renders_a_page_not_a_blank(workdir: Path) -> None:
    shot = workdir / "report.png"
    chromium(workdir, hostile_report(workdir), f"--screenshot={shot}")
    width, height, colours = pixels(shot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    white = colours[(255, 255, 255)]
    assert len(colours) > 50  # text, antialiasing, table borders, colours
    assert white < 0.97 * width * height  # not an empty page

    def near(rgb: tuple[int, int, int]) -> int:
        return sum(n for c, n in colours.items() if all(abs(a - b) <= 3 for a, b in zip(
            c, rgb, strict=True)))

    assert near(BLOCKED) > 500  # the timeline's bars
    assert near(CRITICAL) > 100  # a critical severity cell
