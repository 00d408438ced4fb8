"""edrfleet.fleet.deploy.outputs: edrfleet_syslog / edrfleet_webhook -> outputs.json and
webhook.header, hostile values refused naming the variable, and the plan's reload."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from edrfleet.agent.outputs.config import check_config
from edrfleet.fleet.deploy.hostvars import HostVarError
from edrfleet.fleet.deploy.operations import plan
from edrfleet.fleet.deploy.outputs import output_files
from tests.unit.fleet.deploy.test_operations import converged, desired

SECRET = "Splunk 1c0f9e2d-secret"


def test_no_outputs_no_files():
    assert output_files({}, "/etc/edrfleet") == {}


def test_syslog_and_webhook_with_a_header_become_the_agents_files():
    files = output_files({"edrfleet_syslog": "tcp://logs:601",
                          "edrfleet_webhook": {"url": "https://siem:8088/services/collector",
                                               "format": "splunk-hec",
                                               "header": f"Authorization: {SECRET}"}},
                         "/etc/edrfleet")
    config = json.loads(files["outputs.json"])
    assert check_config(config) == config  # what the agent reads back, as it is
    assert config["syslog"] == {"address": "tcp://logs:601", "ca_file": None}
    assert config["webhook"]["header_file"] == "/etc/edrfleet/webhook.header"
    assert files["webhook.header"] == f"Authorization: {SECRET}\n".encode()
    assert SECRET.encode() not in files["outputs.json"]  # the credential is in its own file


def test_token_file_names_a_header_file_on_the_host():
    files = output_files({"edrfleet_webhook": {"url": "https://h/", "token_file": "/etc/t"}},
                         "/etc/edrfleet")
    assert json.loads(files["outputs.json"])["webhook"]["header_file"] == "/etc/t"
    assert "webhook.header" not in files


@pytest.mark.parametrize("hv,var", [
    ({"edrfleet_syslog": "tcp://h:601\nExecStartPre=/bin/sh -c id"}, "edrfleet_syslog"),
    ({"edrfleet_syslog": "tcp://h:601 --webhook http://evil"}, "edrfleet_syslog"),
    ({"edrfleet_syslog": ["tcp://h:601"]}, "edrfleet_syslog"),
    ({"edrfleet_webhook": {"url": "https://u:p@h/"}}, "edrfleet_webhook"),
    ({"edrfleet_webhook": {"url": "https://h/%h{{ x }}\n"}}, "edrfleet_webhook"),
    ({"edrfleet_webhook": {"url": "https://h/", "format": "yaml"}}, "edrfleet_webhook"),
    ({"edrfleet_webhook": {"url": "https://h/", "header": f"Authorization: {SECRET}\r\nX: y"}},
     "edrfleet_webhook.header"),
    ({"edrfleet_webhook": {"url": "https://h/", "header": SECRET}}, "edrfleet_webhook.header"),
    ({"edrfleet_webhook": {"url": "https://h/", "header": "A: b", "header_file": "/x"}},
     "edrfleet_webhook"),
])
def test_hostile_or_wrong_values_are_refused_naming_the_variable_never_the_secret(hv, var):
    with pytest.raises(HostVarError) as err:
        output_files(hv, "/etc/edrfleet")
    assert str(err.value).startswith(var) and SECRET not in str(err.value)
    assert "\n" not in str(err.value)


def test_an_outputs_change_is_written_and_reloads_without_a_restart():
    want = dataclasses.replace(desired(), outputs=output_files(
        {"edrfleet_syslog": "tcp://logs:601"}, "/etc/edrfleet"))
    p = plan(converged(), want)
    assert p.write_outputs and p.service == "reload" and not (p.write_unit or p.swap_release)
    facts = dict(converged(), outputs_sha256=want.outputs_sha256)
    assert not plan(facts, want).changed
    # the variables removed: the files go, by a reload again
    p = plan(facts, desired())
    assert p.write_outputs and p.service == "reload"


def test_the_roles_command_writes_the_same_files(tmp_path):
    hv = {"edrfleet_syslog": None,
          "edrfleet_webhook": {"url": "https://h/", "header": f"Authorization: {SECRET}"}}
    r = subprocess.run([sys.executable, "-m", "edrfleet.fleet.deploy.outputs", "--config-dir",
                        "/etc/e", "--out", str(tmp_path)], input=json.dumps(hv),
                       capture_output=True, text=True, check=True)
    want = output_files({"edrfleet_webhook": hv["edrfleet_webhook"]}, "/etc/e")
    assert r.stdout.split() == list(want)
    assert {n: (tmp_path / n).read_bytes() for n in want} == want
    assert (tmp_path / "webhook.header").stat().st_mode & 0o777 == 0o600
    bad = subprocess.run([sys.executable, "-m", "edrfleet.fleet.deploy.outputs", "--config-dir",
                          "/etc/e", "--out", str(tmp_path)],
                         input=json.dumps({"edrfleet_syslog": "udp://x\n"}),
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "edrfleet_syslog" in bad.stderr
