"""backend.files.bundle: OBJ and rig.npz writers, the numpy FLAME forward, the dev-bundle CLI.

The numpy forward is checked against the torch FLAME layer (backend.model.flame), an independent
implementation of the same equations; tolerance 1e-6 m (float32 torch).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from backend.errors import BadInputError
from backend.files.obj import read_obj
from backend.files.bundle import (flame_forward_np, random_dev_params, rig_arrays, write_obj,
                            write_result_bundle, write_rig_npz)
from backend.model.flame import FLAME, load_eyelid_deltas, load_flame
from backend.model.params import Camera, FitParams
from backend.model.uv import load_uv_layout
from headrecon_addon.bundle import load_bundle


@pytest.fixture(scope="module")
def model(dev_model_path):
    return load_flame(dev_model_path)


@pytest.fixture(scope="module")
def eyelids(assets_dir):
    return load_eyelid_deltas(assets_dir)


@pytest.fixture(scope="module")
def uv(assets_dir, model):
    return load_uv_layout(assets_dir, model.faces)


def test_obj_round_trip(tmp_path, model, uv):
    verts = model.v_template * 1.2345
    write_obj(tmp_path / "a.obj", verts, model.faces, uv.uv, uv.uv_faces)
    back = read_obj(tmp_path / "a.obj")
    np.testing.assert_allclose(back.verts, verts, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(back.faces, model.faces)
    np.testing.assert_allclose(back.uv, uv.uv, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(back.uv_faces, uv.uv_faces)
    write_obj(tmp_path / "b.obj", verts, model.faces)
    plain = read_obj(tmp_path / "b.obj")
    assert plain.uv is None and plain.uv_faces is None
    np.testing.assert_array_equal(plain.faces, model.faces)
    with pytest.raises(ValueError, match="both uv and uv_faces"):
        write_obj(tmp_path / "c.obj", verts, model.faces, uv.uv)


def test_obj_quads_are_split_only_when_asked(tmp_path):
    path = tmp_path / "quad.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n"
                    "f 1/1 2/2 3/3 4/4\nf 1/1 3/3 4/4\n")
    with pytest.raises(BadInputError, match="not a triangle"):
        read_obj(path)
    mesh = read_obj(path, quads=True)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [0, 2, 3]])
    np.testing.assert_array_equal(mesh.uv_faces, mesh.faces)
    path.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0 0 1\nf 1 2 3 4 5\n")
    with pytest.raises(BadInputError, match="triangle or quad"):
        read_obj(path, quads=True)


def test_numpy_forward_matches_torch_flame(model, eyelids):
    flame = FLAME(model, eyelids)
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)[None]  # noqa: E731
    for seed in range(3):
        p = random_dev_params(60, 50, seed)
        p["pose"] *= 3.0  # larger rotations than the dev bundles use
        ref = flame(t(p["shape"]), t(p["expression"]), t(p["pose"]), eyelids=t(p["eyelids"]))
        out = flame_forward_np(model, p["shape"], p["expression"], p["pose"], p["eyelids"], eyelids)
        np.testing.assert_allclose(out.vertices, ref.vertices[0].numpy(), atol=1e-6)
        np.testing.assert_allclose(out.joints, ref.joints[0].numpy(), atol=1e-6)
        np.testing.assert_allclose(out.rest_joints, ref.rest_joints[0].numpy(), atol=1e-6)


def test_numpy_forward_at_rest_is_the_blendshapes(model):
    p = random_dev_params(60, 50, 9)
    out = flame_forward_np(model, p["shape"], p["expression"], np.zeros((5, 3)))
    np.testing.assert_allclose(out.vertices, out.v_shaped, atol=1e-12)
    np.testing.assert_allclose(out.joints, out.rest_joints, atol=1e-12)


def test_rig_npz_written_without_pickles(tmp_path, model, uv, eyelids):
    p = random_dev_params(60, 50, 4)
    arrays = rig_arrays(model, p["shape"], p["expression"][:20], p["pose"], p["translation"],
                        uv.uv, uv.uv_faces, eyelids, p["eyelids"])
    path = write_rig_npz(tmp_path / "rig.npz", **arrays)
    with np.load(path, allow_pickle=False) as data:
        assert data["expr_deltas"].shape == (20, 5023, 3) and data["expression"].shape == (20,)
        assert data["faces"].dtype == np.int32 and data["v_neutral"].dtype == np.float32
        assert list(data["joint_names"]) == list(model.joint_names)
        np.testing.assert_allclose(data["pose_deltas"][7], model.posedirs[:, :, 7])
        np.testing.assert_allclose(data["joints"], model.J_regressor @ data["v_neutral"], atol=1e-6)
    bad = dict(arrays, weights=arrays["weights"][:, :4])
    with pytest.raises(ValueError, match="weights has shape"):
        write_rig_npz(tmp_path / "bad.npz", **bad)
    with pytest.raises(ValueError, match="go together"):
        write_rig_npz(tmp_path / "bad.npz", **arrays, arkit_names=np.array(["x"]))


def test_write_result_bundle_for_the_pipeline(tmp_path, model, uv, eyelids):
    p = random_dev_params(60, 50, 6)
    params = FitParams.zeros(60, 50, 5, Camera(500.0, 128.0, 128.0, 256, 256))
    params.shape[0] = torch.tensor(p["shape"])
    params.expression[0] = torch.tensor(p["expression"])
    params.pose[0] = torch.tensor(p["pose"])
    params.eyelids[0] = torch.tensor(p["eyelids"])
    engine = SimpleNamespace(model=model, eyelid_deltas=eyelids, uv=uv)
    texture = np.random.default_rng(0).random((64, 64, 4)).astype(np.float32)
    overlay = np.zeros((32, 48, 3), np.uint8)
    files = write_result_bundle(tmp_path, engine, params, texture=torch.from_numpy(texture),
                                overlay=overlay)
    assert files == {"mesh": "mesh.obj", "neutral": "neutral.obj", "rig": "rig.npz",
                     "texture": "texture.png", "overlay": "overlay.png"}
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "texture.png")),
                                  np.rint(texture * 255).astype(np.uint8))
    assert Image.open(tmp_path / "overlay.png").size == (48, 32)
    ref = flame_forward_np(model, p["shape"], p["expression"], p["pose"], p["eyelids"], eyelids)
    np.testing.assert_allclose(read_obj(tmp_path / "mesh.obj").verts, ref.vertices, atol=1e-6)


def _dev(out: Path, repo: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend.files.bundle", "--dev", str(out), *extra],
                          cwd=repo, capture_output=True, text=True)


def test_dev_bundle_cli(tmp_path, repo_root, model, eyelids):
    proc = _dev(tmp_path / "a", repo_root, "--seed", "5")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "a"
    result = json.loads((out / "result.json").read_text())
    assert result["format_version"] == 1 and result["input"]["photo"] == "dev_seed5.png"
    assert result["files"] == {"mesh": "mesh.obj", "neutral": "neutral.obj", "rig": "rig.npz",
                               "texture": "texture.png", "mouth": "mouth.npz",
                               "teeth_texture": "teeth.png", "tongue_texture": "tongue.png"}
    bundle = load_bundle(out)
    pose = np.array([result["pose"][n] for n in result["model"]["joint_names"]])
    ref = flame_forward_np(model, result["identity"], result["expression"], pose,
                           result["eyelids"], eyelids)
    np.testing.assert_allclose(read_obj(out / "mesh.obj").verts, ref.vertices, atol=1e-6)
    np.testing.assert_allclose(read_obj(out / "neutral.obj").verts, bundle.v_neutral, atol=1e-6)
    np.testing.assert_allclose(bundle.pose, pose, atol=1e-6)
    texture = Image.open(out / "texture.png")
    assert texture.mode == "RGBA" and texture.size == (512, 512)
    assert np.asarray(texture)[..., 3].min() == 255
    # same seed -> same bundle
    assert _dev(tmp_path / "b", repo_root, "--seed", "5").returncode == 0
    np.testing.assert_array_equal(load_bundle(tmp_path / "b").v_neutral, bundle.v_neutral)


def test_dev_bundle_cli_missing_assets(tmp_path, repo_root):
    proc = _dev(tmp_path / "x", repo_root, "--assets", str(tmp_path / "no_assets"))
    assert proc.returncode == 3
    assert proc.stderr.strip().startswith("headrecon: error: Assets folder not found")
    assert len(proc.stderr.strip().splitlines()) == 1
