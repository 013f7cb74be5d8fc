"""Export presets in real Blender (bpy 5.0.1), the extension installed from its zip.

The .glb is parsed here (GLB header, JSON and BIN chunks) and validated by the Khronos glTF
validator (npm ``gltf-validator`` in tools/, installed by setup.sh with ``npm ci --prefix
tools``). FBX files are imported back into an empty file with Blender's FBX importer.

Bundle: a development bundle from the FLAME dev model carrying the 51 ARKit shapes of the
assets and a mouth interior (teeth, tongue, cavity exported beside the head; tongueOut = 52). Animation: Smile keyed at frame 1, Surprise (jaw 0.15 rad) at frame 10, 24 fps.
Tolerances: morph weights and key values 1e-6 (float32), rotations 1e-5 rad, positions 1e-5 m.
"""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.blender_face_support import (REPO, bpy, built_and_installed, enabled, import_head,
                                        write_arkit_bundle)

from headrecon_addon import export_profiles, face_controls, naming

pytestmark = pytest.mark.blender

VALIDATOR = REPO / "tools" / "validate_gltf.mjs"
FPS = 24
JAW_ANGLE = 0.15  # SURPRISE preset


@pytest.fixture(scope="module")
def ext_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_and_installed(tmp_path_factory)


@pytest.fixture(scope="module")
def arkit_bundle(tmp_path_factory: pytest.TempPathFactory, assets_dir: Path) -> Path:
    """The ARKit dev bundle with an albedo and a tangent-space normal map (the material's)."""
    from PIL import Image

    folder = write_arkit_bundle(tmp_path_factory.mktemp("bundles") / "arkit", assets_dir, seed=8)
    Image.new("RGB", (64, 64), (200, 150, 120)).save(folder / "albedo.png")
    Image.new("RGB", (64, 64), (140, 120, 250)).save(folder / "normal.png")
    result = json.loads((folder / "result.json").read_text())
    result["files"].update(albedo="albedo.png", normal="normal.png")
    (folder / "result.json").write_text(json.dumps(result))
    return folder


@pytest.fixture
def animated_head(ext_dir: Path, arkit_bundle: Path):
    """An imported head with Smile keyed at frame 1 and Surprise at frame 10; a user cube
    (not part of the head) and the head's armature selected, the armature active."""
    with enabled(ext_dir):
        arm, mesh_obj = import_head(arkit_bundle)
        assert bpy.ops.headrecon.apply_preset(preset='SMILE') == {'FINISHED'}
        assert bpy.ops.headrecon.insert_keyframes(frame=1) == {'FINISHED'}
        bpy.context.scene.frame_set(10)
        assert bpy.ops.headrecon.apply_preset(preset='SURPRISE') == {'FINISHED'}
        assert bpy.ops.headrecon.insert_keyframes() == {'FINISHED'}
        bpy.ops.mesh.primitive_cube_add(location=(2.0, 0.0, 0.0))
        cube = bpy.context.active_object
        mesh_obj.select_set(False)
        arm.select_set(True)
        bpy.context.view_layer.objects.active = arm
        assert bpy.context.scene.render.fps == FPS
        yield arm, mesh_obj, cube


def read_glb(path: Path) -> tuple[dict, bytes]:
    """The JSON and BIN chunks of a .glb (glTF 2.0 binary container)."""
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert magic == b"glTF" and version == 2 and length == len(data)
    json_len, json_type = struct.unpack_from("<I4s", data, 12)
    assert json_type == b"JSON"
    gltf = json.loads(data[20:20 + json_len])
    bin_len, bin_type = struct.unpack_from("<I4s", data, 20 + json_len)
    assert bin_type == b"BIN\x00"
    start = 28 + json_len
    return gltf, data[start:start + bin_len]


def accessor(gltf: dict, blob: bytes, index: int) -> np.ndarray:
    """A float accessor as (count, components)."""
    acc = gltf["accessors"][index]
    assert acc["componentType"] == 5126 and "sparse" not in acc  # FLOAT, dense
    view = gltf["bufferViews"][acc["bufferView"]]
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}[acc["type"]]
    stride = view.get("byteStride", 4 * width)
    assert stride == 4 * width
    offset = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    return np.frombuffer(blob, np.float32, acc["count"] * width, offset).reshape(-1, width)


def validate(path: Path) -> dict:
    """The Khronos validator's report of a glTF file."""
    if not (REPO / "tools" / "node_modules" / "gltf-validator").is_dir():
        pytest.fail("The glTF validator is not installed: run `npm ci --prefix tools` (setup.sh does).")
    proc = subprocess.run(["node", str(VALIDATOR), str(path)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def _quat_angle(q0: np.ndarray, q1: np.ndarray) -> float:
    """Angle (rad) of the rotation between two unit quaternions (x, y, z, w)."""
    return 2.0 * float(np.arccos(min(1.0, abs(float(np.dot(q0, q1))))))


def test_glb_export(animated_head, tmp_path):
    arm, mesh_obj, cube = animated_head
    key_names = mesh_obj.data.shape_keys.key_blocks.keys()
    path = tmp_path / "head.glb"
    assert bpy.ops.headrecon.export_head(filepath=str(tmp_path / "head"), preset='GLB') == {'FINISHED'}
    # selection and active object are the user's again
    assert bpy.context.view_layer.objects.active == arm
    assert {o.name for o in bpy.context.selected_objects} == {cube.name, arm.name}

    gltf, blob = read_glb(path)
    nodes = [n["name"] for n in gltf["nodes"]]
    mouth = [o.name for o in arm.children if naming.MOUTH_PROP in o]
    assert len(mouth) == 4  # teeth (2), tongue, cavity
    assert cube.name not in nodes and set(nodes) == {arm.name, mesh_obj.name, *mouth, *naming.BONE_NAMES}
    # morph targets: named like the shape keys (minus Basis), one target per name
    (mesh,) = [m for m in gltf["meshes"] if m["name"] == mesh_obj.data.name]
    target_names = mesh["extras"]["targetNames"]
    assert target_names == key_names[1:]
    assert all(len(p["targets"]) == len(target_names) for p in mesh["primitives"])
    # skin: the six bones
    (skin,) = gltf["skins"]
    assert sorted(nodes[j] for j in skin["joints"]) == sorted(naming.BONE_NAMES)
    assert accessor(gltf, blob, skin["inverseBindMatrices"]).shape == (6, 16)
    # one animation (the head's action) with morph weights and bone rotations
    (anim,) = gltf["animations"]
    assert anim["name"] == face_controls.action_name(arm.name)
    channels = {(nodes[c["target"]["node"]], c["target"]["path"]): anim["samplers"][c["sampler"]]
                for c in anim["channels"]}
    assert (mesh_obj.name, "weights") in channels
    assert {b for b, p in channels if p == "rotation"} == set(naming.BONE_NAMES)
    weights_sampler = channels[(mesh_obj.name, "weights")]
    times = accessor(gltf, blob, weights_sampler["input"])[:, 0]
    np.testing.assert_allclose(times[[0, -1]], [1 / FPS, 10 / FPS], rtol=0, atol=1e-6)
    weights = accessor(gltf, blob, weights_sampler["output"]).reshape(len(times), len(target_names))
    first, last = dict(zip(target_names, weights[0])), dict(zip(target_names, weights[-1]))
    assert first["mouthSmileLeft"] == pytest.approx(0.8, abs=1e-6) and first["browInnerUp"] == 0.0
    assert last["browInnerUp"] == pytest.approx(1.0, abs=1e-6) and last["mouthSmileLeft"] == 0.0
    # the driven jaw correctives are baked into the weights: (R - I)[2, 2] = cos(a) - 1
    assert last["PC_jaw_22"] == pytest.approx(np.cos(JAW_ANGLE) - 1.0, abs=1e-6)
    jaw = channels[("jaw", "rotation")]
    quats = accessor(gltf, blob, jaw["output"])
    assert _quat_angle(quats[0], quats[-1]) == pytest.approx(JAW_ANGLE, abs=1e-5)

    # the normal map comes with tangents; the skinned mesh node sits beside the armature node
    skin_material, eye_material = gltf["materials"][:2]  # the skin, the eyeballs (builder/eyes.py)
    assert "normalTexture" in skin_material and eye_material["name"].endswith("_eyes")
    assert all("TANGENT" in p["attributes"] for p in mesh["primitives"])
    roots = [nodes[k] for k in gltf["scenes"][gltf.get("scene", 0)]["nodes"]]
    assert sorted(roots) == sorted([arm.name, mesh_obj.name, *mouth])
    assert mesh_obj.parent == arm  # restored after the export

    report = validate(path)
    problems = [m for m in report["issues"]["messages"] if m["severity"] <= 1]
    assert report["issues"]["numErrors"] == 0 and report["issues"]["numWarnings"] == 0, problems
    assert report["info"]["hasMorphTargets"] and report["info"]["hasSkins"]
    assert report["info"]["animationCount"] == 1



def test_glb_reimports_without_an_extra_empty(animated_head, tmp_path):
    """The mesh node beside the armature node: Blender's importer moves it under the armature
    and adds no Empty. (With morph-weight animation the importer always leaves the animated
    mesh node behind as an Empty, wherever the node is: io_import vnode.move_skinned_meshes,
    so the head's keys are cleared here.)"""
    arm, mesh_obj, _ = animated_head
    arm.animation_data_clear()
    mesh_obj.data.shape_keys.animation_data_clear()
    path = tmp_path / "still.glb"
    assert bpy.ops.headrecon.export_head(filepath=str(path), preset='GLB') == {'FINISHED'}
    bpy.ops.wm.read_homefile(use_empty=True)
    assert bpy.ops.import_scene.gltf(filepath=str(path), disable_bone_shape=True) == {'FINISHED'}
    arms = [o for o in bpy.data.objects if o.type == 'ARMATURE']
    meshes = [o for o in bpy.data.objects if o.type == 'MESH']
    assert len(arms) == 1 and len(meshes) == 5  # head, teeth (2), tongue, cavity; no Empty
    assert len(bpy.data.objects) == 6 and all(m.parent == arms[0] for m in meshes)
    assert max(len(m.data.vertices) for m in meshes) >= 5023  # glTF splits the UV seams


def test_glb_rename_profile_applies_to_the_file_only(animated_head, tmp_path):
    arm, mesh_obj, _ = animated_head
    shape_keys = mesh_obj.data.shape_keys
    before = {
        "keys": shape_keys.key_blocks.keys(), "bones": arm.data.bones.keys(),
        "groups": mesh_obj.vertex_groups.keys(), "arm": arm.name,
        "drivers": sorted((d.data_path, v.targets[0].bone_target) for d in shape_keys.animation_data.drivers
                          for v in d.driver.variables),
        "fcurves": sorted(fc.data_path for fc in arm.animation_data.action.layers[0].strips[0]
                          .channelbag(arm.animation_data.action_slot).fcurves),
    }
    path = tmp_path / "unreal_names.glb"
    assert bpy.ops.headrecon.export_head(filepath=str(path), preset='GLB', rename='UNREAL') == {'FINISHED'}
    mapping = export_profiles.rename_map("UNREAL", before["keys"], before["bones"])
    gltf, _ = read_glb(path)
    assert gltf["meshes"][0]["extras"]["targetNames"] == [mapping.keys.get(k, k) for k in before["keys"][1:]]
    assert "JawOpen" in gltf["meshes"][0]["extras"]["targetNames"]
    nodes = [n["name"] for n in gltf["nodes"]]
    assert sorted(nodes[j] for j in gltf["skins"][0]["joints"]) == sorted(mapping.bones.values())
    assert validate(path)["issues"]["numErrors"] == 0
    # Blender names, vertex groups, driver targets and animation paths are restored
    assert shape_keys.key_blocks.keys() == before["keys"] and arm.data.bones.keys() == before["bones"]
    assert mesh_obj.vertex_groups.keys() == before["groups"] and arm.name == before["arm"]
    assert sorted((d.data_path, v.targets[0].bone_target) for d in shape_keys.animation_data.drivers
                  for v in d.driver.variables) == before["drivers"]
    assert all(d.driver.is_valid for d in shape_keys.animation_data.drivers)
    assert sorted(fc.data_path for fc in arm.animation_data.action.layers[0].strips[0]
                  .channelbag(arm.animation_data.action_slot).fcurves) == before["fcurves"]


def _world_deltas(obj: bpy.types.Object, key: str) -> np.ndarray:
    """(V, 3) world-space offset of a shape key from the basis (object transform applied)."""
    blocks = obj.data.shape_keys.key_blocks
    co = np.empty((2, len(obj.data.vertices) * 3), np.float32)
    blocks[0].data.foreach_get("co", co[0])
    blocks[key].data.foreach_get("co", co[1])
    mat = np.array(obj.matrix_world)[:3, :3]
    return (co[1] - co[0]).reshape(-1, 3) @ mat.T


@pytest.mark.parametrize("preset, rename", [("FBX_UNITY", "NONE"), ("FBX_UNREAL", "PRESET"),
                                            ("FBX_UNITY", "PRESET")])
def test_fbx_export_reimports_with_the_same_shape_keys(animated_head, tmp_path, preset, rename):
    arm, mesh_obj, _ = animated_head
    keys = mesh_obj.data.shape_keys.key_blocks.keys()
    bones = arm.data.bones.keys()
    arm_name = arm.name
    deltas = {k: _world_deltas(mesh_obj, k) for k in ("browInnerUp", "Exp000")}
    path = tmp_path / "head.fbx"
    assert bpy.ops.headrecon.export_head(filepath=str(path), preset=preset, rename=rename) == {'FINISHED'}
    profile = export_profiles.EXPORT_PRESETS_BY_ID[preset].rename if rename == "PRESET" else rename
    mapping = export_profiles.rename_map(profile, keys, bones)

    bpy.ops.wm.read_homefile(use_empty=True)
    assert not bpy.data.objects
    # FBX times are frame / fps; the importer's default offset of 1 frame would shift them
    assert bpy.ops.import_scene.fbx(filepath=str(path), anim_offset=0.0) == {'FINISHED'}
    arms = [o for o in bpy.data.objects if o.type == 'ARMATURE']
    meshes = [o for o in bpy.data.objects if o.type == 'MESH']
    assert len(arms) == 1 and len(meshes) == 5  # head + mouth interior
    new_arm, new_mesh = arms[0], max(meshes, key=lambda o: len(o.data.vertices) if
                                     o.data.shape_keys and len(o.data.shape_keys.key_blocks) > 2 else 0)
    new_keys = new_mesh.data.shape_keys.key_blocks.keys()
    assert new_keys[1:] == [mapping.keys.get(k, k) for k in keys[1:]]
    assert sorted(new_arm.data.bones.keys()) == sorted(mapping.bones.get(b, b) for b in bones)
    assert new_arm.name == ("Armature" if preset == "FBX_UNREAL" else arm_name)
    assert len(new_mesh.data.vertices) == 5023
    for key, delta in deltas.items():
        np.testing.assert_allclose(_world_deltas(new_mesh, mapping.keys.get(key, key)), delta,
                                   rtol=0, atol=1e-5)
    # the shape-key animation came along: browInnerUp 0 at frame 1, 1 at frame 10
    new_key = new_mesh.data.shape_keys.key_blocks[mapping.keys.get("browInnerUp", "browInnerUp")]
    bpy.context.scene.frame_set(1)
    assert new_key.value == pytest.approx(0.0, abs=1e-6)
    bpy.context.scene.frame_set(10)
    assert new_key.value == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("preset", ["FBX_UNREAL", "FBX_UNITY"])
def test_fbx_take_is_the_keyed_range_named_after_the_action(animated_head, tmp_path, preset):
    arm, mesh_obj, _ = animated_head
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 250  # wider than the keys (frames 1..10)
    scene_name = scene.name
    action = arm.animation_data.action.name
    path = tmp_path / "take.fbx"
    assert bpy.ops.headrecon.export_head(filepath=str(path), preset=preset) == {'FINISHED'}
    assert (scene.name, scene.frame_start, scene.frame_end) == (scene_name, 1, 250)

    bpy.ops.wm.read_homefile(use_empty=True)
    assert bpy.ops.import_scene.fbx(filepath=str(path), anim_offset=0.0) == {'FINISHED'}
    # Blender's importer names actions "<object>|<take>"; the baked keys span frames 1..10
    takes = {a.name.split("|")[-1] for a in bpy.data.actions}
    assert takes == {action}, takes
    ranges = {tuple(round(f) for f in a.frame_range) for a in bpy.data.actions}
    assert ranges == {(1, 10)}, ranges


def test_unreal_root_name_taken_keeps_the_armature_name(animated_head, tmp_path):
    arm, _, _ = animated_head
    bpy.data.objects.new("Armature", None)  # not linked to the scene: only the name is taken
    path = tmp_path / "taken.fbx"
    assert bpy.ops.headrecon.export_head(filepath=str(path), preset='FBX_UNREAL') == {'FINISHED'}
    name = arm.name
    bpy.ops.wm.read_homefile(use_empty=True)
    assert bpy.ops.import_scene.fbx(filepath=str(path)) == {'FINISHED'}
    assert [o.name for o in bpy.data.objects if o.type == 'ARMATURE'] == [name]


def test_export_refuses_hidden_heads_and_name_clashes(animated_head, tmp_path):
    arm, mesh_obj, cube = animated_head
    bpy.context.view_layer.objects.active = arm
    mesh_obj.hide_set(True)
    with pytest.raises(RuntimeError, match="hidden or excluded"):
        bpy.ops.headrecon.export_head(filepath=str(tmp_path / "a.glb"), preset='GLB')
    mesh_obj.hide_set(False)
    mesh_obj.shape_key_add(name="JawOpen", from_mix=False)
    with pytest.raises(RuntimeError, match="same name"):
        bpy.ops.headrecon.export_head(filepath=str(tmp_path / "b.fbx"), preset='FBX_UNREAL')
    assert not list(tmp_path.iterdir())
    assert "jawOpen" in mesh_obj.data.shape_keys.key_blocks
    assert arm.name in bpy.data.objects and "Armature" not in bpy.data.objects


def test_validator_reports_a_broken_glb(tmp_path, animated_head):
    """The validator really checks: a .glb whose accessor points past its buffer has errors."""
    path = tmp_path / "head.glb"
    assert bpy.ops.headrecon.export_head(filepath=str(path), preset='GLB') == {'FINISHED'}
    gltf, blob = read_glb(path)
    gltf["accessors"][0]["count"] = 10 ** 7
    text = json.dumps(gltf).encode()
    text += b" " * (-len(text) % 4)
    broken = tmp_path / "broken.glb"
    with broken.open("wb") as fh:
        fh.write(struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(text) + 8 + len(blob)))
        fh.write(struct.pack("<I4s", len(text), b"JSON") + text)
        fh.write(struct.pack("<I4s", len(blob), b"BIN\x00") + blob)
    assert validate(broken)["issues"]["numErrors"] > 0
