"""Bundle reading and validation (headrecon_addon.bundle) on a real dev bundle and broken copies.

The dev bundle is written by the real ``python -m backend.files.bundle --dev`` process from the dev
FLAME model; each broken copy changes one thing and must give one clear sentence.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.bundle_support import edit_npz
from headrecon_addon import naming
from headrecon_addon.bundle import BundleError, load_bundle


@pytest.fixture(scope="module")
def dev_bundle(tmp_path_factory, repo_root) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "dev"
    subprocess.run([sys.executable, "-m", "backend.files.bundle", "--dev", str(out), "--seed", "3"],
                   cwd=repo_root, check=True, capture_output=True)
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_rig(folder: Path, **changes) -> None:
    edit_npz(folder / "rig.npz", **changes)


def _edit_result(folder: Path, fn) -> None:
    path = folder / "result.json"
    result = json.loads(path.read_text())
    fn(result)
    path.write_text(json.dumps(result))


def test_dev_bundle_loads(dev_bundle):
    b = load_bundle(dev_bundle / "result.json")
    assert b.photo_stem == "dev_seed3"
    assert b.v_neutral.shape == (5023, 3) and b.faces.shape == (9976, 3)
    assert b.uv_faces.shape == (9976, 3) and b.uv.shape[1] == 2
    assert b.n_expr == 50 and b.expression.shape == (50,)
    assert b.pose_deltas.shape == (36, 5023, 3) and b.joint_names == naming.FLAME_JOINTS
    assert b.v_neutral.dtype == np.float32 and b.faces.dtype == np.int32
    assert set(b.images) == {"texture"} and b.images["texture"].is_file()
    assert b.arkit_deltas.shape == (0, 5023, 3) and b.arkit_names == ()
    np.testing.assert_allclose(b.weights.sum(1), 1.0, atol=1e-5)
    assert load_bundle(dev_bundle).folder == b.folder  # folder or result.json


def test_optional_arrays(dev_bundle, tmp_path):
    folder = _copy(dev_bundle, tmp_path / "b")
    deltas = np.zeros((2, 5023, 3), np.float32)
    deltas[1, 0] = 0.01
    _edit_rig(folder, eyelids=None, arkit_deltas=deltas, arkit_names=np.array(["jawOpen", "mouthClose"]))
    b = load_bundle(folder)
    np.testing.assert_array_equal(b.eyelids, [0.0, 0.0])
    assert b.arkit_names == ("jawOpen", "mouthClose") and b.arkit_deltas[1, 0, 0] == pytest.approx(0.01)


def _broken(name: str, message: str, rig_changes: dict | None = None, result_fn=None,
            remove: str | None = None, garbage: str | None = None):
    """One broken-bundle case: what to change and the text the error must contain."""
    return pytest.param(rig_changes or {}, result_fn, remove, garbage, message, id=name)


V = 5023
CASES = [
    _broken("no-result-json", "has no result.json", remove="result.json"),
    _broken("bad-json", "cannot be read as JSON", garbage="result.json"),
    _broken("newer-format", "format_version 2", result_fn=lambda r: r.update(format_version=2)),
    _broken("no-rig-listed", "lists no rig file", result_fn=lambda r: r["files"].pop("rig")),
    _broken("rig-missing", "does not exist", remove="rig.npz"),
    _broken("displacement-params", "no numeric detail.displacement.blender_displace",
            result_fn=lambda r: r["files"].update(displacement_png="texture.png")),
    _broken("rig-corrupt", "cannot be read as an .npz", garbage="rig.npz"),
    _broken("missing-key", "lacks weights", {"weights": None}),
    _broken("weights-shape", "weights has shape (5023, 4), expected (5023, 5)",
            {"weights": np.full((V, 4), 0.25, np.float32)}),
    _broken("weights-sum", "summing to 1", {"weights": np.full((V, 5), 0.3, np.float32)}),
    _broken("nan", "NaN", {"v_neutral": np.full((V, 3), np.nan, np.float32)}),
    _broken("faces-range", "outside the 5023 vertices", {"faces": np.full((9976, 3), V, np.int32)}),
    _broken("faces-float", "must hold integers", {"faces": np.zeros((9976, 3), np.float32)}),
    _broken("joints", "needs FLAME's", {"joint_names": np.array(["a", "b", "c", "d", "e"])}),
    _broken("parents", "FLAME's tree", {"parents": np.array([-1, 0, 0, 1, 1], np.int32)}),
    _broken("expression-count", "expression has shape (49,)", {"expression": np.zeros(49, np.float32)}),
    _broken("arkit-half", "both arkit_deltas and arkit_names", {"arkit_names": np.array(["a"])}),
    _broken("arkit-clash", "differ from the add-on", {"arkit_deltas": np.zeros((1, V, 3), np.float32),
                                                      "arkit_names": np.array(["Captured"])}),
]


@pytest.mark.parametrize("rig_changes,result_fn,remove,garbage,message", CASES)
def test_broken_bundle_gives_one_sentence(dev_bundle, tmp_path, rig_changes, result_fn, remove,
                                          garbage, message):
    folder = _copy(dev_bundle, tmp_path / "b")
    if rig_changes:
        _edit_rig(folder, **rig_changes)
    if result_fn:
        _edit_result(folder, result_fn)
    if remove:
        (folder / remove).unlink()
    if garbage:
        (folder / garbage).write_bytes(b"\x00not what it should be{")
    with pytest.raises(BundleError) as info:
        load_bundle(folder)
    text = str(info.value)
    assert message in text
    assert text.endswith(".") and "\n" not in text


def test_missing_or_damaged_image_is_a_warning(dev_bundle, tmp_path):
    """Images are optional for the import (issue 12 item 15): a missing or truncated one is
    left out with one sentence, the rig still loads."""
    folder = _copy(dev_bundle, tmp_path / "b")
    (folder / "texture.png").unlink()
    bundle = load_bundle(folder)
    assert "texture" not in bundle.images
    assert bundle.warnings == ["texture.png: it is missing; the head is imported without a colour map."]
    folder = _copy(dev_bundle, tmp_path / "c")
    data = (folder / "texture.png").read_bytes()
    (folder / "texture.png").write_bytes(data[:-20])  # IEND cut off
    assert "truncated" in load_bundle(folder).warnings[0]


def test_missing_folder(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")


def test_detail_maps(dev_bundle, tmp_path):
    folder = _copy(dev_bundle, tmp_path / "b")
    shutil.copy(folder / "texture.png", folder / "displacement.png")
    shutil.copy(folder / "texture.png", folder / "normal.png")
    _edit_result(folder, lambda r: (
        r["files"].update(displacement="displacement.npy", displacement_png="displacement.png",
                          normal="normal.png"),
        r.update(detail={"displacement": {"blender_displace": {"midlevel": 0.5, "strength": 0.003}}})))
    np.save(folder / "displacement.npy", np.zeros((4, 4), np.float32))
    b = load_bundle(folder)
    assert {k: p.name for k, p in b.images.items()} == {
        "texture": "texture.png", "normal": "normal.png", "displacement": "displacement.png"}
    assert (b.displacement_midlevel, b.displacement_strength) == (0.5, pytest.approx(0.003))


def _with_eye(dev_bundle: Path, folder: Path, name: object = "eye.png") -> Path:
    """A copy of the dev bundle listing ``name`` as its eye texture (eye.png: a 64² PNG)."""
    from PIL import Image

    _copy(dev_bundle, folder)
    Image.new("RGB", (64, 64), (90, 60, 40)).save(folder / "eye.png")
    _edit_result(folder, lambda r: r["files"].update(eye=name))
    return folder


def test_eye_texture_is_read(dev_bundle, tmp_path):
    bundle = load_bundle(_with_eye(dev_bundle, tmp_path / "b"))
    assert bundle.images["eye"].name == "eye.png" and bundle.warnings == []
    assert "eye" not in load_bundle(dev_bundle).images  # older bundles: no eye texture


@pytest.mark.parametrize("damage,words", [
    ("missing", "eye.png: it is missing"),
    ("truncated", "truncated"),
    ("not-png", "eye.png: not a PNG file"),
    ("jpeg", "eye.jpg: the eye texture must be a PNG file"),
    ("not-square", "64x32 pixels, not a square eye texture"),
    ("tiny", "8x8 pixels"),
    ("link-outside", "links to a file outside the bundle"),
])
def test_hostile_eye_texture_falls_back_to_the_procedural_eyes(dev_bundle, tmp_path, damage, words):
    """A missing, damaged, odd-sized or out-of-bundle eye.png is left out with one sentence;
    the rig still loads and the eyes get the procedural material."""
    from PIL import Image

    folder = _with_eye(dev_bundle, tmp_path / "b")
    eye = folder / "eye.png"
    if damage == "missing":
        eye.unlink()
    elif damage == "truncated":
        eye.write_bytes(eye.read_bytes()[:-20])
    elif damage == "not-png":
        Image.new("RGB", (64, 64)).save(eye, format="JPEG")
    elif damage == "jpeg":
        Image.new("RGB", (64, 64)).save(folder / "eye.jpg")
        _edit_result(folder, lambda r: r["files"].update(eye="eye.jpg"))
    elif damage == "not-square":
        Image.new("RGB", (64, 32)).save(eye)
    elif damage == "tiny":
        Image.new("RGB", (8, 8)).save(eye)
    else:
        outside = tmp_path / "secret.png"
        Image.new("RGB", (64, 64)).save(outside)
        eye.unlink()
        eye.symlink_to(outside)
    bundle = load_bundle(folder)
    assert "eye" not in bundle.images
    assert len(bundle.warnings) == 1 and words in bundle.warnings[0]
    assert bundle.warnings[0].endswith("the eyes get the plain procedural eye material.")


@pytest.mark.parametrize("name", ["../eye.png", "/etc/passwd", 7, ""])
def test_invalid_eye_texture_name_is_refused(dev_bundle, tmp_path, name):
    with pytest.raises(BundleError, match="invalid eye file name"):
        load_bundle(_with_eye(dev_bundle, tmp_path / "b", name))
