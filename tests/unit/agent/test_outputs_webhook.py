"""The webhook output shipping a real spool to a real HTTP(S) server on 127.0.0.1: formats,
credentials, answers that retry and answers that drop, outage, restart."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from edrfleet.agent import ecs
from edrfleet.agent.__main__ import add_run_arguments
from edrfleet.agent.outputs import Outputs, WebhookSink
from edrfleet.agent.outputs.headers import parse_headers, split_credentials
from edrfleet.agent.spool import Spool
from tests.unit.helpers.receivers import (
    HttpCollector,
    free_port,
    make_tls_files,
    server_context,
    wait_for,
)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch) -> None:
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def spool(tmp_path: Path):
    sp = Spool(str(tmp_path / "spool"))
    yield sp
    sp.close()


@pytest.fixture
def collector():
    c = HttpCollector()
    yield c
    c.stop()


def events(n: int, start: int = 0) -> list[dict]:
    return [ecs.nest({"@timestamp": "2025-01-31T12:00:00.500000Z", "event.id": f"e{i:03d}",
                      "event.action": "blocked", "host.name": "web1", "rule.id": "r"})
            for i in range(start, start + n)]


def ids(evs: list[dict]) -> list[str]:
    return [e["event"]["id"] for e in evs]


def ship(spool: Spool, sink: WebhookSink, fast: bool = True) -> Outputs:
    outs = Outputs(spool.directory, [sink])
    if fast:
        for s in outs.shippers:
            s.backoff_first, s.backoff_max = 0.02, 0.1
    return outs


def stats(outs: Outputs) -> dict:
    return outs.stats()["WebhookOutput"]


def test_json_arrays_of_batch_size_with_the_header_file(spool, collector, tmp_path) -> None:
    headers = tmp_path / "headers"
    headers.write_text("# the SIEM's token\nAuthorization: Bearer t0ken\n\nX-Tenant: blue\n")
    outs = ship(spool, WebhookSink(collector.url, batch_size=100, header_file=str(headers)))
    try:
        spool.append(events(250))
        outs.wake()
        assert wait_for(lambda: len(collector.events()) == 250)
        assert collector.events() == events(250)
        assert all(len(json.loads(b)) <= 100 for b in collector.bodies)
        h = collector.headers[0]
        assert h["Content-Type"] == "application/json"
        assert h["Authorization"] == "Bearer t0ken" and h["X-Tenant"] == "blue"
        assert wait_for(lambda: stats(outs)["pending"] == 0)
        st = stats(outs)
        assert st["delivered"] == 250 and st["dropped"] == 0 and st["batches"] == 3
        assert st["target"] == collector.url and st["format"] == "json"
    finally:
        outs.close(1)


def test_outage_then_recovery_and_restart_mid_outage_lose_nothing(spool) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/events"
    outs = ship(spool, WebhookSink(url, timeout=1))
    spool.append(events(15))  # the receiver is down
    outs.wake()
    assert wait_for(lambda: stats(outs)["retries"] >= 2)
    assert "Connection refused" in stats(outs)["last_error"]
    outs.close(0.2)  # the agent restarts in the middle of the outage
    spool.append(events(15, 15))
    again = ship(spool, WebhookSink(url, timeout=1))
    c = HttpCollector(port=port)
    try:
        again.wake()
        assert wait_for(lambda: len(c.events()) == 30)
        assert ids(c.events()) == [f"e{i:03d}" for i in range(30)]  # in order, once each
        assert wait_for(lambda: stats(again)["delivered"] == 30)  # answered after arriving
        assert stats(again)["dropped"] == 0 and stats(again)["last_error"] is None
    finally:
        again.close(1)
        c.stop()


def test_retried_answers_deliver_each_event_once(spool) -> None:
    c = HttpCollector(answers=[503, 429, 408])
    outs = ship(spool, WebhookSink(c.url, batch_size=10))
    try:
        spool.append(events(10))
        outs.wake()
        assert wait_for(lambda: len(c.events()) == 10)
        assert ids(c.events()) == [f"e{i:03d}" for i in range(10)]
        assert stats(outs)["retries"] == 3 and stats(outs)["dropped"] == 0
    finally:
        outs.close(1)
        c.stop()


def test_a_400_drops_that_batch_with_its_reason_and_shipping_goes_on(spool) -> None:
    c = HttpCollector(answers=[400])
    outs = ship(spool, WebhookSink(c.url, batch_size=5))
    try:
        spool.append(events(5))
        outs.wake()
        assert wait_for(lambda: stats(outs)["dropped"] == 5)
        drop = stats(outs)["last_drop"]
        assert drop["events"] == 5 and "HTTP 400" in drop["reason"]
        assert "test says no" in drop["reason"]  # the receiver's own words
        spool.append(events(1, 5))
        outs.wake()
        assert wait_for(lambda: ids(c.events()) == ["e005"])
        assert wait_for(lambda: stats(outs)["last_error"] is None)
    finally:
        outs.close(1)
        c.stop()


def test_a_401_is_retried_until_sighup_reads_the_right_token(spool, tmp_path) -> None:
    headers = tmp_path / "headers"
    headers.write_text("Authorization: Bearer old\n")
    c = HttpCollector(answers=[401] * 1000)
    outs = ship(spool, WebhookSink(c.url, header_file=str(headers)))
    try:
        spool.append(events(3))
        outs.wake()
        assert wait_for(lambda: stats(outs)["retries"] >= 3)
        assert "HTTP 401" in stats(outs)["last_error"] and stats(outs)["dropped"] == 0
        headers.write_text("Authorization: Bearer new\n")
        assert outs.reload() == []
        c.answers.clear()  # (the test's server now accepts)
        assert wait_for(lambda: len(c.events()) == 3)
        assert c.headers[-1]["Authorization"] == "Bearer new"
    finally:
        outs.close(1)
        c.stop()


def test_a_bad_header_file_on_reload_keeps_the_old_headers(spool, tmp_path, collector) -> None:
    headers = tmp_path / "headers"
    headers.write_text("Authorization: Bearer good\n")
    outs = ship(spool, WebhookSink(collector.url, header_file=str(headers)))
    try:
        headers.write_text("Authorization Bearer s3cret-without-colon\n")
        errors = outs.reload()
        assert len(errors) == 1 and "line 1" in errors[0] and "s3cret" not in errors[0]
        spool.append(events(1))
        outs.wake()
        assert wait_for(lambda: len(collector.events()) == 1)
        assert collector.headers[0]["Authorization"] == "Bearer good"
    finally:
        outs.close(1)


def test_es_bulk_action_lines_ids_and_item_outcomes(spool) -> None:
    c = HttpCollector()
    c.bulk_answer = json.dumps({"errors": True, "items": [
        {"create": {"status": 201}},
        {"create": {"status": 409, "error": {"type": "version_conflict_engine_exception"}}},
        {"create": {"status": 400, "error": {"type": "document_parsing_exception",
                                             "reason": "bad field"}}},
    ]}).encode()
    outs = ship(spool, WebhookSink(c.url, fmt="es-bulk"))
    try:
        spool.append(events(3))
        outs.wake()
        assert wait_for(lambda: stats(outs)["delivered"] + stats(outs)["dropped"] == 3)
        lines = c.bodies[0].decode().split("\n")
        assert lines[-1] == "" and len(lines) == 7  # NDJSON ends in a newline
        assert [json.loads(x) for x in lines[0:6:2]] == [
            {"create": {"_id": f"e{i:03d}"}} for i in range(3)]
        assert [json.loads(x) for x in lines[1:6:2]] == events(3)
        assert c.headers[0]["Content-Type"] == "application/x-ndjson"
        st = stats(outs)
        assert st["delivered"] == 2 and st["dropped"] == 1  # 409: already there, delivered
        assert "document_parsing_exception: bad field" in st["last_drop"]["reason"]
    finally:
        outs.close(1)
        c.stop()


def test_es_bulk_items_answered_429_send_the_batch_again(spool) -> None:
    c = HttpCollector()
    c.bulk_answer = b'{"errors":true,"items":[{"create":{"status":429}}]}'
    outs = ship(spool, WebhookSink(c.url, fmt="es-bulk"))
    try:
        spool.append(events(1))
        outs.wake()
        assert wait_for(lambda: len(c.bodies) >= 2)
        c.bulk_answer = b'{"errors":false,"items":[{"create":{"status":201}}]}'
        assert wait_for(lambda: stats(outs)["delivered"] == 1)
        assert stats(outs)["dropped"] == 0 and stats(outs)["retries"] >= 1
    finally:
        outs.close(1)
        c.stop()


def test_splunk_hec_envelopes_with_the_token_from_the_header_file(spool, tmp_path) -> None:
    headers = tmp_path / "hec"
    headers.write_text("Authorization: Splunk 11111111-2222-3333-4444-555555555555\n")
    c = HttpCollector()
    outs = ship(spool, WebhookSink(c.url, fmt="splunk-hec", header_file=str(headers)))
    try:
        spool.append(events(2))
        outs.wake()
        assert wait_for(lambda: stats(outs)["delivered"] == 2)
        envelopes = [json.loads(x) for x in c.bodies[0].decode().split("\n")]
        assert envelopes == [{"time": 1738324800.5, "host": "web1", "source": "edrfleet",
                              "sourcetype": "_json", "event": e} for e in events(2)]
        assert c.headers[0]["Authorization"].startswith("Splunk 1111")
    finally:
        outs.close(1)
        c.stop()


def test_https_with_a_ca_file(spool, tmp_path) -> None:
    ca, cert, key = make_tls_files(tmp_path)
    c = HttpCollector(tls=server_context(cert, key))
    outs = ship(spool, WebhookSink(c.url, ca_file=str(ca)))
    try:
        spool.append(events(2))
        outs.wake()
        assert wait_for(lambda: len(c.events()) == 2)
    finally:
        outs.close(1)
        c.stop()


def test_https_refuses_a_server_the_ca_did_not_sign(spool, tmp_path) -> None:
    _, cert, key = make_tls_files(tmp_path)
    (tmp_path / "other").mkdir()
    other_ca, _, _ = make_tls_files(tmp_path / "other")
    c = HttpCollector(tls=server_context(cert, key))
    outs = ship(spool, WebhookSink(c.url, ca_file=str(other_ca)))
    try:
        spool.append(events(1))
        outs.wake()
        assert wait_for(lambda: stats(outs)["retries"] >= 1)
        assert "CERTIFICATE_VERIFY_FAILED" in stats(outs)["last_error"]
        assert c.bodies == [] and stats(outs)["dropped"] == 0
    finally:
        outs.close(0.2)
        c.stop()


def test_url_credentials_become_a_basic_header_and_leave_the_target(spool) -> None:
    c = HttpCollector()
    url = c.url.replace("http://", "http://ops%40corp:p%3Ass@")
    outs = ship(spool, WebhookSink(url))
    try:
        assert stats(outs)["target"] == c.url
        spool.append(events(1))
        outs.wake()
        assert wait_for(lambda: len(c.events()) == 1)
        auth = c.headers[0]["Authorization"]
        assert base64.b64decode(auth.removeprefix("Basic ")) == b"ops@corp:p:ss"
    finally:
        outs.close(1)
        c.stop()
    assert split_credentials("https://h/x") == ("https://h/x", {})


def test_the_command_line_refuses_a_url_with_credentials(capsys) -> None:
    import argparse

    p = argparse.ArgumentParser()
    add_run_arguments(p)
    with pytest.raises(SystemExit):
        p.parse_args(["--policy", "p", "--webhook", "https://u:secret@siem/x"])
    err = capsys.readouterr().err
    assert "--webhook-header-file" in err and "ps" in err
    args = p.parse_args(["--policy", "p", "--webhook", "https://siem/x", "--webhook-format",
                         "es-bulk", "--webhook-header-file", "/etc/edrfleet/h"])
    assert args.webhook_format == "es-bulk" and args.webhook_header_file == "/etc/edrfleet/h"


@pytest.mark.parametrize("text", ["no colon here", ": value", "Bad Name: v", "X-Empty:"])
def test_malformed_header_lines_are_refused_by_number(text) -> None:
    with pytest.raises(ValueError, match="line 2"):
        parse_headers(f"# ok\n{text}\n", "hdr")


def test_bad_webhook_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        WebhookSink("ftp://x/y")
    with pytest.raises(ValueError, match="format"):
        WebhookSink("http://x/y", fmt="xml")
    with pytest.raises(ValueError, match="https"):
        WebhookSink("http://x/y", ca_file="/etc/ssl/certs/ca-certificates.crt")
