"""edrfleet.agent.outputs: RFC 5424 over real UDP/TCP/unix sockets, webhook over real HTTP.

Every socket here is on 127.0.0.1 or in a tmp dir; every wait is bounded.
"""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from edrfleet.agent import ecs
from edrfleet.agent import outputs as O
from edrfleet.agent.outputs import SyslogOutput, WebhookOutput, format_rfc5424

RFC5424 = re.compile(
    rb"<(?P<pri>\d{1,3})>1 "
    rb"(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) "
    rb"(?P<host>[!-~]{1,255}) "
    rb"edrfleet "
    rb"(?P<pid>\d{1,128}) "
    rb"- "
    rb"\[edrfleet@32473(?P<sd>(?: [a-z]{1,32}=\"(?:[^\"\\\]]|\\[\"\\\]nrtxu])*\")+)\] "
    rb"\xef\xbb\xbf(?P<msg>[^\n]*)"
)
SD_PARAM = re.compile(r'([a-z]+)="((?:[^"\\\]]|\\.)*)"')

HOSTILE = 'rm"]\\ -rf\n/tmp/x]'

EVENT = ecs.nest({
    "@timestamp": "2025-01-31T12:00:00.000000Z",
    "event.action": "blocked",
    "host.name": "web1",
    "process.pid": 4242,
    "process.executable": "/usr/bin/rm",
    "process.command_line": "rm -rf /tmp/victim",
    "rule.id": "rm-recursive-root",
    "edrfleet.severity": "critical",
})
# as agents before the nested layout wrote it
FLAT_EVENT = {"rule.severity" if k == "edrfleet.severity" else k: v
              for k, v in ecs.flatten(EVENT).items()}


def parse(msg: bytes) -> tuple[re.Match, dict[str, str], dict]:
    m = RFC5424.fullmatch(msg)
    assert m, msg
    params = dict(SD_PARAM.findall(m.group("sd").decode()))
    return m, params, json.loads(m.group("msg"))


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch) -> None:
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


def wait_for(pred, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


# --- formatting -----------------------------------------------------------------------------


def test_format_is_exactly_rfc5424_with_structured_data_and_bom() -> None:
    msg = format_rfc5424(EVENT, hostname="ignored", procid=77, timestamp=1738324800.25)
    head = (
        b'<82>1 2025-01-31T12:00:00.250000Z web1 edrfleet 77 - [edrfleet@32473 '
        b'rule="rm-recursive-root" action="blocked" severity="critical" pid="4242" '
        b'exe="/usr/bin/rm"] \xef\xbb\xbf'
    )
    assert msg.startswith(head)
    assert json.loads(msg[len(head):]) == EVENT
    parse(msg)


def test_an_event_of_an_older_agent_with_flat_keys_is_framed_the_same() -> None:
    old = format_rfc5424(FLAT_EVENT, hostname="ignored", procid=77, timestamp=1738324800.25)
    new = format_rfc5424(EVENT, hostname="ignored", procid=77, timestamp=1738324800.25)
    assert old.partition(b"\xef\xbb\xbf")[0] == new.partition(b"\xef\xbb\xbf")[0]


@pytest.mark.parametrize(
    ("severity", "pri"),
    [("critical", 82), ("high", 83), ("medium", 84), ("low", 85), ("LOW", 85), (None, 85),
     ("weird", 85)],
)
def test_priority_is_authpriv_with_the_rule_severity(severity, pri) -> None:
    event = ecs.nest({"rule.id": "r", "event.action": "logged"})
    if severity is not None:
        event["edrfleet"] = {"severity": severity}
    m, _, _ = parse(format_rfc5424(event, hostname="h", procid=1, timestamp=0))
    assert int(m.group("pri")) == pri


def test_hostile_values_are_escaped_and_the_message_stays_one_line() -> None:
    event = ecs.nest({"rule.id": HOSTILE, "event.action": 'a]"b',
                      "process.executable": "\x00\x7f\t",
                      "process.command_line": "echo 'x\ny'\r\n", "host.name": "bad host\n"})
    msg = format_rfc5424(event, hostname="h", procid=1, timestamp=0)
    assert b"\n" not in msg and b"\r" not in msg
    m, params, body = parse(msg)
    assert m.group("host") == b"bad_host_"
    assert params["rule"] == 'rm\\"\\]\\\\ -rf\\n/tmp/x\\]'
    assert unescape(params["rule"]) == HOSTILE
    assert unescape(params["action"]) == 'a]"b'
    assert params["exe"] == "\\x00\\x7f\\t"
    assert body == event  # MSG is the event as JSON, newlines escaped by JSON


def test_a_value_with_lone_surrogates_still_formats() -> None:
    argv = b"rm \xff".decode(errors="surrogateescape")
    msg = format_rfc5424(ecs.nest({"rule.id": argv, "process.command_line": argv}),
                         hostname="h", procid=1, timestamp=0)
    _, params, body = parse(msg)
    assert params["rule"] == "rm \\xff"
    assert body["process"]["command_line"] == argv  # JSON's \udcff escape round-trips


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("udp://127.0.0.1:5514", ("udp", ("127.0.0.1", 5514))),
        ("tcp://logs.example:601", ("tcp", ("logs.example", 601))),
        ("tcp://[::1]:6514", ("tcp", ("::1", 6514))),
        ("127.0.0.1:5514", ("udp", ("127.0.0.1", 5514))),
        ("loghost", ("udp", ("loghost", 514))),
        ("/dev/log", ("unix", "/dev/log")),
        ("unix:///run/x.sock", ("unix", "/run/x.sock")),
        (("10.0.0.1", 514), ("udp", ("10.0.0.1", 514))),
    ],
)
def test_syslog_addresses(address, expected) -> None:
    assert O.parse_syslog_address(address) == expected


@pytest.mark.parametrize("address", ["http://x:1", "udp://:514", "tcp://h:port"])
def test_bad_syslog_addresses_are_refused(address) -> None:
    with pytest.raises(ValueError, match="syslog address"):
        O.parse_syslog_address(address)


# --- syslog over real sockets ---------------------------------------------------------------


def test_udp_collector_receives_one_datagram_per_event() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        out = SyslogOutput(f"udp://127.0.0.1:{rx.getsockname()[1]}", hostname="agent-host")
        out.emit(EVENT)
        out.emit(ecs.nest({"rule.id": HOSTILE, "event.action": "logged",
                           "edrfleet.severity": "low"}))
        first, second = rx.recv(65535), rx.recv(65535)
        out.close(deadline=2)
    _, params, body = parse(first)
    assert params["rule"] == "rm-recursive-root" and body == EVENT
    m, params, _ = parse(second)
    assert unescape(params["rule"]) == HOSTILE
    assert m.group("host") == b"agent-host" and int(m.group("pri")) == 85
    assert out.stats()["sent"] == 2 and out.dropped == 0


def test_tcp_collector_receives_octet_counted_frames() -> None:
    received = bytearray()
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(5)

        def serve() -> None:
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(5)
                while chunk := conn.recv(65536):
                    received.extend(chunk)

        t = threading.Thread(target=serve)
        t.start()
        out = SyslogOutput(f"tcp://127.0.0.1:{srv.getsockname()[1]}")
        events = [ecs.nest({**ecs.flatten(EVENT), "process.command_line": f"rm ✓ é {i}\n",
                            "rule.id": HOSTILE}) for i in range(20)]
        for e in events:
            out.emit(e)
        out.close(deadline=5)  # closes the connection: the server sees EOF
        t.join(5)
    frames, rest = [], bytes(received)
    while rest:
        length, _, rest = rest.partition(b" ")
        n = int(length)
        frames.append(rest[:n])
        rest = rest[n:]
    assert len(frames) == 20
    for frame, e in zip(frames, events, strict=True):
        _, params, body = parse(frame)
        assert body == e and unescape(params["rule"]) == HOSTILE


def test_unix_datagram_socket_receives_messages(tmp_path: Path) -> None:
    path = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(path)
        rx.settimeout(5)
        out = SyslogOutput(path)
        out.emit(EVENT)
        msg = rx.recv(65535)
        out.close(deadline=2)
    assert parse(msg)[2] == EVENT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tcp_collector_down_counts_drops_and_close_is_prompt() -> None:
    out = SyslogOutput(f"tcp://127.0.0.1:{free_port()}", timeout=1)
    for _ in range(5):
        out.emit(EVENT)
    assert wait_for(lambda: out.dropped == 5)
    t0 = time.monotonic()
    out.close(deadline=1)
    assert time.monotonic() - t0 < 1.5
    stats = out.stats()
    assert stats["sent"] == 0 and stats["errors"] >= 1
    assert "Connection" in stats["last_error"] or "refused" in stats["last_error"]


def test_syslog_emit_never_blocks_and_a_full_queue_drops(monkeypatch) -> None:
    gate = threading.Event()
    out = SyslogOutput("udp://127.0.0.1:9", max_queue=10)
    monkeypatch.setattr(out, "_send", lambda msg: gate.wait(5))  # a stuck collector
    t0 = time.monotonic()
    for _ in range(1000):
        out.emit(EVENT)
    assert time.monotonic() - t0 < 1.0
    assert out.dropped >= 1000 - 10 - 256  # what the thread took before it got stuck
    gate.set()
    out.close(deadline=2)
    assert out.stats()["sent"] + out.dropped == 1000


# --- webhook over real HTTP -----------------------------------------------------------------


class Collector:
    """A real http.server on 127.0.0.1 recording each POSTed JSON array."""

    def __init__(self, port: int = 0, fail_first: int = 0, status: int = 503) -> None:
        self.bodies: list[list] = []
        self.headers: list[dict] = []
        self.fail_first = fail_first
        self.status = status
        self.arrived = 0  # requests read, before any hold
        self.hold = threading.Event()
        self.hold.set()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.arrived += 1
                outer.hold.wait(10)
                if outer.fail_first > 0:
                    outer.fail_first -= 1
                    self.send_response(outer.status)
                else:
                    outer.bodies.append(json.loads(body))
                    outer.headers.append(dict(self.headers))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def events(self) -> list:
        return [e for body in self.bodies for e in body]

    def stop(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.stop()


def fast(out: WebhookOutput) -> WebhookOutput:
    out.BACKOFF_FIRST = 0.02
    out.BACKOFF_MAX = 0.1
    return out


def test_webhook_posts_batches_of_batch_size(collector: Collector) -> None:
    out = WebhookOutput(collector.url, batch_size=100, flush_interval=0.2,
                        headers={"Authorization": "Bearer t0ken"})
    events = [{"event.id": i} for i in range(250)]
    for e in events:
        out.emit(e)
    assert wait_for(lambda: len(collector.events()) == 250)
    out.close(deadline=2)
    assert collector.events() == events
    assert all(len(b) <= 100 for b in collector.bodies) and len(collector.bodies) >= 3
    assert collector.headers[0]["Content-Type"] == "application/json"
    assert collector.headers[0]["Authorization"] == "Bearer t0ken"
    assert out.stats() | {"last_error": None} == {
        "sent": 250, "dropped": 0, "errors": 0, "queued": 0, "last_error": None,
        "batches": len(collector.bodies), "retries": 0,
    }


def test_webhook_flushes_a_partial_batch_after_flush_interval(collector: Collector) -> None:
    out = WebhookOutput(collector.url, batch_size=100, flush_interval=0.2)
    out.emit({"event.id": 1})
    t0 = time.monotonic()
    assert wait_for(lambda: collector.bodies == [[{"event.id": 1}]], timeout=3)
    assert 0.15 <= time.monotonic() - t0 < 2.5
    out.close(deadline=1)


def test_webhook_retries_5xx_and_delivers_each_event_once() -> None:
    c = Collector(fail_first=3, status=503)
    try:
        out = fast(WebhookOutput(c.url, batch_size=10, flush_interval=0.05))
        for i in range(10):
            out.emit({"event.id": i})
        assert wait_for(lambda: len(c.events()) == 10)
        out.close(deadline=1)
        assert c.events() == [{"event.id": i} for i in range(10)]
        stats = out.stats()
        assert stats["retries"] == 3 and stats["last_error"] == "ConnectionError: HTTP 503"
    finally:
        c.stop()


def test_webhook_drops_a_batch_the_server_rejects_for_good() -> None:
    c = Collector(fail_first=1, status=400)
    try:
        out = fast(WebhookOutput(c.url, batch_size=5, flush_interval=0.05))
        for i in range(5):
            out.emit({"event.id": i})
        assert wait_for(lambda: out.dropped == 5)
        out.emit({"event.id": 5})
        assert wait_for(lambda: c.events() == [{"event.id": 5}])
        out.close(deadline=1)
        assert out.stats()["retries"] == 0 and "HTTP 400" in out.stats()["last_error"]
    finally:
        c.stop()


def test_webhook_server_down_retries_then_delivers_when_it_comes_up() -> None:
    port = free_port()
    out = fast(WebhookOutput(f"http://127.0.0.1:{port}/x", batch_size=10, flush_interval=0.05,
                             timeout=1))
    for i in range(3):
        out.emit({"event.id": i})
    assert wait_for(lambda: out.stats()["retries"] >= 3)
    c = Collector(port=port)
    try:
        assert wait_for(lambda: len(c.events()) == 3)
        out.close(deadline=1)
        assert c.events() == [{"event.id": i} for i in range(3)] and out.dropped == 0
    finally:
        c.stop()


def test_webhook_queue_bound_drops_without_blocking_and_close_keeps_its_deadline() -> None:
    c = Collector()
    c.hold.clear()  # the server accepts and then hangs: the worker is stuck in a request
    try:
        out = WebhookOutput(c.url, batch_size=10, flush_interval=0.01, max_queue=50, timeout=30)
        out.emit({"event.id": -1})
        assert wait_for(lambda: c.arrived == 1)  # the first batch is in flight, and stuck
        t0 = time.monotonic()
        for i in range(1000):
            out.emit({"event.id": i})
        assert time.monotonic() - t0 < 1.0
        assert out.dropped == 1000 - 50 and out.stats()["queued"] == 50
        t0 = time.monotonic()
        out.close(deadline=0.5)
        assert time.monotonic() - t0 < 1.0
        # the 50 queued events could not be sent in time: dropped too; the one in flight is
        # counted when its request ends
        assert out.dropped >= 1000
    finally:
        c.stop()


def test_close_flushes_what_is_queued_when_the_server_is_up(collector: Collector) -> None:
    out = WebhookOutput(collector.url, batch_size=7, flush_interval=10)
    for i in range(30):
        out.emit({"event.id": i})
    out.close(deadline=5)  # flush_interval is long: close must not wait for it
    assert collector.events() == [{"event.id": i} for i in range(30)]
    out.emit({"event.id": 99})  # after close: counted, not sent
    assert out.dropped == 1


def test_webhook_refuses_a_non_http_url() -> None:
    with pytest.raises(ValueError, match="http"):
        WebhookOutput("ftp://x/y")
