"""One local HTTP/1.1 test server for the Python unit tests (127.0.0.1 only).

Paths are routes: a route is a function of the request handler that answers
it. ``prefix=True`` lets the longest route that prefixes a path answer it (an
artifact server's ``/artifacts/…``); otherwise the path must match exactly.
Unknown paths get 404. The server records every request.

Use the ``stop`` and ``serve`` fixtures (tests/python/conftest.py): ``serve``
starts servers and closes them at the end of the test, after setting ``stop``
so that routes that would talk (or stay silent) for ever end.
"""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Callable

Route = Callable[[http.server.BaseHTTPRequestHandler], None]


class Server:
    """A local HTTP/1.1 server whose paths are routes; it remembers what it was asked."""

    def __init__(self, routes: dict[str, Route], tls: ssl.SSLContext | None = None, *,
                 prefix: bool = False) -> None:
        self.routes = dict(routes)
        #: (path, headers) of every request, in order
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests.append((self.path, dict(self.headers)))
                route = server.route_for(self.path, prefix)
                try:
                    route(self) if route is not None else send(self, b"no such thing", status=404)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the reader gave up, as it should

            def log_message(self, *args: object) -> None:
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        if tls is not None:
            self.http.socket = tls.wrap_socket(self.http.socket, server_side=True)
        self.port = self.http.server_port
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def hits(self) -> list[str]:
        """The paths asked for, in order."""
        return [path for path, _ in self.requests]

    def route_for(self, path: str, prefix: bool) -> Route | None:
        if not prefix:
            return self.routes.get(path)
        prefixes = [p for p in self.routes if path.startswith(p)]
        return self.routes[max(prefixes, key=len)] if prefixes else None

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def send(h: http.server.BaseHTTPRequestHandler, body: bytes, *, status: int = 200,
         headers: dict[str, str] | None = None, length: int | None = -1) -> None:
    """Answer with ``body``; ``length=None`` omits Content-Length, any other value lies with it."""
    h.send_response(status)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    if length is not None:
        h.send_header("Content-Length", str(len(body) if length == -1 else length))
    h.send_header("Connection", "close")
    h.end_headers()
    h.wfile.write(body)
