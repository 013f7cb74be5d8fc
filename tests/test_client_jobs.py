"""The add-on's client with real jobs: local process (result copied out, cancel, killed
mid-job, timeout, restart) and remote HTTP (token, downloaded bundle).

Jobs use ``quality=fast, detail=false, texture=false`` to stay short.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from headrecon_addon.client import Backend, BackendConfig, LocalBackend, RemoteBackend
from tests.service_support import ServiceProcess, alive

pytestmark = pytest.mark.slow

FAST = {"quality": "fast", "detail": False, "texture": False}
PHOTO = "IMG_0392_inputs.jpg"


def poll_until(backend: Backend, pred, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timeout: status={backend.status} {backend.message} " \
                                            f"job={backend.job}"
        backend.poll()
        time.sleep(0.05)


@pytest.fixture(scope="module")
def local(assets_dir: Path):
    b = LocalBackend(BackendConfig(command=sys.executable, assets=str(assets_dir)))
    b.start()
    poll_until(b, lambda: b.status != "starting")
    assert b.status == "ready", b.message
    yield b
    b.stop()


def test_local_job_copies_the_bundle_out(local: LocalBackend, eval_dir: Path, tmp_path: Path) -> None:
    job = local.reconstruct(str(eval_dir / "photos" / PHOTO), FAST, tmp_path)
    assert local.status == "busy"
    fractions = []
    poll_until(local, lambda: fractions.append(job.fraction) or job.finished)
    assert job.state == "done", job.message
    assert fractions == sorted(fractions)
    assert job.bundle_dir == tmp_path / job.id
    result = json.loads((job.bundle_dir / "result.json").read_text())
    for name in result["files"].values():
        assert (job.bundle_dir / name).is_file()
    assert local.status == "ready" and local.device == "cpu"
    assert local.status_text == "Ready on CPU (cpu)"


def test_local_cancel(local: LocalBackend, eval_dir: Path, tmp_path: Path) -> None:
    job = local.reconstruct(str(eval_dir / "photos" / "expression_2.jpg"), FAST, tmp_path)
    poll_until(local, lambda: job.fraction > 0.05 or job.finished)
    local.cancel()
    poll_until(local, lambda: job.finished, 60)
    assert job.state == "cancelled" and job.error_code == "cancelled"
    assert local.status == "ready"
    assert list(tmp_path.iterdir()) == []


def test_local_job_timeout(assets_dir: Path, eval_dir: Path, tmp_path: Path) -> None:
    b = LocalBackend(BackendConfig(command=sys.executable, assets=str(assets_dir), job_timeout_s=1.0))
    try:
        b.start()
        poll_until(b, lambda: b.status != "starting")
        job = b.reconstruct(str(eval_dir / "photos" / "expression_2.jpg"), FAST, tmp_path)
        poll_until(b, lambda: job.finished, 60)
        assert job.state == "failed" and job.error_code == "timeout"
        assert "timed out after 1 s" in job.message
    finally:
        b.stop()


def test_local_killed_mid_job_then_restart(assets_dir: Path, eval_dir: Path, tmp_path: Path) -> None:
    b = LocalBackend(BackendConfig(command=sys.executable, assets=str(assets_dir)))
    try:
        b.start()
        poll_until(b, lambda: b.status != "starting")
        job = b.reconstruct(str(eval_dir / "photos" / "expression_2.jpg"), FAST, tmp_path)
        poll_until(b, lambda: job.fraction > 0.05)
        pid = b.proc.pid
        os.kill(pid, signal.SIGKILL)
        poll_until(b, lambda: job.finished, 60)
        assert job.state == "failed" and job.error_code == "backend_exited"
        assert "killed (signal 9)" in job.message
        assert b.status == "error" and "killed" in b.status_text and not alive(pid)
        b.start()
        poll_until(b, lambda: b.status != "starting")
        assert b.status == "ready"
        job = b.reconstruct(str(eval_dir / "photos" / PHOTO), FAST, tmp_path)
        poll_until(b, lambda: job.finished)
        assert job.state == "done", job.message
    finally:
        b.stop()


TOKEN = "client-token-5c1"


@pytest.fixture(scope="module")
def remote_service(assets_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    jobs = tmp_path_factory.mktemp("remote-jobs")
    svc = ServiceProcess("--http", "0", "--assets", str(assets_dir), "--jobs-dir", str(jobs),
                         env={"HEADRECON_TOKEN": TOKEN})
    svc.url, svc.jobs_dir = svc.http_url(), jobs
    yield svc
    svc.proc.terminate()
    assert svc.proc.wait(60) == 0


def test_remote_job_downloads_the_bundle(remote_service: ServiceProcess, eval_dir: Path,
                                         tmp_path: Path) -> None:
    b = RemoteBackend(BackendConfig(remote_url=remote_service.url, token=TOKEN))
    b.start()
    poll_until(b, lambda: b.status != "starting")
    assert b.status == "ready", b.message
    job = b.reconstruct(str(eval_dir / "photos" / PHOTO), FAST, tmp_path)
    poll_until(b, lambda: job.finished)
    assert job.state == "done", job.message
    result = json.loads((job.bundle_dir / "result.json").read_text())
    assert result["input"]["photo"] == PHOTO
    for name in result["files"].values():
        assert (job.bundle_dir / name).is_file()
    assert not (remote_service.jobs_dir / job.id).exists()  # released on the server
    b.stop()


def test_remote_wrong_token_and_unreachable(remote_service: ServiceProcess) -> None:
    b = RemoteBackend(BackendConfig(remote_url=remote_service.url, token="wrong"))
    b.start()
    poll_until(b, lambda: b.status != "starting", 30)
    assert b.status == "error" and "rejected the token" in b.message
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = RemoteBackend(BackendConfig(remote_url=f"http://127.0.0.1:{port}", token=TOKEN))
    closed.start()
    poll_until(closed, lambda: closed.status != "starting", 30)
    assert closed.status == "error" and "Cannot reach the backend" in closed.message
