"""Issue 12 item 14: the HTTP transport against clients that drip, send bodies with GETs or
hang up, on a real ``python -m backend serve --http 0`` process bound to 127.0.0.1 (short
``--request-timeout`` so the test is quick). Every loop is bounded."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.service_support import ServiceProcess

TOKEN = "test-token-77c1"
DEADLINE_S = 2.0
AUTH = f"Authorization: Bearer {TOKEN}\r\n".encode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, assets_dir: Path):
    svc = ServiceProcess("--http", "0", "--host", "127.0.0.1", "--assets", str(assets_dir),
                         "--jobs-dir", str(tmp_path_factory.mktemp("jobs")),
                         "--request-timeout", str(DEADLINE_S), env={"HEADRECON_TOKEN": TOKEN})
    url = urlsplit(svc.http_url())
    svc.host, svc.port = url.hostname, url.port
    assert svc.host == "127.0.0.1"
    yield svc
    svc.proc.terminate()
    assert svc.proc.wait(30) == 0, svc.stderr[-10:]


def _connect(svc: ServiceProcess) -> socket.socket:
    return socket.create_connection((svc.host, svc.port), timeout=10)


def _read_all(sock: socket.socket, limit_s: float = 10.0) -> bytes:
    """Everything until the server closes (bounded by ``limit_s``)."""
    data, end = b"", time.monotonic() + limit_s
    while time.monotonic() < end:
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, ConnectionError):
            break
        if not chunk:
            break
        data += chunk
    return data


def test_dripping_client_is_dropped(served: ServiceProcess) -> None:
    """One header byte every 0.5 s (each read within the 30 s socket timeout): dropped at the
    request deadline instead of holding a thread forever."""
    request = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + AUTH + b"X-Pad: " + b"a" * 200 + b"\r\n\r\n"
    with _connect(served) as sock:
        start = time.monotonic()
        closed = False
        for byte in request:  # at most ~120 s; the server must close long before
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sock.settimeout(0.5)
            try:
                if sock.recv(1) == b"":
                    closed = True
                    break
            except socket.timeout:
                pass
            except ConnectionResetError:
                closed = True
                break
        assert closed, "the server answered a request that took too long to arrive"
        assert time.monotonic() - start < DEADLINE_S + 3


def test_slow_upload_body_is_dropped(served: ServiceProcess) -> None:
    """Headers on time, then a 10 kB photo body at 10 bytes per 0.3 s: dropped, no job."""
    head = (b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n" + AUTH
            + b"Content-Type: application/octet-stream\r\nContent-Length: 10000\r\n\r\n")
    with _connect(served) as sock:
        sock.sendall(head)
        start, closed = time.monotonic(), False
        for _ in range(200):
            try:
                sock.sendall(b"x" * 10)
                sock.settimeout(0.3)
                if sock.recv(65536) != b"":
                    continue  # an error answer is fine too; keep reading until closed
                closed = True
                break
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        assert closed and time.monotonic() - start < DEADLINE_S + 3


def test_get_body_is_not_parsed_as_the_next_request(served: ServiceProcess) -> None:
    """A GET with a body that looks like a request: one answer (health), not two."""
    smuggled = b"DELETE /v1/jobs/0123456789abcdef HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n"
    request = (b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + AUTH
               + b"Content-Length: " + str(len(smuggled)).encode() + b"\r\nConnection: close\r\n\r\n"
               + smuggled)
    with _connect(served) as sock:
        sock.sendall(request)
        data = _read_all(sock)
    assert data.count(b"HTTP/1.1 ") == 1, data
    assert json.loads(data.partition(b"\r\n\r\n")[2])["type"] == "health"
    # Keep-alive: a second, real request on the same connection is still answered.
    with _connect(served) as sock:
        sock.sendall(request.replace(b"Connection: close\r\n", b"")
                     + b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Connection: close\r\n\r\n")
        data = _read_all(sock)
    assert data.count(b"HTTP/1.1 200") == 2 and b"404" not in data, data


def test_disconnecting_clients_leave_no_traceback(served: ServiceProcess, eval_dir: Path) -> None:
    """Clients hanging up mid-headers, mid-body, with a reset, and before reading an answer."""
    before = len(served.stderr)
    photo = (eval_dir / "photos" / "expression_5.jpg").read_bytes()
    cases = [
        b"GET /v1/heal",
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Length: 50000\r\n\r\n" + photo[:1000],
        b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n",
    ]
    for data in cases:
        for reset in (False, True):
            sock = _connect(served)
            sock.sendall(data)
            if reset:  # RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()
    time.sleep(DEADLINE_S + 1.0)  # past the deadline of anything still half-open
    new = served.stderr[before:]
    assert not any("Traceback" in ln or "Exception occurred" in ln for ln in new), new
    with _connect(served) as sock:  # still serving
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Connection: close\r\n\r\n")
        assert b"HTTP/1.1 200" in _read_all(sock)
