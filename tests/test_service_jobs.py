"""Real reconstruction jobs through a real ``python -m backend serve`` process: progress,
result, busy, cancel, no face, damaged image, missing model file, HTTP file fetching, and
twenty jobs in a row without growth.

Jobs use ``quality=fast, detail=false, texture=false`` on 224x224 eval photos to keep them
short; the service path is the same for every option set.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import numpy as np
import pytest
from PIL import Image

from backend.pipeline import STAGE_WEIGHTS
from tests.service_support import ServiceProcess, backend_processes, rss_kib

pytestmark = pytest.mark.slow

FAST = {"quality": "fast", "detail": False, "texture": False}
PHOTO = "IMG_0392_inputs.jpg"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, assets_dir: Path):
    jobs = tmp_path_factory.mktemp("jobs")
    svc = ServiceProcess("--assets", str(assets_dir), "--jobs-dir", str(jobs), "--keep-jobs", "3")
    svc.jobs_dir = jobs
    loaded = svc.wait_loaded()
    assert loaded["type"] == "ready", loaded
    yield svc
    assert svc.close() == 0, svc.stderr[-10:]
    assert list(jobs.iterdir()) == []  # every job folder is deleted at exit


def run_job(svc: ServiceProcess, photo: Path, options: dict | None = None,
            timeout: float = 600.0) -> tuple[str, list[dict], dict]:
    """Submit, then collect the job's progress events and its final result/error event."""
    rep = svc.request({"id": "job", "type": "reconstruct", "photo": str(photo),
                       "options": FAST if options is None else options})
    assert rep["type"] == "accepted", rep
    job = rep["job"]
    progress = []
    while True:
        ev = svc.next(timeout, lambda m: m.get("job") == job and "id" not in m)
        if ev["type"] != "progress":
            return job, progress, ev
        progress.append(ev)


def test_job_reports_progress_and_a_bundle(service: ServiceProcess, eval_dir: Path) -> None:
    job, progress, end = run_job(service, eval_dir / "photos" / PHOTO)
    assert end["type"] == "result", end
    fractions = [p["fraction"] for p in progress]
    assert fractions == sorted(fractions) and 0.0 <= fractions[0] and fractions[-1] == 1.0
    assert {p["stage"] for p in progress} <= set(STAGE_WEIGHTS)
    assert [p["seq"] for p in progress] == list(range(1, len(progress) + 1))
    bundle = Path(end["bundle_dir"])
    assert bundle == service.jobs_dir / job / "bundle"
    result = json.loads((bundle / "result.json").read_text())
    assert result["input"]["photo"] == PHOTO  # the copy keeps the photo's name
    assert result["model"]["n_vertices"] == 5023
    for name in result["files"].values():
        assert (bundle / name).is_file() and name in end["files"]
    assert sorted(p.name for p in (service.jobs_dir / job).iterdir()) == ["bundle"]  # photo copy gone
    assert service.request({"id": "h", "type": "health"})["state"] == "ready"
    assert service.request({"id": "r", "type": "release", "job": job})["type"] == "released"
    assert not (service.jobs_dir / job).exists()


def test_busy_health_and_cancel(service: ServiceProcess, eval_dir: Path) -> None:
    photo = eval_dir / "photos" / "expression_2.jpg"
    rep = service.request({"id": 1, "type": "reconstruct", "photo": str(photo), "options": FAST})
    job = rep["job"]
    service.next(120, lambda m: m.get("job") == job and m.get("stage") == "fit_landmarks")
    health = service.request({"id": 2, "type": "health"})
    assert health["state"] == "busy" and health["job"] == job
    second = service.request({"id": 3, "type": "reconstruct", "photo": str(photo)})
    assert second["type"] == "error" and second["code"] == "busy"
    assert service.request({"id": 4, "type": "cancel", "job": job}) == \
        {"type": "cancelling", "id": 4, "job": job}
    t0 = time.monotonic()
    end = service.next(120, lambda m: m.get("job") == job and m["type"] in ("result", "error"))
    assert end["type"] == "error" and end["code"] == "cancelled", end
    assert time.monotonic() - t0 < 30
    assert not (service.jobs_dir / job / "bundle").exists()
    again = service.request({"id": 5, "type": "cancel", "job": job})
    assert again["type"] == "error" and again["code"] == "bad_request"
    assert service.request({"id": 6, "type": "health"})["state"] == "ready"


def test_no_face(service: ServiceProcess, tmp_path: Path) -> None:
    y, x = np.mgrid[0:256, 0:256]
    Image.fromarray(np.stack([x, y, (x + y) // 2], -1).astype(np.uint8)).save(tmp_path / "wall.png")
    _, _, end = run_job(service, tmp_path / "wall.png")
    assert end["type"] == "error" and end["code"] == "bad_input"
    assert "face" in end["message"].lower()


def test_damaged_image_body(service: ServiceProcess, eval_dir: Path, tmp_path: Path) -> None:
    """The header is fine (accepted), the pixel data is cut: the pipeline reports bad input."""
    data = (eval_dir / "photos" / "expression_2.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    _, _, end = run_job(service, tmp_path / "cut.jpg")
    assert end["type"] == "error" and end["code"] == "bad_input", end
    assert "truncated" in end["message"] or "corrupt" in end["message"]


def _status_fields(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Threads",):
            fields[key] = int(value.split()[0])
    fields["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return fields


def test_twenty_jobs_without_growth(service: ServiceProcess, eval_dir: Path) -> None:
    """Twenty jobs on the same photo. RSS after a job sits in one of two levels about 16 MiB
    apart (allocator caches; seen: 670 or 686 MiB), so growth is judged on the trend of jobs
    3-20: the least-squares slope stays below 1.5 MiB per job (a leak of 2 MiB per job shows as
    about 2; the level noise gave 0.72 in the worst run seen) and the median of jobs 16-20
    within 24 MiB of the median of jobs 3-7. Threads and open fds never exceed their peak over jobs 1-5; one
    service process; at most --keep-jobs job folders."""
    photo = eval_dir / "photos" / PHOTO
    pid = service.proc.pid
    procs_before = len(backend_processes())
    rss, threads, fds = [], [], []
    for _ in range(20):
        _, _, end = run_job(service, photo)
        assert end["type"] == "result", end
        rss.append(rss_kib(pid))
        fields = _status_fields(pid)
        threads.append(fields["Threads"])
        fds.append(fields["fds"])
        assert len(list(service.jobs_dir.iterdir())) <= 3
    print("RSS MiB after each job:", [round(r / 1024) for r in rss], "threads:", threads, "fds:", fds)
    mib = np.asarray(rss, dtype=np.float64) / 1024.0
    slope = np.polyfit(np.arange(2, 20), mib[2:], 1)[0]
    assert slope < 1.5, (slope, mib.round().tolist())
    assert np.median(mib[15:]) - np.median(mib[2:7]) < 24.0, mib.round().tolist()
    assert max(threads[5:]) <= max(threads[:5]), threads
    assert max(fds[5:]) <= max(fds[:5]), fds
    assert len(backend_processes()) == procs_before


def test_missing_model_file(tmp_path: Path, assets_dir: Path, eval_dir: Path) -> None:
    svc = ServiceProcess("--assets", str(assets_dir), "--flame", str(tmp_path / "flame2023.pkl"))
    try:
        loaded = svc.wait_loaded()
        assert loaded["type"] == "error" and loaded["code"] == "model_file", loaded
        assert "flame2023.pkl" in loaded["message"]
        health = svc.request({"id": 1, "type": "health"})
        assert health["state"] == "error" and health["error"] == loaded["message"]
        rep = svc.request({"id": 2, "type": "reconstruct", "photo": str(eval_dir / "photos" / PHOTO)})
        assert rep["type"] == "error" and rep["code"] == "model_file"
    finally:
        assert svc.close() == 0


TOKEN = "jobs-token-77"


def _http(host: str, port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request(method, path, body=body, headers={"Authorization": f"Bearer {TOKEN}"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def test_http_job_files_and_path_checks(tmp_path: Path, assets_dir: Path, eval_dir: Path) -> None:
    jobs = tmp_path / "jobs"
    svc = ServiceProcess("--http", "0", "--assets", str(assets_dir), "--jobs-dir", str(jobs),
                         env={"HEADRECON_TOKEN": TOKEN})
    try:
        url = urlsplit(svc.http_url())
        host, port = url.hostname, url.port
        photo = (eval_dir / "photos" / PHOTO).read_bytes()
        query = urlencode({"options": json.dumps(FAST), "name": "../../evil/../" + PHOTO})
        status, body = _http(host, port, "POST", f"/v1/jobs?{query}", photo)
        assert status == 202, body
        job = json.loads(body)["job"]
        since, events, state = 0, [], "queued"
        deadline = time.monotonic() + 600
        while state not in ("done", "error", "cancelled"):
            assert time.monotonic() < deadline
            status, body = _http(host, port, "GET", f"/v1/jobs/{job}?since={since}")
            page = json.loads(body)
            state = page["state"]
            events += page["events"]
            since = max([since] + [e["seq"] for e in page["events"]])
            time.sleep(0.2)
        assert state == "done", events[-1]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # none lost or repeated
        result = events[-1]
        status, body = _http(host, port, "GET", f"/v1/jobs/{job}/files/result.json")
        assert status == 200 and json.loads(body)["input"]["photo"] == PHOTO
        for name in result["files"]:
            status, data = _http(host, port, "GET", f"/v1/jobs/{job}/files/{name}")
            assert status == 200 and data == (jobs / job / "bundle" / name).read_bytes()
        # a symlink planted in the bundle is not followed; files outside the bundle are not served
        (jobs / job / "bundle" / "leak.txt").symlink_to("/etc/hostname")
        for name in ("leak.txt", PHOTO, "..", "%2e%2e%2fbundle", "bundle", "..%2f" + PHOTO):
            status, _ = _http(host, port, "GET", f"/v1/jobs/{job}/files/{name}")
            assert status in (400, 404), name
        assert not list(jobs.glob("**/evil"))
        status, _ = _http(host, port, "DELETE", f"/v1/jobs/{job}")
        assert status == 200 and not (jobs / job).exists()
        status, _ = _http(host, port, "GET", f"/v1/jobs/{job}/files/result.json")
        assert status == 404
    finally:
        svc.proc.terminate()
        assert svc.proc.wait(60) == 0
