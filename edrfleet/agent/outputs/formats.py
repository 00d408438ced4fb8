"""Webhook request bodies, one per format, and what Elasticsearch's ``_bulk`` answer means.

- ``json``: one JSON array of the events (``application/json``).
- ``es-bulk``: Elasticsearch ``_bulk`` NDJSON (``application/x-ndjson``): per event the action
  line ``{"create":{"_id":"<event.id>"}}`` then the event.  ``create`` works on data streams
  and indices alike; ``_id`` = ``event.id`` makes a batch sent twice (a retry, a crash before
  the cursor was saved) land once: the second copy is answered 409, which counts as delivered.
  Point the URL at ``https://ES:9200/<index or data stream>/_bulk``.
- ``splunk-hec``: Splunk HTTP Event Collector, events endpoint
  (``https://SPLUNK:8088/services/collector/event``): one envelope per event,
  ``{"time": <@timestamp as epoch>, "host": <host.name>, "source": "edrfleet",
  "sourcetype": "_json", "event": <the event>}``, concatenated.  The token goes in the header
  file: ``Authorization: Splunk <token>``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from edrfleet.agent import ecs
from edrfleet.agent.outputs.rfc5424 import event_time

FORMATS = ("json", "es-bulk", "splunk-hec")
CONTENT_TYPES = {"json": "application/json", "es-bulk": "application/x-ndjson",
                 "splunk-hec": "application/json"}


def _dumps(value: Any) -> bytes:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return text.encode("utf-8", "backslashreplace")


def body(fmt: str, lines: list[bytes], events: list[dict[str, Any]]) -> bytes:
    """The request body for ``events`` (``lines`` are the same events as the spool holds
    them: the JSON array is built from them without encoding anything again)."""
    if fmt == "json":
        return b"[" + b",".join(lines) + b"]"
    if fmt == "es-bulk":
        out = []
        for line, event in zip(lines, events, strict=True):
            action: dict[str, Any] = {}
            if ecs.get(event, ecs.EVENT_ID):
                action["_id"] = str(ecs.get(event, ecs.EVENT_ID))
            out.append(_dumps({"create": action}) + b"\n" + line + b"\n")
        return b"".join(out)
    if fmt == "splunk-hec":
        out = []
        now = time.time()  # for an event without @timestamp (none the agent writes)
        for event in events:
            envelope = {"time": round(event_time(event, now), 6), "source": "edrfleet",
                        "sourcetype": "_json", "event": event}
            if ecs.get(event, ecs.HOST):
                envelope["host"] = ecs.get(event, ecs.HOST)
            out.append(_dumps(envelope))
        return b"\n".join(out)
    raise ValueError(f"webhook format {fmt!r} is not one of {', '.join(FORMATS)}")


def bulk_outcome(answer: bytes) -> tuple[bool, int, str]:
    """What a ``_bulk`` answer (HTTP 200) says: (retry the batch, events refused for good, the
    first refusal's reason).  Created and already-there (409) items are delivered; items
    answered 429 or 5xx make the whole batch go again (``_id`` keeps the others single)."""
    try:
        data = json.loads(answer)
    except ValueError:
        return False, 0, ""
    if not isinstance(data, dict) or not data.get("errors"):
        return False, 0, ""
    retry, refused, why = False, 0, ""
    for item in data.get("items", []):
        result = next(iter(item.values()), {}) if isinstance(item, dict) else {}
        status = int(result.get("status", 200))
        if status < 300 or status == 409:
            continue
        if status == 429 or status >= 500:
            retry = True
            continue
        refused += 1
        if not why:
            err = result.get("error") or {}
            why = f"Elasticsearch refused an event: {err.get('type', status)}: " \
                  f"{str(err.get('reason', ''))[:200]}"
    return retry, refused, why
