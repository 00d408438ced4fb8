"""Outputs besides the spool: syslog (RFC 5424 over UDP, TCP, TLS or a unix socket) and a
webhook (JSON array, Elasticsearch ``_bulk`` or Splunk HEC over HTTP(S)).  Stdlib only.

Outputs read the spool, they are not fed by the event loop: the loop writes the spool and calls
:meth:`Outputs.wake`; each output has a thread (:mod:`.shipper`) that ships the spool from its
own persisted cursor (:mod:`.cursor`, ``<spool>/outputs/<name>.cursor``).  So what a receiver
misses while it is down, or while the agent is down, reaches it once both are up again, in
order, at least once; only rotation outrunning an unreachable receiver drops events, and
status.json counts them.

Modules: :mod:`.rfc5424` (the exact message bytes), :mod:`.syslog` and :mod:`.webhook` (the
sinks), :mod:`.formats` (webhook bodies), :mod:`.headers` (webhook credentials),
:mod:`.shipper` (the thread), :mod:`.cursor` (the registry file).

Example::

    >>> outs = Outputs("/var/lib/edrfleet", [SyslogSink("tcp://127.0.0.1:601")])
    >>> spool.append(events); outs.wake()
    >>> outs.stats()["SyslogOutput"]["delivered"]
"""

from __future__ import annotations

import time
from typing import Any

from edrfleet.agent.outputs.rfc5424 import format_rfc5424, parse_syslog_address, sd_escape
from edrfleet.agent.outputs.shipper import Shipper, Sink
from edrfleet.agent.outputs.syslog import SyslogSink
from edrfleet.agent.outputs.webhook import WebhookSink

__all__ = ["Outputs", "Shipper", "SyslogSink", "WebhookSink", "format_rfc5424",
           "parse_syslog_address", "sd_escape"]


class Outputs:
    """The agent's outputs: one :class:`Shipper` per sink, started at once or by :meth:`start`.

    Raises:
        ValueError, OSError: as :class:`Shipper` (a bad cursor file, an unwritable spool).
    """

    def __init__(self, spool_dir: str, sinks: list[Sink], start: bool = True) -> None:
        self.shippers: list[Shipper] = []
        self.started = False
        try:
            for sink in sinks:
                self.shippers.append(Shipper(spool_dir, sink))
        except BaseException:
            for sink in sinks:
                sink.close()
            raise
        if start:
            self.start()

    def start(self) -> None:
        """Ship from here on (once): the agent's image that hands over to the resident one
        never ships, so no batch is cut off by its exec."""
        if not self.started:
            self.started = True
            for shipper in self.shippers:
                shipper.start()

    def wake(self) -> None:
        for shipper in self.shippers:
            shipper.wake()

    def reload(self) -> list[str]:
        """Read credentials again (SIGHUP); returns the errors (the old ones stay in use)."""
        errors = []
        for shipper in self.shippers:
            try:
                shipper.sink.reload()
            except (OSError, ValueError) as e:
                errors.append(f"{shipper.sink.label}: {e}")
        return errors

    def close(self, deadline: float = 5.0) -> None:
        """Ship what can go within ``deadline`` seconds (all outputs at once), then stop."""
        if not self.started:
            for shipper in self.shippers:
                shipper.sink.close()
            return
        end = time.monotonic() + max(0.0, deadline)
        for shipper in self.shippers:
            shipper.stop_by(end)
        for shipper in self.shippers:
            shipper.join()

    def stats(self) -> dict[str, dict[str, Any]]:
        return {s.sink.label: s.stats() for s in self.shippers}

    def carry(self, previous: dict[str, dict[str, Any]]) -> None:
        """Go on counting from ``previous`` (``stats()`` as the image before a hand-over wrote
        it to status.json): the same agent, so its counters do not start over."""
        for shipper in self.shippers:
            shipper.carry(previous.get(shipper.sink.label) or {})


def from_options(opts: Any, spool_dir: str, start: bool = True) -> Outputs | None:
    """The outputs the agent's options ask for (None: none)."""
    sinks: list[Sink] = []
    if opts.syslog:
        sinks.append(SyslogSink(opts.syslog, hostname=opts.host_name, ca_file=opts.syslog_ca))
    if opts.webhook:
        sinks.append(WebhookSink(opts.webhook, fmt=opts.webhook_format,
                                 ca_file=opts.webhook_ca,
                                 header_file=opts.webhook_header_file))
    return Outputs(spool_dir, sinks, start) if sinks else None
