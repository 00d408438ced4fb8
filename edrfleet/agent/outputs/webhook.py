"""The webhook sink: POSTs batches of events over HTTP(S) (bodies: :mod:`.formats`).

Delivered = a 2xx answer (for ``es-bulk``, also every item created or already there).  What
other answers do, decided so that a misconfiguration never silently drops a SIEM's events:

- connection errors, timeouts, 408, 429, 5xx: retried (the shipper's backoff, 0.5 s doubling
  to 30 s), the same batch, for as long as it takes; the events wait in the spool.
- 401, 403, 404: retried too: they say the credentials or the URL are wrong, not the batch,
  and every batch would get the same answer.  Fix the header file and send SIGHUP (or fix the
  URL and restart); the events since the outage then arrive.
- any other 4xx (400, 413, 415, 422, ...): the receiver refuses this batch for good; it is
  dropped and counted (``dropped``, ``last_drop`` with the status and the answer's first 200
  bytes), and shipping goes on with the next batch.

HTTPS checks the server against ``ca_file`` (else the system's CAs).  Environment proxies
(``https_proxy``, ``no_proxy``) apply, as for any urllib client.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

from edrfleet.agent.outputs.formats import CONTENT_TYPES, FORMATS, body, bulk_outcome
from edrfleet.agent.outputs.headers import read_header_file, redact, split_credentials
from edrfleet.agent.outputs.shipper import Rejected, Retry

RETRIED_4XX = (401, 403, 404, 408, 429)


class WebhookSink:
    """Args:
        url: ``http://`` or ``https://`` endpoint (``user:pass@`` becomes a Basic header).
        fmt: ``json``, ``es-bulk`` or ``splunk-hec``.
        ca_file: CA certificates (PEM) the HTTPS server is checked against.
        header_file: ``Name: value`` lines sent with every request (read again by reload()).
        headers: more headers (tests; the header file's win).
        batch_size: events per request at most.
        timeout: seconds for one request.

    Raises:
        ValueError: a URL that is not http(s), an unknown format, a malformed header file.
        OSError, ssl.SSLError: the CA or header file cannot be read.
    """

    name = "webhook"
    label = "WebhookOutput"
    backoff_first = 0.5
    backoff_max = 30.0

    def __init__(self, url: str, *, fmt: str = "json", ca_file: str | None = None,
                 header_file: str | None = None, headers: dict[str, str] | None = None,
                 batch_size: int = 100, timeout: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url {redact(url)!r} must be http:// or https://")
        if fmt not in FORMATS:
            raise ValueError(f"webhook format {fmt!r} is not one of {', '.join(FORMATS)}")
        if ca_file and not url.startswith("https://"):
            raise ValueError("--webhook-ca is for https:// URLs")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.url, self._url_headers = split_credentials(url)
        self.target = redact(url)
        self.fmt = fmt
        self.batch_events = batch_size
        self.timeout = timeout
        self.header_file = header_file
        self._extra = dict(headers or {})
        self._context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self.headers: dict[str, str] = {}
        self.batches = 0
        self.reload()

    def reload(self) -> None:
        """Read the header file again (start and SIGHUP); on error the old headers stay.

        Raises:
            OSError, ValueError: the header file cannot be read or is malformed.
        """
        from_file = read_header_file(self.header_file) if self.header_file else {}
        self.headers = {"Content-Type": CONTENT_TYPES[self.fmt],
                        "User-Agent": "edrfleet-agent",
                        **self._url_headers, **self._extra, **from_file}

    def send(self, lines: list[bytes]) -> tuple[int, str]:
        events: list[dict[str, Any]] = []
        good: list[bytes] = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
                good.append(line)
        bad = len(lines) - len(good)
        why = "spool line is not a JSON object" if bad else ""
        if not good:
            return bad, why
        answer = self._post(body(self.fmt, good, events))
        self.batches += 1
        if self.fmt == "es-bulk":
            retry, refused, reason = bulk_outcome(answer)
            if retry:
                raise Retry("Elasticsearch answered 429/5xx for some events")
            if refused:
                return bad + refused, reason
        return bad, why

    def _post(self, data: bytes) -> bytes:
        req = urllib.request.Request(self.url, data=data, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._context) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            try:
                detail = e.read(200).decode("utf-8", "replace").strip()
            except OSError:
                detail = ""
            finally:
                e.close()
            message = f"HTTP {e.code} {e.reason}" + (f": {detail}" if detail else "")
            if e.code in RETRIED_4XX or e.code >= 500:
                raise Retry(message) from None
            raise Rejected(message) from None
        except (OSError, ValueError) as e:  # URLError, refused, timeouts, TLS failures
            reason = getattr(e, "reason", e)
            raise Retry(f"POST {self.target}: {type(reason).__name__}: {reason}") from None

    def reset(self) -> None:
        """urllib opens a connection per request: nothing to forget."""

    def close(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {"format": self.fmt, "batches": self.batches}
