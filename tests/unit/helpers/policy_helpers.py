"""Helpers shared by the unit tests of edrfleet.policy (imported as ``policy_helpers``)."""

from __future__ import annotations

import os
import stat as stat_mod
import textwrap
from collections.abc import Callable

from edrfleet.policy import Policy, load_policy_text


def fake_stat(files: dict[str, tuple[int, int]]) -> Callable[[bytes], os.stat_result]:
    """A ``stat`` over a pretend file system: path -> (st_dev, st_ino) of a regular
    executable file; every other path raises FileNotFoundError."""
    table = {os.fsencode(k): v for k, v in files.items()}

    def stat(path: bytes | str) -> os.stat_result:
        key = os.fsencode(path)
        if key not in table:
            raise FileNotFoundError(2, "No such file or directory", path)
        dev, ino = table[key]
        return os.stat_result((stat_mod.S_IFREG | 0o755, ino, dev, 1, 0, 0, 0, 0, 0, 0))

    return stat


def policy(text: str, source: str = "policy.yaml") -> Policy:
    """Load a policy from an indented triple-quoted string."""
    return load_policy_text(textwrap.dedent(text).lstrip("\n"), source)


def rule_yaml(rid: str, action: str = "block", match: str = "{executable: [rm]}",
              severity: str = "high") -> str:
    return (f"  - id: {rid}\n    description: rule {rid}\n    severity: {severity}\n"
            f"    action: {action}\n    match: {match}\n")


def policy_of_rules(*rules: str, header: str = "version: 1\n") -> Policy:
    return load_policy_text(header + "rules:\n" + "".join(rules), "policy.yaml")


# rm is /usr/bin/rm (also /bin/rm and a hard link /usr/bin/unlink-rm); dd is /usr/bin/dd.
FS = fake_stat({
    "/usr/bin/rm": (8, 100),
    "/bin/rm": (8, 100),
    "/usr/bin/unlink-rm": (8, 100),
    "/usr/bin/dd": (8, 200),
    "/bin/dd": (8, 200),
    "/usr/bin/ls": (8, 300),
    "/opt/tools/wipe": (9, 400),
})
PATH = "/usr/bin:/bin"
