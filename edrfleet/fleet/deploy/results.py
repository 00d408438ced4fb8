"""What deploy, status and uninstall report per host: :class:`HostResult`, the
:class:`Session` that carries one host through a command's phases, and :func:`error_result`,
the one mapping of an exception to a host's result (partial failure is a value)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from edrfleet.fleet.deploy.operations import Desired, Plan


@dataclass
class HostResult:
    name: str
    status: str                 # ok | changed | unreachable | failed
    message: str = ""
    changes: list[str] = field(default_factory=list)
    diff: str = ""
    agent: dict[str, Any] | None = None   # status.json after the deploy
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "unreachable")


@dataclass
class Session:
    """One host across the phases; its transport stays open from facts to apply."""

    host: Any                      # fleet.inventory.Host
    transport: Any = None          # fleet.transport.base.Transport
    facts: dict[str, Any] | None = None
    desired: Desired | None = None
    plan: Plan | None = None
    result: HostResult | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return self.host.name

    def finish(self, status: str, message: str = "", **kw: Any) -> HostResult:
        self.result = HostResult(self.name, status, message,
                                 seconds=round(time.monotonic() - self.started, 3), **kw)
        return self.result

    def close(self) -> None:
        if self.transport is not None:
            try:
                self.transport.close()
            except Exception:
                pass
            self.transport = None


def error_result(session: Session, exc: BaseException) -> HostResult:
    """Map an exception to the host's result: connection trouble is 'unreachable'."""
    if isinstance(exc, ConnectionError):
        return session.finish("unreachable", one_line(exc))
    return session.finish("failed", one_line(exc) or type(exc).__name__)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line, at most 400 characters."""
    return " ".join(str(exc).split())[:400]
