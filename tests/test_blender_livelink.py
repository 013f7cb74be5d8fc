"""Live Link Face CSV import / export operators in real Blender (bpy 5.0.1), the extension
installed from its zip (tests/blender_face_support.py), on a development bundle that
carries the 51 ARKit shapes of the assets.

Tolerances: shape-key values are float32 (1e-6 when keyed, 1e-4 after the export's
8-digit text round trip and float32 keyframes); bone rotations go through Euler angles
and float32 keyframes (1e-5 rad).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sys

from tests.blender_face_support import (EXT_MODULE, bpy, built_and_installed, enabled, import_head,
                                        write_arkit_bundle)

from headrecon_addon import face_controls, livelink, naming

pytestmark = pytest.mark.blender

VALUE_TOL = 1e-6
ROUND_TRIP_TOL = 1e-4
ROT_TOL = 1e-5
ROW_FRAMES = (0, 2, 5)  # CSV rows at these frames (gaps are interpolated by Blender)
START = 10


@pytest.fixture(scope="module")
def ext_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_and_installed(tmp_path_factory)


@pytest.fixture(scope="module")
def arkit_bundle(tmp_path_factory: pytest.TempPathFactory, assets_dir: Path) -> Path:
    return write_arkit_bundle(tmp_path_factory.mktemp("bundles") / "arkit", assets_dir, seed=7)


@pytest.fixture
def ext(ext_dir: Path):
    with enabled(ext_dir) as module:
        yield module


def _take() -> livelink.LiveLinkTake:
    """Random weights in [0, 1] and rotations within +-0.3 rad at ``ROW_FRAMES``."""
    rng = np.random.default_rng(3)
    frames = []
    for f in ROW_FRAMES:
        weights = {livelink.arkit_name(c): float(rng.uniform()) for c in livelink.BLENDSHAPES}
        rots = {g: tuple(float(v) for v in rng.uniform(-0.3, 0.3, 3))
                for g in livelink.ROTATION_GROUPS}
        frames.append(livelink.LiveLinkFrame(f, weights, rots))
    return livelink.LiveLinkTake(30.0, frames)


def _channelbag(action: bpy.types.Action, id_data: bpy.types.ID) -> bpy.types.ActionChannelbag:
    slot = id_data.animation_data.action_slot
    return next(cb for layer in action.layers for strip in layer.strips
                for cb in strip.channelbags if cb.slot == slot)


def _flame_rotation(arm: bpy.types.Object, bone: str) -> np.ndarray:
    """FLAME-frame rotation of a pose bone: P R_local P^T (P from the rest matrix)."""
    from headrecon_addon import rig

    p = rig.FLAME_TO_BLENDER.T @ np.array(arm.data.bones[bone].matrix_local.to_3x3())
    return p @ np.array(arm.pose.bones[bone].matrix_basis.to_3x3()) @ p.T


def test_import_keys_rows_at_their_frames(ext, arkit_bundle: Path, tmp_path: Path) -> None:
    bpy.ops.mesh.primitive_cube_add()
    cube = bpy.context.active_object
    cube.keyframe_insert("location", frame=3)
    user_action = cube.animation_data.action
    take = _take()
    csv_path = tmp_path / "take.csv"
    livelink.write_csv(csv_path, take, start_frame=100)  # timecodes need not start at 0

    arm, mesh_obj = import_head(arkit_bundle)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    scene.frame_set(START)
    assert bpy.ops.headrecon.import_livelink(filepath=str(csv_path)) == {'FINISHED'}
    assert scene.frame_current == START

    action = arm.animation_data.action
    shape_keys = mesh_obj.data.shape_keys
    assert action.name == face_controls.action_name(arm.name)
    assert shape_keys.animation_data.action == action
    assert {a.name for a in bpy.data.actions} == {user_action.name, action.name}
    assert len(_channelbag(user_action, cube).fcurves) == 3  # untouched

    head_keys = set(shape_keys.key_blocks.keys())
    key_curves = {fc.data_path: fc for fc in _channelbag(action, shape_keys).fcurves}
    keyed = {n for n in face_controls.ARKIT_NAMES if n in head_keys}
    assert len(keyed) == 51 and "tongueOut" not in keyed  # ICT has no tongue shape
    assert set(key_curves) == {f'key_blocks["{n}"].value' for n in keyed}
    for name in keyed:
        points = key_curves[f'key_blocks["{name}"].value'].keyframe_points
        assert [p.co[0] for p in points] == [float(START + f) for f in ROW_FRAMES]
        for p, fr in zip(points, take.frames):
            assert p.co[1] == pytest.approx(fr.weights[name], abs=VALUE_TOL), name
    bone_paths = {fc.data_path for fc in _channelbag(action, arm).fcurves}
    assert bone_paths == {f'pose.bones["{b}"].rotation_euler' for b in livelink.GROUP_BONES.values()}

    for fr in take.frames:  # playback gives the CSV's rotations in the FLAME frame
        scene.frame_set(START + fr.frame)
        for group, bone in livelink.GROUP_BONES.items():
            want = np.array(livelink.euler_to_matrix(*fr.rotations[group]))
            np.testing.assert_allclose(_flame_rotation(arm, bone), want, atol=ROT_TOL,
                                       err_msg=f"{bone} at {fr.frame}")
        assert shape_keys.key_blocks["jawOpen"].value == pytest.approx(
            fr.weights["jawOpen"], abs=VALUE_TOL)


def test_export_round_trip(ext, arkit_bundle: Path, tmp_path: Path) -> None:
    take = _take()
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    livelink.write_csv(src, take)
    arm, mesh_obj = import_head(arkit_bundle)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    scene.frame_set(START)
    assert bpy.ops.headrecon.import_livelink(filepath=str(src)) == {'FINISHED'}
    assert bpy.ops.headrecon.export_livelink(
        filepath=str(out), frame_start=START, frame_end=START + ROW_FRAMES[-1]) == {'FINISHED'}
    back = livelink.read_csv(out, 30.0)
    assert [f.frame for f in back.frames] == list(range(ROW_FRAMES[-1] + 1))
    assert out.read_text().splitlines()[1].startswith(livelink.format_timecode(START, 30))
    rows = {f.frame: f for f in back.frames}
    for fr in take.frames:
        got = rows[fr.frame]
        for name, v in fr.weights.items():
            want = 0.0 if name == "tongueOut" else v  # the head has no tongueOut key
            assert got.weights[name] == pytest.approx(want, abs=ROUND_TRIP_TOL), name
        for g in livelink.ROTATION_GROUPS:
            assert got.rotations[g] == pytest.approx(fr.rotations[g], abs=ROT_TOL), g


def test_import_errors_leave_the_scene_alone(ext, arkit_bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("Timecode,BlendShapeCount,JawOpen\n00:00:00:00,1,oops\n")
    arm, mesh_obj = import_head(arkit_bundle)
    with pytest.raises(RuntimeError, match=r"Row 2 of bad\.csv holds 'oops', not a number\."):
        bpy.ops.headrecon.import_livelink(filepath=str(bad))
    assert arm.animation_data is None or arm.animation_data.action is None
    assert len(bpy.data.actions) == 0
    with pytest.raises(RuntimeError, match="cannot be read"):
        bpy.ops.headrecon.import_livelink(filepath=str(tmp_path / "missing.csv"))


def test_expression_from_photo_keys_the_current_frame(ext, arkit_bundle: Path,
                                                      eval_dir: Path) -> None:
    """The real backend process (``python -m backend capture``, this checkout's Python) on a
    smiling photo; the result lands on the ARKit keys and the jaw / eye / neck bones at the
    current frame only."""
    prefs = bpy.context.preferences.addons[EXT_MODULE].preferences
    prefs.backend_command = sys.executable
    arm, mesh_obj = import_head(arkit_bundle)
    bpy.context.scene.frame_set(7)
    photo = eval_dir / "photos" / "expression_5.jpg"
    assert bpy.ops.headrecon.capture_photo(photo=str(photo)) == {'FINISHED'}
    shape_keys = mesh_obj.data.shape_keys
    curves = {fc.data_path: fc for fc in _channelbag(shape_keys.animation_data.action,
                                                     shape_keys).fcurves}
    smile = [curves[f'key_blocks["{n}"].value'].keyframe_points for n in
             ("mouthSmileLeft", "mouthSmileRight")]
    assert all([p.co[0] for p in pts] == [7.0] for pts in smile)
    assert np.mean([pts[0].co[1] for pts in smile]) > 0.4  # the smile is captured
    values = [kb.value for kb in shape_keys.key_blocks if kb.name in face_controls.ARKIT_NAMES]
    assert len(values) == 51 and min(values) >= 0.0 and max(values) <= 1.0
    bone_paths = {fc.data_path for fc in _channelbag(arm.animation_data.action, arm).fcurves}
    assert bone_paths == {f'pose.bones["{b}"].rotation_euler'
                          for b in (naming.NECK_BONE, naming.JAW_BONE, naming.EYE_L_BONE,
                                    naming.EYE_R_BONE)}


def test_capture_errors(ext, arkit_bundle: Path, tmp_path: Path) -> None:
    prefs = bpy.context.preferences.addons[EXT_MODULE].preferences
    prefs.backend_command = sys.executable
    import_head(arkit_bundle)
    with pytest.raises(RuntimeError, match="Photo not found"):
        bpy.ops.headrecon.capture_photo(photo=str(tmp_path / "none.jpg"))
    not_photo = tmp_path / "not_a_photo.jpg"
    not_photo.write_text("text")
    with pytest.raises(RuntimeError, match="not_a_photo.jpg"):  # the backend's one sentence
        bpy.ops.headrecon.capture_photo(photo=str(not_photo))
    assert len(bpy.data.actions) == 0


def test_capture_operators_registered_and_panel(ext) -> None:
    for op in ("capture_photo", "capture_video", "import_livelink", "export_livelink"):
        assert hasattr(bpy.ops.headrecon, op)
    assert hasattr(bpy.types, "VIEW3D_PT_headrecon_capture")
    wm = bpy.context.window_manager
    assert wm.headrecon_capture_smooth == pytest.approx(1.0)
    assert naming.NECK_BONE == livelink.GROUP_BONES["Head"]
