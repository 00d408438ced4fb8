"""edrfleet.agent.outputs.config: the outputs file (validation) and its reload on SIGHUP, with
real TCP syslog receivers on 127.0.0.1 and a real spool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edrfleet.agent.outputs.config import ConfiguredOutputs, check_config
from edrfleet.agent.spool import Spool
from tests.unit.agent.test_outputs import events, ids
from tests.unit.helpers.receivers import TcpSyslogReceiver, wait_for


@pytest.mark.parametrize("data,where", [
    ({"syslog": {"address": "tcp://h:601\nExecStartPre=/bin/sh"}}, "syslog.address"),
    ({"syslog": {"address": "tcp://h:601", "ca_file": "/ca.pem"}}, "syslog.ca_file"),
    ({"syslog": {"address": "ftp://h:1"}}, "transport"),
    ({"syslog": "tcp://h:601"}, "syslog"),
    ({"webhook": {"url": "https://user:pass@h/x"}}, "credentials"),
    ({"webhook": {"url": "https://h/x y"}}, "webhook.url"),
    ({"webhook": {"url": "file:///etc/shadow"}}, "webhook.url"),
    ({"webhook": {"url": "https://h/", "format": "xml"}}, "webhook.format"),
    ({"webhook": {"url": "https://h/", "header_file": "etc/h"}}, "header_file"),
    ({"webhook": {"url": "https://h/", "ca_file": "/a/../../etc/shadow"}}, "ca_file"),
    ({"webhook": {"url": "http://h/", "ca_file": "/ca.pem"}}, "ca_file"),
    ({"webhook": {"url": "https://h/", "token": "x"}}, "webhook"),
    ({"kafka": {}}, "outputs"),
])
def test_values_that_are_not_what_their_key_says_are_refused_naming_the_key(data, where):
    with pytest.raises(ValueError, match=where):
        check_config(data)


def test_a_valid_config_is_normalized():
    assert check_config({}) == {"syslog": None, "webhook": None}
    got = check_config({"syslog": {"address": "tls://logs:6514", "ca_file": "/etc/ca.pem"},
                        "webhook": {"url": "https://siem/hec", "format": "splunk-hec",
                                    "header_file": "/etc/edrfleet/webhook.header"}})
    assert got["webhook"] == {"url": "https://siem/hec", "format": "splunk-hec",
                              "ca_file": None, "header_file": "/etc/edrfleet/webhook.header"}
    assert got["syslog"] == {"address": "tls://logs:6514", "ca_file": "/etc/ca.pem"}


def write(path: Path, data: object) -> None:
    path.write_text(json.dumps(data))


def test_sighup_starts_switches_and_stops_outputs_as_the_file_says(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    conf = tmp_path / "outputs.json"
    write(conf, {})
    a, b = TcpSyslogReceiver(), TcpSyslogReceiver()
    outs = ConfiguredOutputs(spool.directory, str(conf), "web1")
    try:
        assert outs.outputs is None and outs.stats() == {}
        write(conf, {"syslog": {"address": f"tcp://127.0.0.1:{a.port}"}})
        assert outs.reload() == []
        spool.append(events(3))
        outs.wake()
        assert wait_for(lambda: ids(a.frames) == ["e000", "e001", "e002"])
        # the same file again: nothing restarted, credentials re-read
        shippers = outs.outputs.shippers
        assert outs.reload() == [] and outs.outputs.shippers is shippers
        # another receiver: it gets what follows, from the output's cursor
        write(conf, {"syslog": {"address": f"tcp://127.0.0.1:{b.port}"}})
        assert outs.reload() == []
        spool.append(events(2, start=3))
        outs.wake()
        assert wait_for(lambda: ids(b.frames) == ["e003", "e004"])
        assert ids(a.frames) == ["e000", "e001", "e002"]
        # a broken file keeps what runs, and says why
        conf.write_text('{"syslog": {"address": "tcp://h:1\\nX"}}')
        errors = outs.reload()
        assert len(errors) == 1 and "kept" in errors[0] and "syslog.address" in errors[0]
        assert outs.stats()["SyslogOutput"]["target"].endswith(f":{b.port}")
        write(conf, {})
        assert outs.reload() == [] and outs.outputs is None
    finally:
        outs.close(1)
        a.stop()
        b.stop()
        spool.close()


def test_a_symlinked_outputs_file_is_not_followed(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    write(real, {})
    (tmp_path / "outputs.json").symlink_to(real)
    with pytest.raises(OSError):
        ConfiguredOutputs(str(tmp_path), str(tmp_path / "outputs.json"), None)


def test_a_missing_outputs_file_means_no_outputs_until_it_appears(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    conf = tmp_path / "outputs.json"
    rx = TcpSyslogReceiver()
    outs = ConfiguredOutputs(spool.directory, str(conf), "web1")
    try:
        assert outs.outputs is None and outs.reload() == []
        write(conf, {"syslog": {"address": f"tcp://127.0.0.1:{rx.port}"}})
        assert outs.reload() == [] and outs.outputs is not None
        conf.unlink()
        assert outs.reload() == [] and outs.outputs is None
    finally:
        outs.close(1)
        rx.stop()
        spool.close()
