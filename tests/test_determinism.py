"""The same photo with the same options gives the same head, bit for bit, on CPU.

Run-to-run differences came from torch's threaded CPU kernel for the gradient of indexed
reads (parallel atomic float adds, see backend/determinism.py): they only show with more
than one torch thread, so both tests make sure at least two run. The CLI test runs its two
processes at the same time, so that their timing differs as well.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.fit.photometric import QUALITY_SETTINGS, fit_photometric

REPO = Path(__file__).resolve().parent.parent
PHOTO = Path("photos") / "IMG_0392_inputs.jpg"


def _without_timings(result: dict) -> dict:
    """result.json without its wall-clock numbers ("timings", detail "seconds")."""
    result = dict(result)
    result.pop("timings")
    detail = {k: dict(v) for k, v in result.get("detail", {}).items()}
    for section in detail.values():
        section.pop("seconds", None)
    result["detail"] = detail
    return result


def test_cli_twice_gives_identical_bundles(tmp_path: Path, eval_dir: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(max(2, torch.get_num_threads())))
    outs = [tmp_path / "a", tmp_path / "b"]
    procs = [subprocess.Popen([sys.executable, "-m", "backend", "reconstruct", str(eval_dir / PHOTO),
                               "-o", str(out), "--device", "cpu"], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for out in outs]
    for proc in procs:
        _, err = proc.communicate(timeout=1200)
        assert proc.returncode == 0, err[-3000:]
    a, b = (json.loads((out / "result.json").read_text()) for out in outs)
    assert _without_timings(a) == _without_timings(b)
    files = sorted(p.name for p in outs[0].iterdir())
    assert files == sorted(p.name for p in outs[1].iterdir())
    assert {"mesh.obj", "rig.npz", "texture.png", "albedo.png", "displacement.png", "normal.png",
            "overlay.png"} <= set(files)
    for name in files:
        if name != "result.json":
            assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name


@pytest.fixture(scope="module")
def landmark_fit(eval_dir: Path):
    from backend.fit.landmark_fit import fit_landmarks
    from backend.files.photo import load_image
    from backend.options import ReconstructOptions
    from backend.pipeline import Engine

    engine = Engine(ReconstructOptions(device="cpu"))
    img = load_image(eval_dir / PHOTO, max_side=1024)
    face, _ = engine.detector.detect_face(img.rgb)
    h, w = img.rgb.shape[:2]
    fit = fit_landmarks(engine.flame, engine.embedding, face.points, image_size=(w, h), quality="default")
    return engine, fit, torch.tensor(img.rgb, dtype=torch.float32) / 255.0


def test_photometric_stage_twice_in_one_process(landmark_fit, monkeypatch) -> None:
    """Identical results, the second run with a clock that jumps an hour per reading (no
    step count may depend on wall-clock time or load), and the process-wide deterministic
    setting is back off afterwards."""
    engine, fit, image = landmark_fit
    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))
    try:
        runs = []
        for fake_clock in (False, True):
            if fake_clock:
                clock = iter(range(0, 10 ** 9, 3600))
                monkeypatch.setattr(time, "perf_counter", lambda: float(next(clock)))
                monkeypatch.setattr(time, "monotonic", lambda: float(next(clock)))
                monkeypatch.setattr(time, "time", lambda: float(next(clock)))
            calls: list[tuple[str, float, str]] = []
            res = fit_photometric(engine.flame, fit.params, image, engine.uv, fit.landmark_loss,
                                  "default", engine.assets,
                                  progress=lambda s, f, m="": calls.append((s, f, m)))
            monkeypatch.undo()
            runs.append((res, calls))
    finally:
        torch.set_num_threads(threads)
    assert not torch.are_deterministic_algorithms_enabled()
    (a, calls_a), (b, calls_b) = runs
    assert calls_a == calls_b
    n_iter = QUALITY_SETTINGS["default"].iters_geometry
    assert f"geometry {n_iter - 10}/{n_iter}" in [m for _, _, m in calls_a]
    for name in ("shape", "expression", "pose", "translation", "eyelids", "sh"):
        assert torch.equal(getattr(a.params, name), getattr(b.params, name)), name
    assert (a.params.shape - fit.params.shape).abs().max() > 0  # the geometry did move
    for name in ("albedo_uv", "rendered", "mask"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.photo_error == b.photo_error and a.crop_camera == b.crop_camera
    assert b.timings["geometry"] >= 3600  # the fake clock was in use
