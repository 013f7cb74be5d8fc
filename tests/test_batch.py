"""``headrecon batch`` as a user runs it: real processes, real photos, broken files.

Three real photos of ``../shared/eval/photos`` (224 px, ``--quality fast --no-detail
--no-texture`` to keep the file near three minutes on two cores) and two broken files go
through local mode with two workers and through a local Ray instance (2 CPUs, 2 actors).
A worker is killed mid-photo by the worker's test hook (``HEADRECON_TEST_CRASH_PHOTO``, see
backend/batch/worker.py) and the photo must come back from another worker; ``--resume`` must
skip complete bundles (their files untouched) and redo the rest; Ctrl-C must leave a valid
manifest that ``--resume`` completes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.batch.inputs import collect_inputs
from backend.batch.manifest import bundle_complete

REPO = Path(__file__).resolve().parent.parent
FAST = ["--quality", "fast", "--no-detail", "--no-texture", "--device", "cpu"]
# (name in the test folder, photo of ../shared/eval/photos or None for a broken file)
LAYOUT = {
    "face2.jpg": "expression_0.jpg",
    "face2.png": None,  # garbage bytes: bad input; its name clashes with face2.jpg's
    "face10.jpg": "alfw1.png",  # PNG bytes behind a .jpg name: read by content
    "sub/face1.png": "id04657-PPHljWCZ53c-000565_inputs_inputs.jpg",
    "sub/blank.png": None,  # a grey picture: no face, bad input
}
OUTPUTS = {"face2.jpg": "face2", "face2.png": "face2-2", "face10.jpg": "face10",
           "sub/face1.png": "sub/face1", "sub/blank.png": "sub/blank"}
GOOD = ["face2.jpg", "face10.jpg", "sub/face1.png"]


def headrecon(*args: str, env: dict[str, str] | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def manifest(out: Path) -> dict[str, dict]:
    """Manifest lines by output name; every line must be JSON and each output listed once."""
    lines = (out / "manifest.jsonl").read_text().splitlines()
    recs = [json.loads(ln) for ln in lines]
    by_out = {r["output"]: r for r in recs}
    assert len(by_out) == len(recs), lines
    return by_out


def hidden_leftovers(out: Path) -> list[Path]:
    """Staging folders (``.name.XXXXXXXX``) a killed worker could have left."""
    return [p for p in out.rglob(".*") if p.is_dir()]


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory, eval_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("batch_in") / "in"
    for rel, src in LAYOUT.items():
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src is not None:
            shutil.copy(eval_dir / "photos" / src, dst)
        elif rel.endswith("blank.png"):
            Image.fromarray(np.full((240, 240, 3), 128, np.uint8)).save(dst)
        else:
            dst.write_bytes(b"this is not an image\n" * 20)
    (root / "notes.txt").write_text("not a photo: folders only take image files\n")
    return root


def check_ok_line(rec: dict, out: Path, photo: Path) -> None:
    assert rec["status"] == "ok" and rec["error"] is None, rec
    assert rec["input"] == str(photo.resolve())
    for stage in ("load", "landmarks", "fit_landmarks", "fit_photometric", "bundle", "total"):
        assert rec["seconds"][stage] >= 0.0, rec
    assert rec["seconds"]["total"] >= rec["seconds"]["fit_landmarks"] > 0.1
    assert 0.0 < rec["landmark_rms_px"] < 15.0, rec
    assert 0.3 < rec["face_seen_fraction"] <= 1.0, rec
    bundle = out / rec["output"]
    assert bundle_complete(bundle)
    res = json.loads((bundle / "result.json").read_text())
    assert res["input"]["photo"] == photo.name
    assert res["quality"]["landmark_rms_px"] == rec["landmark_rms_px"]
    for role in ("mesh", "neutral", "overlay", "rig"):
        assert (bundle / res["files"][role]).stat().st_size > 1000, role


def check_bad_line(rec: dict) -> None:
    assert rec["status"] == "bad input", rec
    assert isinstance(rec["error"], str) and rec["error"].endswith(".") and len(rec["error"]) > 15
    assert "\n" not in rec["error"]
    assert rec["landmark_rms_px"] is None and rec["face_seen_fraction"] is None


def test_inputs_names_and_order(photo_dir: Path, tmp_path: Path) -> None:
    """Folders recurse in natural order, clashing and nested names stay apart, lists work."""
    items = collect_inputs([photo_dir])
    assert [it.name for it in items] == ["face2", "face2-2", "face10", "sub/blank", "sub/face1"]
    assert [it.photo for it in items] == [(photo_dir / r).resolve() for r in
                                          ("face2.jpg", "face2.png", "face10.jpg",
                                           "sub/blank.png", "sub/face1.png")]
    # a .txt list (relative to its folder, comments) and a .csv list with a header; the same
    # photo twice is done once; a photo "a" beside a folder "a/" must not nest bundles
    (tmp_path / "a").mkdir()
    for name in ("a.jpg", "a/b.jpg"):
        shutil.copy(photo_dir / "face2.jpg", tmp_path / name)
    (tmp_path / "list.txt").write_text(f"# photos\n{photo_dir / 'face10.jpg'}\na.jpg\n\na/b.jpg\n")
    (tmp_path / "list.csv").write_text(f"id,photo\n1,{photo_dir / 'face10.jpg'}\n2,missing.jpg\n")
    items = collect_inputs([tmp_path / "list.txt", tmp_path / "list.csv"])
    assert [it.name for it in items] == ["face10", "a", "b", "missing"]
    assert items[1].photo == (tmp_path / "a.jpg").resolve()
    assert items[3].photo == (tmp_path / "missing.jpg").resolve()  # becomes a bad input line
    items = collect_inputs([tmp_path])  # folder mode: a/b.jpg -> "a/b", so a.jpg -> "a-2"
    assert [it.name for it in items] == ["a/b", "a-2"]


def test_local_batch_two_workers_crash_and_resume(photo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    marker = tmp_path / "crashed_pid"
    t0 = time.perf_counter()
    proc = headrecon("batch", str(photo_dir), "-o", str(out), "--workers", "2", *FAST,
                     env={"HEADRECON_TEST_CRASH_PHOTO": f"face10.jpg:{marker}"})
    first_s = time.perf_counter() - t0
    assert proc.returncode == 1, proc.stderr[-3000:]  # ran to the end, two bad inputs
    assert "photos/min" in proc.stderr and "left" in proc.stderr
    assert "3 ok, 2 bad input, 0 failed" in proc.stderr
    recs = manifest(out)
    assert set(recs) == set(OUTPUTS.values())
    for rel in GOOD:
        check_ok_line(recs[OUTPUTS[rel]], out, photo_dir / rel)
    for rel in ("face2.png", "sub/blank.png"):
        check_bad_line(recs[OUTPUTS[rel]])
    assert "face" in recs["sub/blank"]["error"]
    # the worker that reached face10's landmark fit died; another worker redid the photo
    crashed_pid = marker.read_text().strip()
    rec = recs["face10"]
    assert rec["attempts"] == 2 and not rec["worker"].endswith(f"pid {crashed_pid}"), rec
    assert len({r["worker"] for r in recs.values()}) >= 2
    assert hidden_leftovers(out) == []

    # --resume: complete bundles untouched, the bad inputs and an incomplete bundle redone
    stamps = {name: (out / name / "result.json").stat().st_mtime_ns
              for name in ("face2", "sub/face1")}
    (out / "face10" / "rig.npz").unlink()  # no longer complete
    proc = headrecon("batch", str(photo_dir), "-o", str(out), "--workers", "2", "--resume", *FAST)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "2 photo(s) already complete, skipped" in proc.stderr
    assert "1 ok, 2 bad input, 0 failed, 2 skipped" in proc.stderr
    again = manifest(out)
    assert set(again) == set(OUTPUTS.values())
    for name, ns in stamps.items():
        assert (out / name / "result.json").stat().st_mtime_ns == ns, name  # not done twice
        assert again[name] == recs[name]
    check_ok_line(again["face10"], out, photo_dir / "face10.jpg")
    assert again["face10"]["attempts"] == 1 and again["face10"]["finished"] >= rec["finished"]
    for name in ("face2-2", "sub/blank"):
        check_bad_line(again[name])
    print(f"first run {first_s:.1f} s")


def test_ctrl_c_leaves_valid_manifest_and_resume_finishes(photo_dir: Path, tmp_path: Path) -> None:
    """SIGINT after the first finished photo: exit 130, complete lines only, no staging
    folders; --resume does only the photos that were not finished."""
    listing = tmp_path / "photos.txt"
    listing.write_text(f"{photo_dir / 'face2.jpg'}\n{photo_dir / 'sub' / 'face1.png'}\n"
                       f"{photo_dir / 'face10.jpg'}\n")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "backend", "batch", str(listing), "-o", str(out),
                             "--workers", "1", *FAST], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mf = out / "manifest.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if mf.is_file() and mf.read_text().strip():
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    time.sleep(0.1)  # the next photo is under way (fast-quality photos take about a second)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    assert "--resume" in err
    recs = manifest(out)
    assert 1 <= len(recs) < 3
    for name, rec in recs.items():
        assert rec["status"] == "ok"
        assert bundle_complete(out / name)
    assert hidden_leftovers(out) == []
    unfinished = {"face2", "face1", "face10"} - set(recs)
    assert [n for n in unfinished if (out / n).exists()] == [], list(out.rglob("*"))
    stamps = {n: (out / n / "result.json").stat().st_mtime_ns for n in recs}

    proc2 = headrecon("batch", str(listing), "-o", str(out), "--workers", "1", "--resume", *FAST)
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    final = manifest(out)
    assert set(final) == {"face2", "face1", "face10"}
    assert all(r["status"] == "ok" for r in final.values())
    for n, ns in stamps.items():
        assert (out / n / "result.json").stat().st_mtime_ns == ns and final[n] == recs[n]


def test_ray_local_two_actors_crash_retried(photo_dir: Path, tmp_path: Path) -> None:
    """--ray: a local Ray instance (ray.init(num_cpus=2) on this machine) with two actors; a
    .csv list as input; the actor killed mid-photo is replaced and the photo redone."""
    pytest.importorskip("ray", reason="setup.sh installs the 'ray' extra")
    listing = tmp_path / "photos.csv"
    listing.write_text("photo,comment\n"
                       f"{photo_dir / 'face2.jpg'},fine\n"
                       f"{photo_dir / 'face2.png'},broken\n"
                       f"{photo_dir / 'sub' / 'face1.png'},crashes once\n")
    out = tmp_path / "out"
    marker = tmp_path / "crashed_pid"
    proc = headrecon("batch", str(listing), "-o", str(out), "--ray", "--workers", "2", *FAST,
                     env={"HEADRECON_TEST_CRASH_PHOTO": f"face1.png:{marker}"})
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "2 ok, 1 bad input, 0 failed" in proc.stderr
    recs = manifest(out)
    assert set(recs) == {"face2", "face2-2", "face1"}
    check_ok_line(recs["face2"], out, photo_dir / "face2.jpg")
    check_ok_line(recs["face1"], out, photo_dir / "sub" / "face1.png")
    check_bad_line(recs["face2-2"])
    crashed_pid = marker.read_text().strip()
    assert recs["face1"]["attempts"] == 2
    assert recs["face1"]["worker"].startswith("ray-")
    assert not recs["face1"]["worker"].endswith(f"pid {crashed_pid}")
    assert hidden_leftovers(out) == []


def test_ray_missing_says_how_to_install(photo_dir: Path, tmp_path: Path) -> None:
    """Without Ray, --ray is a usage error (64) with the install command; nothing is run."""
    fake = tmp_path / "no_ray"
    (fake / "ray").mkdir(parents=True)
    (fake / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    out = tmp_path / "out"
    proc = headrecon("batch", str(photo_dir), "-o", str(out), "--ray",
                     env={"PYTHONPATH": f"{fake}{os.pathsep}{REPO}"}, timeout=60)
    assert proc.returncode == 64, proc.stderr
    assert "pip install 'headrecon-backend[ray]'" in proc.stderr
    assert not out.exists()


def test_usage_errors(tmp_path: Path) -> None:
    """No photos, a missing folder or list: exit 64 with one sentence, before any worker
    starts. (A file named directly is taken as a photo: a bad input line if it is none.)"""
    (tmp_path / "empty").mkdir()
    proc = headrecon("batch", str(tmp_path / "empty"), "-o", str(tmp_path / "o"), timeout=60)
    assert proc.returncode == 64 and "holds no photos" in proc.stderr, proc.stderr
    proc = headrecon("batch", str(tmp_path / "no_such_folder"), "-o", str(tmp_path / "o"),
                     timeout=60)
    assert proc.returncode == 64 and "not a photo, a folder or a .txt/.csv list" in proc.stderr
    proc = headrecon("batch", str(tmp_path / "gone.txt"), "-o", str(tmp_path / "o"), timeout=60)
    assert proc.returncode == 64 and "gone.txt does not exist" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_ray_pin_matches_requirements() -> None:
    """The 'ray' extra of pyproject.toml and requirements.txt (what setup.sh installs) agree."""
    import tomllib

    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["ray"]
    reqs = [ln.strip() for ln in (REPO / "requirements.txt").read_text().splitlines()
            if ln.strip().startswith("ray")]
    assert extra == reqs == ["ray==2.60.0"]


def test_missing_model_stops_batch_with_exit_3(photo_dir: Path, tmp_path: Path) -> None:
    """Every photo would fail without the model: the batch stops at the first worker's start
    with the model error's sentence and exit code 3, and writes no bundle."""
    out = tmp_path / "out"
    proc = headrecon("batch", str(photo_dir), "-o", str(out), "--workers", "1",
                     "--flame", str(tmp_path / "missing_flame.pkl"), *FAST[:-2], timeout=120)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "missing_flame.pkl" in proc.stderr
    assert [p for p in out.iterdir() if p.is_dir()] == []
