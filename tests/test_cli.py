"""The ``headrecon reconstruct`` command as a user runs it: a real process on real photos.

One full reconstruction of a real photo (default quality) checks the whole bundle; the
bad-input cases check exit codes 2 and 3 and that the message is one clear sentence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """The installed ``headrecon`` command, run from a folder outside the repository (no
    PYTHONPATH): what the install provides is what the test sees."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with tempfile.TemporaryDirectory(prefix="headrecon-cwd-") as cwd:
        return subprocess.run([str(Path(sys.executable).parent / "headrecon"), *args], cwd=cwd,
                              env=env, capture_output=True, text=True, timeout=timeout)


def error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("headrecon: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, eval_dir: Path) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("cli") / "bundle"
    photo = eval_dir / "photos" / "IMG_0392_inputs.jpg"
    proc = run_cli("reconstruct", str(photo), "-o", str(out), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def read_obj_counts(path: Path) -> tuple[int, int, int]:
    v = vt = f = 0
    for line in path.read_text().splitlines():
        tag = line.split(" ", 1)[0]
        v += tag == "v"
        vt += tag == "vt"
        f += tag == "f"
    return v, vt, f


def test_reconstruct_writes_complete_bundle(bundle, eval_dir: Path) -> None:
    out, proc = bundle
    res = json.loads((out / "result.json").read_text())
    assert res["format_version"] == 1
    # Issue 12 item 13: torch's "NumPy array is not writable" warning (detail stage) is gone.
    assert "UserWarning" not in proc.stderr and "not writable" not in proc.stderr, proc.stderr
    assert res["model"]["n_vertices"] == 5023 and res["model"]["n_faces"] == 9976
    assert len(res["identity"]) == res["model"]["n_shape"]
    assert len(res["expression"]) == res["model"]["n_expr"]
    assert set(res["pose"]) == {"root", "neck", "jaw", "eye_L", "eye_R"}
    assert all(len(v) == 3 for v in res["pose"].values())
    assert res["device"] == "cpu"
    assert len(res["lighting"]["coefficients"]) == 9
    lm = np.asarray(res["landmarks_68"])
    assert lm.shape == (68, 2)
    w, h = Image.open(eval_dir / "photos" / "IMG_0392_inputs.jpg").size
    assert res["input"]["width"] == w and res["input"]["height"] == h
    assert (lm[:, 0] > 0).all() and (lm[:, 0] < w).all() and (lm[:, 1] > 0).all() and (lm[:, 1] < h).all()
    # Eyes above the mouth, subject's right eye (iBUG 36) left of the left eye (iBUG 45).
    assert lm[36:48, 1].mean() < lm[48:68, 1].mean()
    assert lm[36, 0] < lm[45, 0]
    for stage in ("load", "landmarks", "fit_landmarks", "bundle"):
        assert stage in res["timings"]
    for role in ("mesh", "neutral", "texture", "overlay", "rig"):
        assert (out / res["files"][role]).is_file(), role
    for name in ("mesh.obj", "neutral.obj"):
        v, vt, f = read_obj_counts(out / name)
        assert (v, f) == (5023, 9976) and vt > 5023
    tex = Image.open(out / "texture.png")
    assert tex.size[0] >= 512 and tex.size[0] == tex.size[1]
    assert Image.open(out / "overlay.png").size == (w, h) or Image.open(out / "overlay.png").size[0] > 0
    rig = np.load(out / "rig.npz")
    assert rig["v_neutral"].shape == (5023, 3)
    assert np.allclose(rig["weights"].sum(1), 1.0, atol=1e-4)
    # progress went to stderr, stage by stage
    assert "fit_landmarks" in proc.stderr and "[100.0%]" in proc.stderr


def test_not_an_image_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a photo")
    proc = run_cli("reconstruct", str(bad), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "image" in error_line(proc).lower()
    assert not (tmp_path / "out").exists()


def test_missing_photo_exits_2(tmp_path: Path) -> None:
    proc = run_cli("reconstruct", str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "nope.jpg" in error_line(proc)


def test_no_face_exits_2_and_keeps_previous_output(tmp_path: Path) -> None:
    blank = tmp_path / "wall.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((480, 640, 3)) * 40 + 100).astype(np.uint8)).save(blank)
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.json").write_text("{}")  # an earlier bundle: replaceable, but only on success
    (out / "keep.txt").write_text("user's earlier result")
    proc = run_cli("reconstruct", str(blank), "-o", str(out))
    assert proc.returncode == 2
    assert "no face" in error_line(proc).lower()
    assert (out / "keep.txt").read_text() == "user's earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "wall.png"]  # no temp left over


def test_missing_model_file_exits_3(tmp_path: Path, eval_dir: Path) -> None:
    photo = eval_dir / "photos" / "IMG_0392_inputs.jpg"
    proc = run_cli("reconstruct", str(photo), "-o", str(tmp_path / "out"),
                   "--flame", str(tmp_path / "generic_model.pkl"))
    assert proc.returncode == 3
    assert "generic_model.pkl" in error_line(proc)


def test_invalid_model_file_exits_3(tmp_path: Path, eval_dir: Path) -> None:
    bogus = tmp_path / "flame2023_Open.pkl"
    bogus.write_bytes(b"\x80\x04not really a pickle")
    photo = eval_dir / "photos" / "IMG_0392_inputs.jpg"
    proc = run_cli("reconstruct", str(photo), "-o", str(tmp_path / "out"), "--flame", str(bogus))
    assert proc.returncode == 3
    error_line(proc)


def test_missing_assets_folder_exits_3(tmp_path: Path, eval_dir: Path) -> None:
    photo = eval_dir / "photos" / "IMG_0392_inputs.jpg"
    proc = run_cli("reconstruct", str(photo), "-o", str(tmp_path / "out"),
                   "--assets", str(tmp_path / "no_assets"))
    assert proc.returncode == 3
    assert "assets" in error_line(proc).lower()


def test_detail_files_and_sizes(bundle) -> None:
    """Default run: displacement (npy metres + 16-bit png with its scale), normal map, albedo."""
    out, _ = bundle
    res = json.loads((out / "result.json").read_text())
    disp = np.load(out / res["files"]["displacement"])
    assert disp.dtype == np.float32 and disp.shape[0] == disp.shape[1] >= 256
    png = Image.open(out / res["files"]["displacement_png"])
    assert png.mode.startswith("I") and png.size == disp.shape[::-1]
    assert res["detail"]["displacement"]["png_scale_m"] > 0
    assert Image.open(out / res["files"]["normal"]).mode == "RGB"
    albedo = Image.open(out / res["files"]["albedo"])
    assert albedo.size[0] >= 1024 and albedo.size[0] == albedo.size[1]


def test_no_detail_no_texture_switch_stages_off(tmp_path: Path, eval_dir: Path) -> None:
    photo = eval_dir / "photos" / "IMG_0392_inputs.jpg"
    out = tmp_path / "plain"
    proc = run_cli("reconstruct", str(photo), "-o", str(out), "--quality", "fast",
                   "--no-detail", "--no-texture")
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads((out / "result.json").read_text())
    assert "detail" not in res["timings"] and "texture" not in res["timings"]
    names = {p.name for p in out.iterdir()}
    assert {"result.json", "mesh.obj", "neutral.obj", "rig.npz", "overlay.png"} <= names
    assert not names & {"albedo.png", "texture.png", "displacement.npy", "normal.png"}

    out2 = tmp_path / "no_detail"
    proc = run_cli("reconstruct", str(photo), "-o", str(out2), "--quality", "fast", "--no-detail")
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads((out2 / "result.json").read_text())
    assert "detail" not in res["timings"]
    assert Image.open(out2 / res["files"]["albedo"]).size[0] >= 1024
    assert not (out2 / "displacement.npy").exists()
