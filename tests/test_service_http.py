"""HTTP mode of a real ``python -m backend serve --http 0`` process: loopback binding, bearer
token, size limits, path tricks and a fuzz of malformed requests.

None of these need a finished job; fetching a real job's files is in test_service_jobs.py.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.service_support import ServiceProcess, alive, listening_addresses

TOKEN = "test-token-3f9a"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, assets_dir: Path):
    jobs = tmp_path_factory.mktemp("jobs")
    svc = ServiceProcess("--http", "0", "--assets", str(assets_dir), "--jobs-dir", str(jobs),
                         "--max-upload-mb", "1", env={"HEADRECON_TOKEN": TOKEN})
    url = urlsplit(svc.http_url())
    svc.host, svc.port, svc.jobs_dir = url.hostname, url.port, jobs
    yield svc
    svc.proc.terminate()
    assert svc.proc.wait(30) == 0, svc.stderr[-10:]


def call(svc: ServiceProcess, method: str, path: str, body: bytes | None = None,
         token: str | None = TOKEN, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection(svc.host, svc.port, timeout=30)
    hdrs = dict(headers or {})
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=body, headers=hdrs)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), data


def raw_request(svc: ServiceProcess, head: bytes) -> tuple[int, dict]:
    """Send request bytes as they are (no body) and parse the status line and JSON body."""
    with socket.create_connection((svc.host, svc.port), timeout=30) as sock:
        sock.sendall(head)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    header, _, body = data.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    return status, json.loads(body) if body else {}


def test_bound_to_loopback_only(served: ServiceProcess) -> None:
    addrs = listening_addresses(served.proc.pid)
    assert addrs == [("127.0.0.1", served.port)]


@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN.upper(), TOKEN + "x", TOKEN[:-1]])
def test_token_required(served: ServiceProcess, token: str | None) -> None:
    status, headers, body = call(served, "GET", "/v1/health", token=token)
    assert status == 401
    assert headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert json.loads(body)["code"] == "unauthorized"


def test_other_auth_schemes_refused(served: ServiceProcess) -> None:
    for value in (f"Basic {TOKEN}", TOKEN, f"bearer {TOKEN}", f"Token {TOKEN}"):
        status, _, _ = call(served, "GET", "/v1/health", token=None, headers={"Authorization": value})
        assert status == 401, value


def test_health_with_token(served: ServiceProcess) -> None:
    status, _, body = call(served, "GET", "/v1/health")
    assert status == 200
    health = json.loads(body)
    assert health["type"] == "health" and health["pid"] == served.proc.pid


def test_unauthorised_upload_is_not_stored(served: ServiceProcess, eval_dir: Path) -> None:
    photo = (eval_dir / "photos" / "IMG_0392_inputs.jpg").read_bytes()
    status, _, _ = call(served, "POST", "/v1/jobs", body=photo, token="nope")
    assert status == 401
    assert list(served.jobs_dir.iterdir()) == []


def test_oversize_upload_413_without_reading_it(served: ServiceProcess) -> None:
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {5 << 20}\r\n\r\n").encode()
    status, body = raw_request(served, head)
    assert status == 413 and body["code"] == "too_large"


def test_length_required(served: ServiceProcess) -> None:
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n").encode()
    status, body = raw_request(served, head)
    assert status == 411 and body["type"] == "error"
    for length in ("-1", "abc", "1e9", "\u00b2", "99999999999999"):
        head = (f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Length: {length}\r\n\r\n").encode()
        status, body = raw_request(served, head)
        assert status in (400, 413), length


PATH_TRICKS = [
    "/v1/jobs/../../etc/passwd", "/v1/jobs/0123456789abcdef/files/../../../etc/passwd",
    "/v1/jobs/0123456789abcdef/files/..%2f..%2fetc%2fpasswd", "/v1/jobs/%2e%2e/files/x",
    "/v1/jobs/0123456789abcdef/files/%2e%2e", "/v1/jobs/0123456789abcdef/files/.",
    "/v1/jobs/0123456789abcdef/files/..", "/v1/jobs/0123456789abcdef/files/.hidden",
    "/v1/jobs/0123456789abcdef/files//etc/passwd", "/v1/jobs/0123456789abcdef/files/a\\..\\b",
    "/v1/jobs/0123456789abcdef/files/result.json%00.png", "/v1/jobs/..%2f..%2f/files/result.json",
    "/v1/jobs/0123456789abcdef/../../files/x", "//etc/passwd", "/etc/passwd", "/v1/../etc/passwd",
    "/v1/jobs/0123456789abcdef/files/" + "a" * 300, "/v1/jobs/" + "0" * 5000,
    "/v1/jobs/~root/files/x", "/v1/jobs/0123456789abcdef/files/photo.jpg/..",
    "/v1/jobs/0123456789abcdef/../0123456789abcdef/files/result.json",
]


@pytest.mark.parametrize("path", PATH_TRICKS)
def test_path_tricks_rejected(served: ServiceProcess, path: str) -> None:
    head = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
    status, body = raw_request(served, head)
    assert 400 <= status < 500, (path, status)
    assert body["type"] == "error"


def test_http_fuzz_every_request_gets_an_error(served: ServiceProcess) -> None:
    rng = random.Random(3)
    methods = ["GET", "POST", "DELETE", "PUT", "PATCH"]
    paths = ["/", "/v1", "/v1/", "/v1/health/x", "/v1/jobs", "/v1/jobs/", "/v2/health",
             "/v1/jobs/0123456789abcdef", "/v1/jobs/0123456789abcdef/cancel",
             "/v1/jobs/0123456789abcdef/files/result.json", "/v1/jobs?options=%7B%7D",
             "/v1/jobs?options=%5B%5D", "/v1/jobs?options=notjson", "/v1/jobs?options=%7B%22flame%22%3A1%7D",
             "/v1/jobs/0123456789abcdef?since=-1", "/v1/jobs/0123456789abcdef?since=abc",
             "/v1/jobs?a=1&b=2&c=3&d=4&e=5&f=6"]
    for i in range(120):
        method = rng.choice(methods)
        path = rng.choice(paths)
        if i % 4 == 0:
            path += "".join(rng.choice("abc/._-%20?&=") for _ in range(rng.randint(1, 20)))
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 3000))) if method != "GET" else None
        status, _, data = call(served, method, path, body=body)
        assert 400 <= status < 500, (method, path, status)
        assert json.loads(data)["type"] == "error"
    assert alive(served.proc.pid)
    assert call(served, "GET", "/v1/health")[0] == 200
    assert list(served.jobs_dir.iterdir()) == []
