"""Helpers of the animation and export tests (tests/test_blender_animation.py,
tests/test_blender_export.py), imported as ``tests.blender_face_support``.

The extension runs as shipped: the zip from build.py is installed into a temporary
extensions repository (``REPO_MODULE``) and enabled for each test. ``BLENDER_USER_RESOURCES``
points at a temporary folder when this module is the first to import bpy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="headrecon-blender-user-"))

import bpy  # noqa: E402
import addon_utils  # noqa: E402  (Blender's module, importable once bpy is)

from backend.files.bundle import write_dev_bundle, write_rig_npz  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
REPO_MODULE = "headrecon_face_tests"
EXT_MODULE = f"bl_ext.{REPO_MODULE}.headrecon"
ARKIT_ASSET = "expressions/arkit51_on_flame.npz"


def factory_reset() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def build_zip(out_dir: Path) -> Path:
    """Build the extension zip with build.py into ``out_dir``; returns its path."""
    proc = subprocess.run([sys.executable, "build.py", "--output-dir", str(out_dir)], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip())


def _ensure_repo(directory: Path) -> None:
    repos = bpy.context.preferences.extensions.repos
    if not any(r.module == REPO_MODULE for r in repos):
        repos.new(name="HeadRecon face tests", module=REPO_MODULE,
                  custom_directory=str(directory), source='USER')


def install(zip_path: Path, directory: Path) -> None:
    """Install (not enable) the zip into a temporary extensions repository at ``directory``."""
    factory_reset()
    _ensure_repo(directory)
    result = bpy.ops.extensions.package_install_files(
        filepath=str(zip_path), repo=REPO_MODULE, enable_on_install=False)
    assert result == {'FINISHED'}
    assert (directory / "headrecon" / "blender_manifest.toml").is_file()


def built_and_installed(tmp_path_factory) -> Path:
    """Build the zip and install it into a fresh extensions folder; returns that folder
    (the body of each Blender test module's ``ext_dir`` fixture)."""
    directory = tmp_path_factory.mktemp("extensions")
    install(build_zip(tmp_path_factory.mktemp("dist")), directory)
    return directory


def _raise(exc: Exception) -> None:
    raise exc


@contextmanager
def enabled(directory: Path) -> Iterator[object]:
    """The installed extension enabled in a factory-settings session; disabled afterwards."""
    factory_reset()
    _ensure_repo(directory)
    module = addon_utils.enable(EXT_MODULE, default_set=True, handle_error=_raise)
    assert module is not None
    try:
        yield module
    finally:
        addon_utils.disable(EXT_MODULE, default_set=True, handle_error=_raise)
        factory_reset()


def write_arkit_bundle(out: Path, assets_dir: Path, seed: int) -> Path:
    """A development bundle (random FLAME parameters of the dev model) whose rig.npz also
    carries the 51 ARKit shapes of the assets (``expressions/arkit51_on_flame.npz``, FLAME
    topology, template identity), as a bundle with ``arkit_names``/``arkit_deltas`` has."""
    write_dev_bundle(out, seed=seed, assets=assets_dir)
    with np.load(out / "rig.npz") as data:
        arrays = {k: data[k] for k in data.files}
    with np.load(assets_dir / ARKIT_ASSET) as data:
        arrays["arkit_names"] = data["names"]
        arrays["arkit_deltas"] = data["deltas"]
    write_rig_npz(out / "rig.npz", **arrays)
    return out


def import_head(bundle: Path) -> tuple[bpy.types.Object, bpy.types.Object]:
    """Import a bundle with the extension's operator; returns (armature, mesh)."""
    assert bpy.ops.headrecon.import_bundle(filepath=str(bundle / "result.json")) == {'FINISHED'}
    arm = bpy.context.view_layer.objects.active
    meshes = [c for c in arm.children if c.type == 'MESH' and c.get("headrecon_head")]
    assert arm.type == 'ARMATURE' and len(meshes) == 1  # the mouth objects are not the head
    return arm, meshes[0]


def key_values(mesh_obj: bpy.types.Object) -> dict[str, float]:
    """Shape key name -> value."""
    return {kb.name: kb.value for kb in mesh_obj.data.shape_keys.key_blocks}


def local_rotation(arm: bpy.types.Object, bone: str) -> np.ndarray:
    """(3, 3) local rotation of a pose bone."""
    return np.array(arm.pose.bones[bone].matrix_basis.to_3x3())
