"""Issue 12 item 2: a hostile remote backend cannot write outside the add-on's destination.

A real HTTP server (stdlib, in a thread) answers the add-on's real ``RemoteBackend`` with a
job id or file names that try to escape (``../``, absolute paths, dot files) and with an
oversized file; nothing may land outside ``dest/<job id>`` and the job fails with a sentence.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from headrecon_addon import client
from headrecon_addon.client import BackendConfig, RemoteBackend, cleartext_warning, contained_path

GOOD_ID = "0123456789abcdef"


def _hostile_server(job_id: Any, files: list[Any], file_bytes: int = 10) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, doc: Any) -> None:
            body = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/v1/health":
                return self._json({"type": "health", "state": "ready", "device": "cpu",
                                   "model": {"name": "dev"}})
            if "/files/" in self.path:
                self.send_response(200)
                self.send_header("Content-Length", str(file_bytes))
                self.end_headers()
                chunk = b"x" * min(file_bytes, 1 << 20)
                left = file_bytes
                try:
                    while left > 0:
                        self.wfile.write(chunk[:left])
                        left -= len(chunk)
                except OSError:
                    pass
                return
            return self._json({"state": "done", "events": [
                {"type": "result", "job": job_id, "files": files, "seq": 1, "warnings": [],
                 "timings": {}, "device": "cpu"}]})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._json({"job": job_id})

        def do_DELETE(self) -> None:
            self._json({})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _run(server: ThreadingHTTPServer, tmp_path: Path, photo: Path) -> tuple[Any, Path]:
    dest = tmp_path / "sandbox" / "dest"
    dest.mkdir(parents=True)
    backend = RemoteBackend(BackendConfig(remote_url=f"http://127.0.0.1:{server.server_address[1]}",
                                          token="t"))
    backend.start()
    deadline = time.monotonic() + 30
    while backend.status != "ready" and time.monotonic() < deadline:
        backend.poll()
        time.sleep(0.05)
    job = backend.reconstruct(str(photo), {}, dest)
    while not job.finished and time.monotonic() < deadline:
        backend.poll()
        time.sleep(0.05)
    backend.stop()
    server.shutdown()
    return job, dest


def _outside(tmp_path: Path, dest: Path) -> list[Path]:
    return [p for p in tmp_path.rglob("*") if p.is_file() and dest not in p.parents
            and p.name != "photo.jpg"]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    p = tmp_path / "photo.jpg"
    p.write_bytes(b"\xff\xd8 not really a jpeg")
    return p


@pytest.mark.parametrize("job_id", ["../../escaped", "/tmp/headrecon-abs-escape", "..", "", 7,
                                    "0123456789ABCDEF", "0123456789abcdef/../x"])
def test_invalid_job_id_is_refused(tmp_path: Path, photo: Path, job_id: Any) -> None:
    job, dest = _run(_hostile_server(job_id, ["result.json"]), tmp_path, photo)
    assert job.state == "failed" and "job id" in job.message
    assert _outside(tmp_path, dest) == [] and not Path("/tmp/headrecon-abs-escape").exists()


@pytest.mark.parametrize("name", ["../escape.txt", "/tmp/abs.txt", ".hidden", "..", "a/b",
                                  "a\\b", "x" * 300, None])
def test_invalid_file_name_is_refused(tmp_path: Path, photo: Path, name: Any) -> None:
    job, dest = _run(_hostile_server(GOOD_ID, ["result.json", name]), tmp_path, photo)
    assert job.state == "failed" and "file" in job.message
    assert _outside(tmp_path, dest) == []
    assert not (dest / GOOD_ID).exists()  # nothing half-written


def test_oversized_file_is_refused(tmp_path: Path, photo: Path, monkeypatch) -> None:
    monkeypatch.setattr(client, "MAX_FILE_BYTES", 1 << 20)
    job, dest = _run(_hostile_server(GOOD_ID, ["texture.png"], file_bytes=3 << 20), tmp_path, photo)
    assert job.state == "failed" and "larger than" in job.message


def test_contained_path_and_cleartext_warning(tmp_path: Path) -> None:
    assert contained_path(tmp_path, "albedo.png") == (tmp_path / "albedo.png").resolve()
    (tmp_path / "link.png").symlink_to("/etc/passwd")
    with pytest.raises(client.BackendError):
        contained_path(tmp_path, "link.png")
    assert cleartext_warning("http://127.0.0.1:8765") is None
    assert cleartext_warning("https://gpu.example:8765") is None
    assert "clear text" in (cleartext_warning("http://gpu.example:8765") or "")
