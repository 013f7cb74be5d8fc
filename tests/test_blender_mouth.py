"""The mouth interior in real Blender (bpy 5.0.1), the extension installed from its zip:
teeth, tongue and cavity objects, their bones, the tongueOut driver, the glTF and FBX
exports (re-imported: 52 ARKit morph targets on the head, tongueOut on the tongue; Khronos
validator clean) and an older bundle without a mouth.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.blender_face_support import (bpy, built_and_installed, enabled, import_head,
                                        write_arkit_bundle)
from tests.test_blender_export import read_glb, validate

from headrecon_addon import naming

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def ext_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_and_installed(tmp_path_factory)


@pytest.fixture(scope="module")
def arkit_bundle(tmp_path_factory: pytest.TempPathFactory, assets_dir: Path) -> Path:
    return write_arkit_bundle(tmp_path_factory.mktemp("bundles") / "arkit", assets_dir, seed=5)


def _mouth(arm: bpy.types.Object) -> dict[str, bpy.types.Object]:
    return {c[naming.MOUTH_PROP]: c for c in arm.children if naming.MOUTH_PROP in c}


def _world(obj: bpy.types.Object) -> np.ndarray:
    dg = bpy.context.evaluated_depsgraph_get()
    dg.update()
    ev = obj.evaluated_get(dg)
    co = np.empty(len(ev.data.vertices) * 3, np.float32)
    ev.data.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def test_parts_bones_and_driver(ext_dir, arkit_bundle):
    with enabled(ext_dir):
        arm, head = import_head(arkit_bundle)
        parts = _mouth(arm)
        assert set(parts) == set(naming.MOUTH_PARTS)
        for name, obj in parts.items():
            assert obj.parent == arm and obj.modifiers["Armature"].object == arm
            assert obj.users_collection[0] == head.users_collection[0]
        assert parts["upper_teeth"].vertex_groups.keys() == [naming.HEAD_BONE]
        assert parts["lower_teeth"].vertex_groups.keys() == [naming.JAW_BONE]
        assert parts["tongue"].vertex_groups.keys() == [naming.JAW_BONE]
        arkit = [k for k in head.data.shape_keys.key_blocks.keys() if k in naming.ARKIT_NAMES]
        assert len(arkit) == 52
        # the jaw moves the lower teeth and the tongue, not the upper teeth
        arm.pose.bones[naming.JAW_BONE].rotation_euler = (0.0, 0.0, 0.0)
        rest = {n: _world(o) for n, o in parts.items()}
        arm.pose.bones[naming.JAW_BONE].rotation_euler = (0.35, 0.0, 0.0)
        moved = {n: np.abs(_world(o) - rest[n]).max() for n, o in parts.items()}
        print("moved by jaw 0.35 rad (m):", moved)
        assert moved["upper_teeth"] < 1e-6 and moved["lower_teeth"] > 0.01 and moved["tongue"] > 0.01
        # one key for the animator: the head's tongueOut drives the tongue's
        tongue_key = parts["tongue"].data.shape_keys.key_blocks[naming.TONGUE_OUT_KEY]
        head.data.shape_keys.key_blocks[naming.TONGUE_OUT_KEY].value = 0.6
        _world(parts["tongue"])
        assert tongue_key.value == pytest.approx(0.6, abs=1e-6)


def test_glb_and_fbx_carry_the_mouth(ext_dir, arkit_bundle, tmp_path):
    with enabled(ext_dir):
        arm, head = import_head(arkit_bundle)
        names = {o.name for o in _mouth(arm).values()}
        head.data.shape_keys.key_blocks[naming.TONGUE_OUT_KEY].keyframe_insert("value", frame=1)
        head.data.shape_keys.key_blocks[naming.TONGUE_OUT_KEY].value = 1.0
        head.data.shape_keys.key_blocks[naming.TONGUE_OUT_KEY].keyframe_insert("value", frame=5)
        glb = tmp_path / "head.glb"
        assert bpy.ops.headrecon.export_head(filepath=str(glb), preset='GLB') == {'FINISHED'}
        fbx = tmp_path / "head.fbx"
        assert bpy.ops.headrecon.export_head(filepath=str(fbx), preset='FBX_UNITY') == {'FINISHED'}
        assert all(o.parent == arm for o in _mouth(arm).values())  # restored after export
    gltf, _ = read_glb(glb)
    nodes = {n["name"] for n in gltf["nodes"]}
    assert names <= nodes
    by_name = {m["name"]: m for m in gltf["meshes"]}
    assert len(gltf["meshes"]) == 5
    report = validate(glb)
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"][:5]

    bpy.ops.wm.read_homefile(use_empty=True)
    assert bpy.ops.import_scene.gltf(filepath=str(glb)) == {'FINISHED'}
    meshes = {o.name: o for o in bpy.data.objects if o.type == 'MESH'}
    head_obj = next(o for o in meshes.values() if len(o.data.vertices) >= 5023 and
                    o.data.shape_keys is not None and len(o.data.shape_keys.key_blocks) > 50)
    keys = head_obj.data.shape_keys.key_blocks.keys()
    assert len([k for k in keys if k in naming.ARKIT_NAMES]) == 52
    tongue = next(o for o in meshes.values() if o.data.shape_keys is not None and o is not head_obj)
    assert tongue.data.shape_keys.key_blocks.keys()[1:] == [naming.TONGUE_OUT_KEY]
    print("glTF meshes:", sorted(meshes), "; by name", sorted(by_name))

    bpy.ops.wm.read_homefile(use_empty=True)
    assert bpy.ops.import_scene.fbx(filepath=str(fbx), anim_offset=0.0) == {'FINISHED'}
    meshes = [o for o in bpy.data.objects if o.type == 'MESH']
    assert len(meshes) == 5
    keyed = [o for o in meshes if o.data.shape_keys is not None]
    tongue = next(o for o in keyed if len(o.data.shape_keys.key_blocks) == 2)
    assert tongue.data.shape_keys.key_blocks[1].name == naming.TONGUE_OUT_KEY
    bpy.context.scene.frame_set(5)  # the driven value was baked into the take
    assert tongue.data.shape_keys.key_blocks[1].value == pytest.approx(1.0, abs=1e-4)


def test_bundle_without_mouth_imports(ext_dir, arkit_bundle, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(arkit_bundle, old)
    result = json.loads((old / "result.json").read_text())
    for key in ("mouth", "teeth_texture", "tongue_texture"):
        result["files"].pop(key)
    (old / "result.json").write_text(json.dumps(result))
    with enabled(ext_dir):
        arm, head = import_head(old)
        assert _mouth(arm) == {}
        keys = head.data.shape_keys.key_blocks.keys()
        assert naming.TONGUE_OUT_KEY not in keys
        assert len([k for k in keys if k in naming.ARKIT_NAMES]) == 51
