"""edrfleet.agent.outputs.rfc5424 (the exact bytes) and the syslog output over real UDP, TCP,
TLS and unix sockets, shipping from a real spool.

Every socket here is on 127.0.0.1 or in a tmp dir; every wait is bounded.
"""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import pytest

from edrfleet.agent import ecs
from edrfleet.agent import outputs as O
from edrfleet.agent.outputs import Outputs, SyslogSink, format_rfc5424
from edrfleet.agent.spool import Spool
from tests.unit.helpers.receivers import TcpSyslogReceiver, make_tls_files, wait_for

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
        ("tls://logs.example", ("tls", ("logs.example", 6514))),
        ("tls://logs.example:7514", ("tls", ("logs.example", 7514))),
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


# --- syslog shipping from a real spool over real sockets -----------------------------------


def events(n: int, start: int = 0) -> list[dict]:
    return [ecs.nest({**ecs.flatten(EVENT), "event.id": f"e{i:03d}",
                      "process.command_line": f"rm ✓ é {i:03d}\n", "rule.id": HOSTILE})
            for i in range(start, start + n)]


def ids(frames: list[bytes]) -> list[str]:
    return [parse(f)[2]["event"]["id"] for f in frames]


def fast(outs: Outputs) -> Outputs:
    for s in outs.shippers:
        s.backoff_first, s.backoff_max = 0.02, 0.1
    return outs


@pytest.fixture
def spool(tmp_path: Path):
    sp = Spool(str(tmp_path / "spool"))
    yield sp
    sp.close()


def test_tcp_receiver_gets_octet_counted_frames_in_order(spool: Spool) -> None:
    rx = TcpSyslogReceiver()
    outs = Outputs(spool.directory, [SyslogSink(f"tcp://127.0.0.1:{rx.port}")])
    try:
        sent = events(20)
        spool.append(sent)
        outs.wake()
        assert wait_for(lambda: len(rx.frames) == 20)
        for frame, e in zip(rx.frames, sent, strict=True):
            _, params, body = parse(frame)
            assert body == e and unescape(params["rule"]) == HOSTILE
        # TIMESTAMP is the event's @timestamp, not the send time
        assert parse(rx.frames[0])[0].group("ts") == b"2025-01-31T12:00:00.000000Z"
        assert wait_for(lambda: outs.stats()["SyslogOutput"]["pending"] == 0)
        st = outs.stats()["SyslogOutput"]
        assert st["delivered"] == 20 and st["dropped"] == 0 and st["last_error"] is None
    finally:
        outs.close(1)
        rx.stop()


def test_tcp_outage_then_recovery_delivers_everything_once_in_order(spool: Spool) -> None:
    rx = TcpSyslogReceiver()
    outs = fast(Outputs(spool.directory, [SyslogSink(f"tcp://127.0.0.1:{rx.port}")]))
    try:
        spool.append(events(5))
        outs.wake()
        assert wait_for(lambda: len(rx.frames) == 5)
        rx.stop()  # the receiver goes down, and its connection with it
        time.sleep(0.1)
        for i in range(5, 15):
            spool.append(events(1, i))
            outs.wake()
        assert wait_for(lambda: outs.stats()["SyslogOutput"]["errors"] >= 2
                        and outs.stats()["SyslogOutput"]["pending"] == 10)
        st = outs.stats()["SyslogOutput"]
        assert st["last_error"] and "refused" in st["last_error"] and rx.frames[5:] == []
        rx.start()  # back, same port
        assert wait_for(lambda: len(rx.frames) == 15)
        assert ids(rx.frames) == [f"e{i:03d}" for i in range(15)]
        assert wait_for(lambda: outs.stats()["SyslogOutput"]["delivered"] == 15)
        st = outs.stats()["SyslogOutput"]
        assert st["last_error"] is None and st["pending"] == 0 and st["last_ok"]
    finally:
        outs.close(1)
        rx.stop()


def test_agent_restart_mid_outage_resumes_from_the_cursor(spool: Spool) -> None:
    rx = TcpSyslogReceiver()
    address = f"tcp://127.0.0.1:{rx.port}"
    outs = fast(Outputs(spool.directory, [SyslogSink(address)]))
    spool.append(events(3))
    outs.wake()
    assert wait_for(lambda: len(rx.frames) == 3)
    rx.stop()
    spool.append(events(4, 3))
    outs.wake()
    outs.close(0.3)  # the agent stops while the receiver is down: nothing is dropped
    assert outs.stats()["SyslogOutput"]["dropped"] == 0
    spool.append(events(3, 7))  # (a new agent writes on)
    rx.start()
    again = fast(Outputs(spool.directory, [SyslogSink(address)]))
    try:
        assert wait_for(lambda: len(rx.frames) == 10)  # at start, without a wake
        assert ids(rx.frames) == [f"e{i:03d}" for i in range(10)]
        assert wait_for(lambda: again.stats()["SyslogOutput"]["delivered"] == 7)
    finally:
        again.close(1)
        rx.stop()


def test_a_new_output_starts_at_the_spool_end(spool: Spool) -> None:
    spool.append(events(5))  # history from before the output was configured
    rx = TcpSyslogReceiver()
    outs = Outputs(spool.directory, [SyslogSink(f"tcp://127.0.0.1:{rx.port}")])
    try:
        spool.append(events(1, 5))
        outs.wake()
        assert wait_for(lambda: len(rx.frames) == 1)
        time.sleep(0.2)
        assert ids(rx.frames) == ["e005"]
    finally:
        outs.close(1)
        rx.stop()


def test_rotation_past_an_unreachable_receiver_counts_the_drops(tmp_path: Path) -> None:
    one = len(json.dumps(events(1)[0], ensure_ascii=False, separators=(",", ":")).encode()) + 1
    spool = Spool(str(tmp_path / "spool"), max_bytes=10 * one, keep=2)  # 10 events a file
    port = free_tcp_port()
    outs = fast(Outputs(spool.directory, [SyslogSink(f"tcp://127.0.0.1:{port}")]))
    try:
        for i in range(50):  # 5 files' worth; only the newest 3 files stay
            spool.append(events(1, i))
            outs.wake()
            gone = 10 * max(0, (i + 10) // 10 - 3)  # files beyond the newest 3 are dropped
            want = {"pending": i + 1 - gone, "dropped": gone}
            assert wait_for(lambda w=want: {k: outs.stats()["SyslogOutput"][k] for k in w} == w)
        st = outs.stats()["SyslogOutput"]  # counted while the receiver is still down
        assert st["dropped"] == 20 and st["last_drop"]["events"] == 10  # one file at a time
        rx = TcpSyslogReceiver(port)
        assert wait_for(lambda: len(rx.frames) == 30)
        assert ids(rx.frames) == [f"e{i:03d}" for i in range(20, 50)]
        assert wait_for(lambda: outs.stats()["SyslogOutput"]["delivered"] == 30)
        st = outs.stats()["SyslogOutput"]
        assert st["dropped"] == 20 and st["delivered"] == 30
        assert "rotated past" in st["last_drop"]["reason"]
        rx.stop()
    finally:
        outs.close(0.5)
        spool.close()


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tls_syslog_checks_the_ca_and_delivers(spool: Spool, tmp_path: Path) -> None:
    ca, cert, key = make_tls_files(tmp_path)
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    rx = TcpSyslogReceiver(tls=ctx)
    outs = Outputs(spool.directory, [SyslogSink(f"tls://127.0.0.1:{rx.port}",
                                                ca_file=str(ca))])
    try:
        spool.append(events(3))
        outs.wake()
        assert wait_for(lambda: len(rx.frames) == 3)
        assert ids(rx.frames) == ["e000", "e001", "e002"]
    finally:
        outs.close(1)
        rx.stop()


def test_tls_syslog_refuses_a_server_its_ca_did_not_sign(spool: Spool, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    _, cert, key = make_tls_files(tmp_path)
    other_ca, _, _ = make_tls_files(tmp_path / "other")
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    rx = TcpSyslogReceiver(tls=ctx)
    outs = Outputs(spool.directory, [SyslogSink(f"tls://127.0.0.1:{rx.port}",
                                                ca_file=str(other_ca))])
    try:
        spool.append(events(1))
        outs.wake()
        assert wait_for(lambda: outs.stats()["SyslogOutput"]["errors"] >= 1)
        st = outs.stats()["SyslogOutput"]
        assert "CERTIFICATE_VERIFY_FAILED" in st["last_error"] and rx.frames == []
        assert st["pending"] == 1 and st["dropped"] == 0
    finally:
        outs.close(0.2)
        rx.stop()


def test_a_ca_file_needs_a_tls_address() -> None:
    with pytest.raises(ValueError, match="tls://"):
        SyslogSink("tcp://127.0.0.1:1", ca_file="/etc/ssl/certs/ca-certificates.crt")


def test_udp_is_best_effort_one_datagram_per_event(spool: Spool) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        outs = Outputs(spool.directory, [SyslogSink(f"udp://127.0.0.1:{rx.getsockname()[1]}",
                                                    hostname="agent-host")])
        try:
            spool.append([EVENT, ecs.nest({"rule.id": HOSTILE, "event.action": "logged",
                                           "edrfleet.severity": "low"})])
            outs.wake()
            first, second = rx.recv(65535), rx.recv(65535)
        finally:
            outs.close(1)
    _, params, body = parse(first)
    assert params["rule"] == "rm-recursive-root" and body == EVENT
    m, params, _ = parse(second)
    assert unescape(params["rule"]) == HOSTILE
    assert m.group("host") == b"agent-host" and int(m.group("pri")) == 85
    assert outs.stats()["SyslogOutput"]["delivered"] == 2


def test_unix_datagram_socket_receives_messages(spool: Spool, tmp_path: Path) -> None:
    path = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(path)
        rx.settimeout(5)
        outs = Outputs(spool.directory, [SyslogSink(path)])
        try:
            spool.append([EVENT])
            outs.wake()
            msg = rx.recv(65535)
        finally:
            outs.close(1)
    assert parse(msg)[2] == EVENT


def test_a_spool_line_that_is_not_json_is_dropped_and_counted(spool: Spool) -> None:
    rx = TcpSyslogReceiver()
    outs = Outputs(spool.directory, [SyslogSink(f"tcp://127.0.0.1:{rx.port}")])
    try:
        with open(spool.path, "ab") as f:
            f.write(b"not json\n")
        spool.append(events(1))
        outs.wake()
        assert wait_for(lambda: len(rx.frames) == 1)
        assert wait_for(lambda: outs.stats()["SyslogOutput"]["dropped"] == 1)
        assert "not a JSON object" in outs.stats()["SyslogOutput"]["last_drop"]["reason"]
    finally:
        outs.close(1)
        rx.stop()


def test_close_is_prompt_when_the_receiver_is_down(spool: Spool) -> None:
    outs = Outputs(spool.directory, [SyslogSink(f"tcp://127.0.0.1:{free_tcp_port()}",
                                                timeout=1)])
    spool.append(events(5))
    outs.wake()
    assert wait_for(lambda: outs.stats()["SyslogOutput"]["errors"] >= 1)
    t0 = time.monotonic()
    outs.close(deadline=1)
    assert time.monotonic() - t0 < 1.5
    st = outs.stats()["SyslogOutput"]
    assert st["delivered"] == 0 and st["dropped"] == 0 and st["pending"] == 5
