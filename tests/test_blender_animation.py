"""Presets, Reset and Insert Keyframes in real Blender (bpy 5.0.1), the extension installed
from its zip (tests/blender_face_support.py).

Bundles: development bundles from the FLAME dev model; the ARKit one also carries the 51
ARKit shapes of the assets. Tolerances: shape-key values are float32 (1e-6); bone
rotations go through Euler angles (1e-6 per matrix entry); evaluated vertices in metres.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.blender_face_support import (bpy, built_and_installed, enabled, import_head, key_values,
                                        local_rotation, write_arkit_bundle)

from backend.files.bundle import write_dev_bundle
from headrecon_addon import face_controls, naming, presets, rig

pytestmark = pytest.mark.blender

VALUE_TOL = 1e-6
ROT_TOL = 1e-6


@pytest.fixture(scope="module")
def ext_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_and_installed(tmp_path_factory)


@pytest.fixture(scope="module")
def arkit_bundle(tmp_path_factory: pytest.TempPathFactory, assets_dir: Path) -> Path:
    return write_arkit_bundle(tmp_path_factory.mktemp("bundles") / "arkit", assets_dir, seed=5)


@pytest.fixture(scope="module")
def plain_bundle(tmp_path_factory: pytest.TempPathFactory, assets_dir: Path) -> Path:
    """A development bundle without ARKit shapes."""
    out = tmp_path_factory.mktemp("bundles") / "plain"
    write_dev_bundle(out, seed=6, assets=assets_dir)
    return out


@pytest.fixture
def ext(ext_dir: Path):
    with enabled(ext_dir) as module:
        yield module


def _rot_x(angle: float) -> np.ndarray:
    return rig.axis_angle_to_matrix(np.array([angle, 0.0, 0.0]))


def _evaluated(obj: bpy.types.Object) -> np.ndarray:
    """(V, 3) evaluated vertex positions (object space)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    depsgraph.update()
    ev = obj.evaluated_get(depsgraph)
    co = np.empty(len(ev.data.vertices) * 3, np.float32)
    ev.data.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def _snapshot(arm: bpy.types.Object, mesh_obj: bpy.types.Object) -> tuple[dict, dict]:
    return key_values(mesh_obj), {b: local_rotation(arm, b) for b in naming.BONE_NAMES}


def _assert_state(arm, mesh_obj, state: tuple[dict, dict]) -> None:
    keys, bones = state
    now = key_values(mesh_obj)
    for name in face_controls.face_keys(keys):
        assert now[name] == pytest.approx(keys[name], abs=VALUE_TOL), name
    for bone, mat in bones.items():
        np.testing.assert_allclose(local_rotation(arm, bone), mat, atol=ROT_TOL, err_msg=bone)


def test_operators_poll_only_for_a_head(ext, arkit_bundle):
    ops = (bpy.ops.headrecon.apply_preset, bpy.ops.headrecon.reset_expression,
           bpy.ops.headrecon.insert_keyframes, bpy.ops.headrecon.export_head)
    assert not any(op.poll() for op in ops)
    panels = (bpy.types.VIEW3D_PT_headrecon_expression, bpy.types.VIEW3D_PT_headrecon_shape_keys,
              bpy.types.VIEW3D_PT_headrecon_export)
    assert all(p.bl_parent_id == "VIEW3D_PT_headrecon" for p in panels)
    assert not any(p.poll(bpy.context) for p in panels)
    arm, mesh_obj = import_head(arkit_bundle)
    assert all(op.poll() for op in ops) and all(p.poll(bpy.context) for p in panels)
    bpy.context.view_layer.objects.active = mesh_obj
    assert all(op.poll() for op in ops)
    bpy.ops.mesh.primitive_cube_add()
    assert not any(op.poll() for op in ops)
    assert hasattr(bpy.context.window_manager, "headrecon_key_filter")


def test_smile_replaces_the_expression(ext, arkit_bundle):
    arm, mesh_obj = import_head(arkit_bundle)
    neck_before = local_rotation(arm, "neck")
    assert bpy.ops.headrecon.apply_preset(preset='SMILE') == {'FINISHED'}
    values = key_values(mesh_obj)
    expected = {"mouthSmileLeft": 0.8, "mouthSmileRight": 0.8, "cheekSquintLeft": 0.3,
                "cheekSquintRight": 0.3, "eyeSquintLeft": 0.15, "eyeSquintRight": 0.15}
    for name in face_controls.face_keys(values):
        assert values[name] == pytest.approx(expected.get(name, 0.0), abs=VALUE_TOL), name
    for bone in face_controls.EXPRESSION_BONES:
        np.testing.assert_allclose(local_rotation(arm, bone), np.eye(3), atol=ROT_TOL)
    np.testing.assert_allclose(local_rotation(arm, "neck"), neck_before, atol=ROT_TOL)


def test_jaw_presets_rotate_the_jaw_bone_and_open_the_mouth(ext, arkit_bundle):
    arm, mesh_obj = import_head(arkit_bundle)
    assert bpy.ops.headrecon.apply_preset(preset='NEUTRAL') == {'FINISHED'}
    closed = _evaluated(mesh_obj)
    assert bpy.ops.headrecon.apply_preset(preset='JAW_OPEN') == {'FINISHED'}
    # jaw is a "forward" bone: local X = FLAME X, so the local rotation is R_x(0.35) too
    np.testing.assert_allclose(local_rotation(arm, "jaw"), _rot_x(0.35), atol=ROT_TOL)
    opened = _evaluated(mesh_obj)
    with np.load(arkit_bundle / "rig.npz") as data:
        chin = data["weights"][:, 2] > 0.9
    drop = closed[chin, 2] - opened[chin, 2]  # object space: Blender Z is up
    assert drop.mean() > 0.01 and (drop > 0).mean() > 0.95
    assert bpy.ops.headrecon.apply_preset(preset='SURPRISE', strength=0.5) == {'FINISHED'}
    np.testing.assert_allclose(local_rotation(arm, "jaw"), _rot_x(0.075), atol=ROT_TOL)
    values = key_values(mesh_obj)
    assert values["browInnerUp"] == pytest.approx(0.5, abs=VALUE_TOL)
    assert values["eyeWideLeft"] == pytest.approx(0.3, abs=VALUE_TOL)


def test_add_mode_layers_a_preset_over_the_captured_face(ext, arkit_bundle):
    arm, mesh_obj = import_head(arkit_bundle)
    captured = _snapshot(arm, mesh_obj)
    assert bpy.ops.headrecon.apply_preset(preset='SMILE', mode='ADD', strength=0.5) == {'FINISHED'}
    values = key_values(mesh_obj)
    assert values[naming.CAPTURED_KEY] == 1.0
    assert values["mouthSmileLeft"] == pytest.approx(0.4, abs=VALUE_TOL)
    for name in naming.BLINK_KEYS:
        assert values[name] == pytest.approx(captured[0][name], abs=VALUE_TOL)
    np.testing.assert_allclose(local_rotation(arm, "jaw"), captured[1]["jaw"], atol=ROT_TOL)
    assert bpy.ops.headrecon.apply_preset(preset='JAW_OPEN', mode='ADD') == {'FINISHED'}
    # FLAME rotation R_x(0.35) after the captured one; local = P^T R P with the jaw's frame
    frame = rig.FRAME_FORWARD
    np.testing.assert_allclose(local_rotation(arm, "jaw"),
                               frame.T @ _rot_x(0.35) @ frame @ captured[1]["jaw"], atol=ROT_TOL)


def test_presets_skip_keys_the_head_lacks(ext, plain_bundle):
    arm, mesh_obj = import_head(plain_bundle)
    assert bpy.ops.headrecon.apply_preset(preset='SMILE') == {'FINISHED'}
    assert not any(key_values(mesh_obj)[n] for n in face_controls.face_keys(key_values(mesh_obj)))
    assert bpy.ops.headrecon.apply_preset(preset='BLINK') == {'FINISHED'}
    values = key_values(mesh_obj)
    assert [values[n] for n in naming.BLINK_KEYS] == [1.0, 1.0]


def test_reset_to_neutral_and_back_to_captured(ext, arkit_bundle):
    arm, mesh_obj = import_head(arkit_bundle)
    captured = _snapshot(arm, mesh_obj)
    with np.load(arkit_bundle / "rig.npz") as data:
        assert np.abs(data["pose"][1:]).max() > 0.05  # the import posed neck, jaw and eyes
    rng = np.random.default_rng(0)
    for kb in mesh_obj.data.shape_keys.key_blocks[1:]:
        if face_controls.is_face_key(kb.name):
            kb.value = float(rng.uniform(0.1, 0.9))
    for bone in naming.BONE_NAMES:
        arm.pose.bones[bone].rotation_euler = rng.normal(0.0, 0.2, 3).tolist()

    assert bpy.ops.headrecon.reset_expression(target='NEUTRAL') == {'FINISHED'}
    values = key_values(mesh_obj)
    assert all(values[n] == 0.0 for n in face_controls.face_keys(values))
    for bone in naming.BONE_NAMES:
        np.testing.assert_allclose(local_rotation(arm, bone), np.eye(3), atol=ROT_TOL)
    # the driven correctives follow the bones back to 0
    bpy.context.evaluated_depsgraph_get().update()
    values = key_values(mesh_obj)
    assert max(abs(values[k]) for k in naming.corrective_keys()) < 1e-6

    assert bpy.ops.headrecon.reset_expression(target='CAPTURED') == {'FINISHED'}
    _assert_state(arm, mesh_obj, captured)

    arm.pose.bones["neck"].rotation_euler = (0.3, 0.0, 0.0)
    arm.pose.bones["jaw"].rotation_euler = (0.2, 0.0, 0.0)
    assert bpy.ops.headrecon.reset_expression(target='NEUTRAL', head_pose=False) == {'FINISHED'}
    np.testing.assert_allclose(local_rotation(arm, "neck"), _rot_x(0.3), atol=ROT_TOL)
    np.testing.assert_allclose(local_rotation(arm, "jaw"), np.eye(3), atol=ROT_TOL)


def test_reset_to_captured_works_in_any_rotation_mode(ext, arkit_bundle):
    arm, mesh_obj = import_head(arkit_bundle)
    captured = _snapshot(arm, mesh_obj)
    arm.pose.bones["jaw"].rotation_mode = 'QUATERNION'
    arm.pose.bones["eye.L"].rotation_mode = 'AXIS_ANGLE'
    arm.pose.bones["neck"].rotation_mode = 'ZXY'
    assert bpy.ops.headrecon.reset_expression(target='NEUTRAL') == {'FINISHED'}
    assert bpy.ops.headrecon.reset_expression(target='CAPTURED') == {'FINISHED'}
    _assert_state(arm, mesh_obj, captured)


def test_reset_to_captured_without_the_bundle_fails_cleanly(ext, arkit_bundle, tmp_path):
    folder = tmp_path / "moved"
    shutil.copytree(arkit_bundle, folder)
    arm, mesh_obj = import_head(folder)
    shutil.rmtree(folder)
    mesh_obj.data.shape_keys.key_blocks["jawOpen"].value = 0.5
    with pytest.raises(RuntimeError, match=r"bundle .*rig\.npz is gone.*Neutral"):
        bpy.ops.headrecon.reset_expression(target='CAPTURED')
    assert mesh_obj.data.shape_keys.key_blocks["jawOpen"].value == 0.5
    assert bpy.ops.headrecon.reset_expression(target='NEUTRAL') == {'FINISHED'}


def _channelbag(action: bpy.types.Action, id_data: bpy.types.ID) -> bpy.types.ActionChannelbag:
    slot = id_data.animation_data.action_slot
    return next(cb for layer in action.layers for strip in layer.strips
                for cb in strip.channelbags if cb.slot == slot)


def test_insert_keyframes_at_frames_1_and_10(ext, arkit_bundle):
    bpy.ops.mesh.primitive_cube_add()
    cube = bpy.context.active_object
    cube.keyframe_insert("location", frame=3)
    user_action = cube.animation_data.action
    user_keys = [(fc.data_path, len(fc.keyframe_points)) for fc in _channelbag(user_action, cube).fcurves]

    arm, mesh_obj = import_head(arkit_bundle)
    shape_keys = mesh_obj.data.shape_keys
    assert bpy.ops.headrecon.apply_preset(preset='SMILE') == {'FINISHED'}
    assert bpy.ops.headrecon.insert_keyframes(frame=1) == {'FINISHED'}
    bpy.context.scene.frame_set(10)  # (changing frames plays the animation back: pose after it)
    assert bpy.ops.headrecon.apply_preset(preset='SURPRISE') == {'FINISHED'}
    assert bpy.ops.headrecon.insert_keyframes() == {'FINISHED'}  # the current frame

    action = arm.animation_data.action
    assert action.name == "dev_seed5_FaceAnim" == face_controls.action_name(arm.name)
    assert shape_keys.animation_data.action == action
    assert {a.name for a in bpy.data.actions} == {user_action.name, action.name}
    assert [(fc.data_path, len(fc.keyframe_points))
            for fc in _channelbag(user_action, cube).fcurves] == user_keys

    key_curves = {fc.data_path: fc for fc in _channelbag(action, shape_keys).fcurves}
    face_names = face_controls.face_keys(shape_keys.key_blocks.keys())
    assert set(key_curves) == {f'key_blocks["{n}"].value' for n in face_names}
    smile, surprise = (dict(presets.PRESETS_BY_ID[p].keys) for p in ("SMILE", "SURPRISE"))
    assert smile["mouthSmileLeft"] == 0.8 and surprise["browInnerUp"] == 1.0
    for name in face_names:
        points = key_curves[f'key_blocks["{name}"].value'].keyframe_points
        assert [p.co[0] for p in points] == [1.0, 10.0]
        assert points[0].co[1] == pytest.approx(smile.get(name, 0.0), abs=VALUE_TOL)
        assert points[1].co[1] == pytest.approx(surprise.get(name, 0.0), abs=VALUE_TOL)
    assert key_curves['key_blocks["browInnerUp"].value'].group.name == "Brows"

    bone_curves = {(fc.data_path, fc.array_index): fc for fc in _channelbag(action, arm).fcurves}
    assert set(bone_curves) == {(f'pose.bones["{b}"].rotation_euler', i)
                                for b in naming.BONE_NAMES for i in range(3)}
    jaw_x = bone_curves[('pose.bones["jaw"].rotation_euler', 0)]
    assert [tuple(p.co) for p in jaw_x.keyframe_points] == [
        (1.0, pytest.approx(0.0, abs=ROT_TOL)), (10.0, pytest.approx(0.15, abs=ROT_TOL))]
    assert jaw_x.group.name == "jaw"
    # the timeline plays it back: in between at frame 5, the smile back at frame 1
    bpy.context.scene.frame_set(5)
    assert 0.0 < arm.pose.bones["jaw"].rotation_euler.x < 0.15
    assert 0.0 < shape_keys.key_blocks["browInnerUp"].value < 1.0
    bpy.context.scene.frame_set(1)
    assert shape_keys.key_blocks["mouthSmileLeft"].value == pytest.approx(0.8, abs=VALUE_TOL)
    # driven correctives are never keyed; they keep their drivers
    assert len(shape_keys.animation_data.drivers) == len(naming.corrective_keys())


def test_insert_keyframes_uses_the_heads_assigned_action(ext, arkit_bundle):
    arm, mesh_obj = import_head(arkit_bundle)
    mine = bpy.data.actions.new("my_take")
    arm.animation_data_create().action = mine
    assert bpy.ops.headrecon.insert_keyframes(frame=4, shape_keys=False) == {'FINISHED'}
    assert arm.animation_data.action == mine and len(bpy.data.actions) == 1
    assert len(_channelbag(mine, arm).fcurves) == 3 * len(naming.BONE_NAMES)
    assert bpy.ops.headrecon.insert_keyframes(frame=4, bones=False) == {'FINISHED'}
    shape_keys = mesh_obj.data.shape_keys
    assert shape_keys.animation_data.action == mine
    assert len(_channelbag(mine, shape_keys).fcurves) == len(
        face_controls.face_keys(shape_keys.key_blocks.keys()))
