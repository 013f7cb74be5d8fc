"""HTTP transport of ``headrecon serve`` (``--http PORT``): bearer token, size limits, files
fetched by bare name from a finished job's bundle folder. Routes in docs/SERVICE.md."""

from __future__ import annotations

import hmac
import io
import json
import logging
import re
import socket
import sys
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .. import __version__
from .jobs import MAX_PATH_CHARS, MAX_QUERY_CHARS, RequestError, Service, error_message

log = logging.getLogger("headrecon.service")

CONTENT_TYPES = {".json": "application/json", ".png": "image/png", ".jpg": "image/jpeg",
                 ".obj": "text/plain; charset=utf-8", ".npz": "application/octet-stream"}


_DIGITS = re.compile(r"[0-9]{1,12}")
REQUEST_DEADLINE_S = 30.0  # a whole request (wait, headers, body) must arrive within this...
MIN_UPLOAD_BPS = 256 << 10  # ...plus the body's length at this rate (a slow link, not a drip)
MAX_DRAIN_BYTES = 64 << 10  # an unread body up to this is skipped; a larger one ends the connection


class _DeadlineSocketIO(io.RawIOBase):
    """The request side of a connection with one deadline for the whole request: every
    receive gets the socket timeout that is left, so a client sending a byte now and then is
    dropped (a per-receive timeout alone never fires for it)."""

    def __init__(self, sock: socket.socket):
        super().__init__()
        self._sock = sock
        self.deadline = time.monotonic() + REQUEST_DEADLINE_S

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request deadline passed")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


def _query(query: str) -> dict[str, list[str]]:
    """Parsed query string; RequestError for too many fields."""
    try:
        return parse_qs(query, max_num_fields=4)
    except ValueError:
        raise RequestError("bad_request", "Too many query parameters.") from None


class _Handler(BaseHTTPRequestHandler):
    """REST routes (all need the bearer token):

    GET /v1/health; POST /v1/jobs?options=<json> (body: the photo); GET /v1/jobs/<id>?since=N;
    POST /v1/jobs/<id>/cancel; GET /v1/jobs/<id>/files/<name>; DELETE /v1/jobs/<id>.
    """

    server_version = f"headrecon/{__version__}"
    protocol_version = "HTTP/1.1"
    timeout = 30
    server: "HTTPServiceServer"

    @property
    def service(self) -> Service:
        svc = self.server.service
        if svc is None:
            raise RequestError("busy", "The service is starting.", 503)
        return svc

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the stdlib's reader: replaced by one under the request deadline
        self._incoming = _DeadlineSocketIO(self.connection)
        self.rfile = io.BufferedReader(self._incoming, 1 << 16)

    def handle_one_request(self) -> None:
        """One request under the server's deadline (from the wait for it to its last body
        byte; the body's length at MIN_UPLOAD_BPS is added once it is known).

        A client that is too slow, or gone, ends the connection quietly (debug log only)."""
        self._incoming.deadline = time.monotonic() + self.server.request_deadline
        try:
            super().handle_one_request()
        except (TimeoutError, ConnectionError, socket.timeout) as exc:
            log.debug("%s dropped: %s", self.address_string(), exc)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=True, allow_nan=False, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="headrecon"')
        if status >= 400:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str) -> None:
        self._send_json(status, {"type": "error", "code": code, "message": message})

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization", "")
        given = header[7:].strip().encode("utf-8", "replace") if header.startswith("Bearer ") else b""
        return hmac.compare_digest(given, self.server.token)

    def _dispatch(self, method: str) -> None:
        self.connection.settimeout(self.timeout)  # answers are sent under the plain timeout
        try:
            if len(self.path) > MAX_PATH_CHARS:
                self._error(414, "bad_request", "Request path too long.")
                return
            if not self._authorised():
                self._error(401, "unauthorized", "Missing or wrong bearer token.")
                return
            self._skip_unread_body()
            self._route(method)
        except RequestError as exc:
            self._error(exc.http_status, exc.code, exc.message)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - one request must never kill the service
            traceback.print_exc(file=sys.stderr)
            self._error(500, "internal", error_message(exc))

    def _skip_unread_body(self) -> None:
        """A body sent with a request that takes none (GET, DELETE, cancel) is never parsed
        as the next request: a small one is read and dropped, otherwise (chunked, large, bad
        length) the connection closes after the answer."""
        if self.command == "POST" and self.path.split("?", 1)[0].rstrip("/") == "/v1/jobs":
            return  # the upload: _read_body reads it
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
        elif length is not None:
            if _DIGITS.fullmatch(length) and int(length) <= MAX_DRAIN_BYTES:
                self._extend_deadline(int(length))
                if len(self.rfile.read(int(length))) != int(length):
                    self.close_connection = True
            else:
                self.close_connection = True

    def _extend_deadline(self, length: int) -> None:
        self._incoming.deadline += length / MIN_UPLOAD_BPS

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        parts = url.path.split("/")[1:]
        if parts[:1] != ["v1"]:
            raise RequestError("not_found", "Unknown path.", 404)
        parts = parts[1:]
        if method == "GET" and parts == ["health"]:
            self._send_json(200, self.service.health())
        elif method == "POST" and parts == ["jobs"]:
            self._submit(url.query)
        elif method == "GET" and len(parts) == 2 and parts[0] == "jobs":
            self._status(parts[1], url.query)
        elif method == "POST" and len(parts) == 3 and parts[0] == "jobs" and parts[2] == "cancel":
            job = self.service.cancel(parts[1])
            self._send_json(200, {"type": "cancelling", "job": job.id})
        elif method == "DELETE" and len(parts) == 2 and parts[0] == "jobs":
            self.service.release(parts[1])
            self._send_json(200, {"type": "released", "job": parts[1]})
        elif method == "GET" and len(parts) == 4 and parts[0] == "jobs" and parts[2] == "files":
            self._file(parts[1], parts[3])
        else:
            raise RequestError("not_found", "Unknown path or method.", 404)

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length is None:
            raise RequestError("bad_request", "Send the photo with a Content-Length header.", 411)
        if not _DIGITS.fullmatch(length):
            raise RequestError("bad_request", "Bad Content-Length.", 400)
        if int(length) > self.service.max_upload:
            raise RequestError("too_large", f"The photo is larger than the "
                                            f"{self.service.max_upload >> 20} MiB limit.", 413)
        self._extend_deadline(int(length))
        data = self.rfile.read(int(length))
        if len(data) != int(length):
            raise RequestError("bad_request", "The request body ended early.", 400)
        return data

    def _submit(self, query: str) -> None:
        if len(query) > MAX_QUERY_CHARS:
            raise RequestError("bad_request", "Query string too long.", 414)
        data = self._read_body()
        params = _query(query)
        raw = params.get("options", ["{}"])[-1]
        try:
            options = json.loads(raw)
        except (ValueError, RecursionError):
            raise RequestError("bad_request", "options must be URL-encoded JSON.") from None
        job = self.service.submit(data, options, None, name=params.get("name", ["photo"])[-1])
        self.service.enqueue(job)
        self._send_json(202, {"type": "accepted", "job": job.id})

    def _status(self, job_id: str, query: str) -> None:
        job = self.service.job(job_id)
        since_raw = _query(query).get("since", ["0"])[-1]
        if not _DIGITS.fullmatch(since_raw):
            raise RequestError("bad_request", "since must be a non-negative integer.")
        self._send_json(200, self.service.job_status(job, int(since_raw)))

    def _file(self, job_id: str, name: str) -> None:
        path = self.service.bundle_file(job_id, name)
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPES.get(path.suffix, "application/octet-stream"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - stdlib names
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")


class HTTPServiceServer(ThreadingHTTPServer):
    """Threading HTTP server holding the service and the bearer token."""

    daemon_threads = True

    def __init__(self, host: str, port: int, token: str,
                 request_deadline: float = REQUEST_DEADLINE_S):
        super().__init__((host, port), _Handler)
        self.token = token.encode("utf-8")
        self.service: Service | None = None
        self.request_deadline = float(request_deadline)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up or timed out is no error of the service: no traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
            log.debug("%s: connection ended (%s)", client_address, exc)
            return
        super().handle_error(request, client_address)


def make_http_server(host: str, port: int, token: str,
                     request_deadline: float = REQUEST_DEADLINE_S) -> HTTPServiceServer:
    """Bind (not started); set ``server.service`` before ``serve_forever``. OSError if the
    address is taken. ``server.server_address`` has the actual port (``port`` 0 = any).
    ``request_deadline``: seconds a client has to send a whole request (plus its body's
    length at MIN_UPLOAD_BPS); slower clients are dropped."""
    return HTTPServiceServer(host, port, token, request_deadline)
