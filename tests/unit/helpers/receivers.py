"""Real receivers on 127.0.0.1 for the output tests: a TCP/TLS syslog server (octet-counted
frames), an HTTP(S) collector, and a throwaway CA made with ``openssl``.  Threads in the test
process; every wait is bounded."""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path


def wait_for(pred, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key): a CA and a server certificate for 127.0.0.1 and
    localhost, made by ``openssl`` here."""
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", "2", "-subj", "/CN=edrfleet test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", "/CN=localhost")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return ca, cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


class TcpSyslogReceiver:
    """Accepts connections on a fixed port, splits RFC 6587 octet-counted frames; ``stop()``
    closes the listener and every connection (a receiver going down), ``start()`` again on
    the same port (coming back)."""

    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.port = port or free_port()
        self.tls = tls
        self.frames: list[bytes] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._srv: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self.start()

    def start(self) -> None:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(8)
        self._srv = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except OSError:
                    conn.close()
                    continue
            with self._lock:
                self._conns.append(conn)
                self.connections += 1
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b" " in buf:
                length, _, rest = buf.partition(b" ")
                n = int(length)
                if len(rest) < n:
                    break
                with self._lock:
                    self.frames.append(rest[:n])
                buf = rest[n:]

    def stop(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        if self._srv is not None:
            try:  # wakes the thread blocked in accept(), which else takes one more connection
                self._srv.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._srv.close()
            self._srv = None
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()


class HttpCollector:
    """A real http.server on 127.0.0.1 recording each POST (body, headers); ``answers`` is a
    list of status codes to answer first (then 200), ``bulk_answer`` an ES ``_bulk`` reply."""

    def __init__(self, port: int = 0, answers: list[int] | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.bodies: list[bytes] = []
        self.headers: list[dict] = []
        self.answers = list(answers or [])
        self.bulk_answer: bytes | None = None
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests += 1
                code = outer.answers.pop(0) if outer.answers else 200
                reply = b""
                if code == 200:
                    outer.bodies.append(body)
                    outer.headers.append(dict(self.headers))
                    reply = outer.bulk_answer or b'{"text":"Success","code":0}'
                else:
                    reply = b'{"error":"test says no"}'
                self.send_response(code)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/events"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def events(self) -> list:
        """Events of JSON-array bodies, in arrival order."""
        return [e for body in self.bodies for e in json.loads(body)]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
