"""A Transport stand-in that runs the same scripts on this machine, for unit tests of the
scripts' file handling (paths under a tmp dir; nothing is started)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Result:
    rc: int
    stdout: bytes
    stderr: bytes


class LocalTransport:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def run(self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 60,
            check: bool = True) -> Result:
        self.calls.append(list(argv))
        p = subprocess.run(list(argv), input=input or b"", capture_output=True, timeout=timeout)
        if check and p.returncode:
            raise RuntimeError(p.stderr.decode())
        return Result(p.returncode, p.stdout, p.stderr)

    def run_script(self, script: str, *, args: Sequence[str] = (), timeout: float = 60,
                   check: bool = True) -> Result:
        self.calls.append(["sh", "-s", "--", *args])
        p = subprocess.run(["sh", "-s", "--", *args], input=script.encode(), capture_output=True,
                           timeout=timeout)
        if check and p.returncode:
            raise RuntimeError(p.stderr.decode())
        return Result(p.returncode, p.stdout, p.stderr)

    def close(self) -> None:
        pass
