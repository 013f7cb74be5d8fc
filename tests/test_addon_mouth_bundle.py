"""The mouth interior of a bundle (mouth.npz, teeth.png, tongue.png) read by
headrecon_addon.bundle: a real dev bundle, broken and hostile copies, an older bundle
without a mouth. A damaged mouth never stops the head's import (warning, no mouth); a file
name leaving the folder is refused like every other listed file.
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
from headrecon_addon.bundle import MOUTH_PARTS, BundleError, load_bundle


@pytest.fixture(scope="module")
def dev_bundle(tmp_path_factory, repo_root) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "dev"
    subprocess.run([sys.executable, "-m", "backend.files.bundle", "--dev", str(out), "--seed", "4"],
                   cwd=repo_root, check=True, capture_output=True)
    return out


def _copy(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    if changes:
        edit_npz(dst / "mouth.npz", **changes)
    return dst


def _files(folder: Path, **entries) -> None:
    path = folder / "result.json"
    result = json.loads(path.read_text())
    for key, value in entries.items():
        if value is None:
            result["files"].pop(key, None)
        else:
            result["files"][key] = value
    path.write_text(json.dumps(result))


def test_mouth_loads(dev_bundle):
    b = load_bundle(dev_bundle)
    assert b.mouth is not None and not b.warnings
    assert set(b.mouth.parts) == set(MOUTH_PARTS)
    for part in b.mouth.parts.values():
        assert part.verts.dtype == np.float32 and part.faces.dtype == np.int32
        assert part.weights.shape == (part.verts.shape[0], 5)
    assert b.mouth.tongue_out.shape == b.mouth.parts["tongue"].verts.shape
    assert b.mouth.head_tongue_out.shape == (5023, 3)
    assert set(b.mouth.textures) == {"teeth", "tongue"}


def test_older_bundle_without_mouth(dev_bundle, tmp_path):
    folder = _copy(dev_bundle, tmp_path / "old")
    _files(folder, mouth=None, teeth_texture=None, tongue_texture=None)
    for name in ("mouth.npz", "teeth.png", "tongue.png"):
        (folder / name).unlink()
    b = load_bundle(folder)
    assert b.mouth is None and not b.warnings


@pytest.mark.parametrize("changes, words", [
    ({"tongue_faces": np.array([[0, 1, 10 ** 6]], np.int32),
      "tongue_uv_faces": np.zeros((1, 3), np.int32)}, "indexes outside"),
    ({"cavity_verts": np.full((721, 3), np.nan, np.float32)}, "NaN"),
    ({"upper_teeth_verts": np.full((10, 3), 50.0, np.float32)}, "far outside the head"),
    ({"lower_teeth_weights": None}, "lacks lower_teeth_weights"),
    ({"tongue_out": np.zeros((3, 3), np.float32)}, "tongue_out has shape"),
    ({"head_tongue_out": np.full((5023, 3), 9.0, np.float32)}, "moves vertices"),
    ({"tongue_weights": np.full((226, 5), 0.5, np.float32)}, "summing to 1"),
    ({"cavity_faces": np.array(["a", "b", "c"])}, "must hold integers"),
])
def test_damaged_mouth_is_left_out_with_a_warning(dev_bundle, tmp_path, changes, words):
    b = load_bundle(_copy(dev_bundle, tmp_path / "bad", **changes))
    assert b.mouth is None and b.v_neutral.shape == (5023, 3)
    assert len(b.warnings) == 1 and words in b.warnings[0], b.warnings
    assert "without its mouth interior" in b.warnings[0]


def test_huge_header_and_garbage_file(dev_bundle, tmp_path):
    folder = _copy(dev_bundle, tmp_path / "garbage")
    (folder / "mouth.npz").write_bytes(b"PK\x03\x04 not a zip at all")
    b = load_bundle(folder)
    assert b.mouth is None and "cannot be read as an .npz" in b.warnings[0]
    (folder / "mouth.npz").unlink()
    b = load_bundle(folder)
    assert b.mouth is None and "mouth.npz is missing" in b.warnings[0]


@pytest.mark.parametrize("key, name", [("mouth", "../rig.npz"), ("mouth", "/etc/passwd"),
                                       ("teeth_texture", "../../x.png"), ("tongue_texture", 7)])
def test_file_names_leaving_the_folder_are_refused(dev_bundle, tmp_path, key, name):
    folder = _copy(dev_bundle, tmp_path / "escape")
    _files(folder, **{key: name})
    with pytest.raises(BundleError, match=f"invalid {key} file name"):
        load_bundle(folder)


def test_damaged_texture_gives_plain_colour(dev_bundle, tmp_path):
    folder = _copy(dev_bundle, tmp_path / "tex")
    data = (folder / "teeth.png").read_bytes()
    (folder / "teeth.png").write_bytes(data[: len(data) // 2])
    b = load_bundle(folder)
    assert b.mouth is not None and set(b.mouth.textures) == {"tongue"}
    assert len(b.warnings) == 1 and "teeth.png" in b.warnings[0] and "plain colour" in b.warnings[0]
