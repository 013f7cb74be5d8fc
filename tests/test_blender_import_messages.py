"""Issue 12 item 15: File > Import > HeadRecon Bundle in real Blender (bpy 5.0.1) when images
are missing or damaged, the path is empty, or a file inside the bundle is chosen.

Bundles are development bundles (random FLAME parameters) written into tmp_path, with an
albedo.png (a copy of texture.png) added and listed as result.json does after a real fit.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.blender_face_support import bpy, built_and_installed, enabled
from backend.files.bundle import write_dev_bundle
from headrecon_addon.bundle import BundleError, load_bundle, png_problem


@pytest.fixture(scope="module")
def ext_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_and_installed(tmp_path_factory)


@pytest.fixture
def bundle(tmp_path: Path, assets_dir: Path) -> Path:
    out = tmp_path / "head"
    write_dev_bundle(out, seed=3, assets=assets_dir)
    shutil.copy(out / "texture.png", out / "albedo.png")
    result = json.loads((out / "result.json").read_text())
    result["files"]["albedo"] = "albedo.png"
    (out / "result.json").write_text(json.dumps(result))
    return out


def _colour_image() -> str:
    """File name of the image feeding the imported head's Base Color."""
    arm = bpy.context.view_layer.objects.active
    mesh = next(c for c in arm.children if c.type == 'MESH')
    bsdf = next(n for n in mesh.active_material.node_tree.nodes
                if n.bl_idname == 'ShaderNodeBsdfPrincipled')
    link = bsdf.inputs["Base Color"].links[0]
    image = link.from_node.image
    assert image.size[0] > 0 and image.has_data
    return Path(image.filepath).name


def test_missing_texture_imports_with_albedo(ext_dir: Path, bundle: Path, capfd) -> None:
    (bundle / "texture.png").unlink()
    assert "texture.png: it is missing" in load_bundle(bundle).warnings[0]
    with enabled(ext_dir):
        assert bpy.ops.headrecon.import_bundle(filepath=str(bundle / "result.json")) == {'FINISHED'}
        assert _colour_image() == "albedo.png"
    assert "texture.png: it is missing; the head's colour comes from albedo.png" in capfd.readouterr().out


def test_truncated_albedo_is_reported_and_texture_used(ext_dir: Path, bundle: Path, capfd) -> None:
    data = (bundle / "albedo.png").read_bytes()
    (bundle / "albedo.png").write_bytes(data[: len(data) // 2])
    assert png_problem(bundle / "albedo.png") is not None
    assert png_problem(bundle / "texture.png") is None
    with enabled(ext_dir):
        assert bpy.ops.headrecon.import_bundle(filepath=str(bundle / "result.json")) == {'FINISHED'}
        assert _colour_image() == "texture.png"  # not a blank pink albedo
    out = capfd.readouterr().out
    assert "albedo.png: it ends early (truncated); the head's colour comes from texture.png" in out


def test_corrupt_png_data_is_found(bundle: Path) -> None:
    """Same length, garbage inside the image data: a CRC or inflate error, not a pink image."""
    data = bytearray((bundle / "albedo.png").read_bytes())
    data[len(data) // 2: len(data) // 2 + 32] = bytes(32)
    (bundle / "albedo.png").write_bytes(bytes(data))
    assert "corrupt" in (png_problem(bundle / "albedo.png") or "")


def test_empty_path_and_file_inside_bundle(ext_dir: Path, bundle: Path) -> None:
    with pytest.raises(BundleError, match="No bundle chosen"):
        load_bundle("")
    with pytest.raises(BundleError, match="gone.png does not exist in the bundle"):
        load_bundle(bundle / "gone.png")
    with enabled(ext_dir):
        with pytest.raises(RuntimeError, match="No bundle chosen"):
            bpy.ops.headrecon.import_bundle(filepath="")
        # Choosing texture.png (or any file of the bundle) in the file browser means its folder.
        assert bpy.ops.headrecon.import_bundle(filepath=str(bundle / "texture.png")) == {'FINISHED'}
        assert bpy.context.view_layer.objects.active.type == 'ARMATURE'
