"""HTTP transport of ``headrecon serve`` (``--http PORT``): bearer token, size limits, files
fetched by bare name from a finished job's bundle folder. Routes in docs/SERVICE.md."""

from __future__ import annotations

import hmac
import json
import logging
import re
import sys
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
        try:
            if len(self.path) > MAX_PATH_CHARS:
                self._error(414, "bad_request", "Request path too long.")
                return
            if not self._authorised():
                self._error(401, "unauthorized", "Missing or wrong bearer token.")
                return
            self._route(method)
        except RequestError as exc:
            self._error(exc.http_status, exc.code, exc.message)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - one request must never kill the service
            traceback.print_exc(file=sys.stderr)
            self._error(500, "internal", error_message(exc))

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

    def __init__(self, host: str, port: int, token: str):
        super().__init__((host, port), _Handler)
        self.token = token.encode("utf-8")
        self.service: Service | None = None


def make_http_server(host: str, port: int, token: str) -> HTTPServiceServer:
    """Bind (not started); set ``server.service`` before ``serve_forever``. OSError if the
    address is taken. ``server.server_address`` has the actual port (``port`` 0 = any)."""
    return HTTPServiceServer(host, port, token)
