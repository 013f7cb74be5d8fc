"""Live Link Face CSV import / export operators in real Blender (bpy 5.0.1), the extension
installed from its zip (tests/blender_face_support.py), on a development bundle that
carries the 51 ARKit shapes of the assets and a mouth interior (mouth.npz: the head's
``tongueOut`` key, which drives the tongue's), so the head has all 52.

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


def _key_axes(arm: bpy.types.Object, mesh_obj: bpy.types.Object) -> livelink.Axes:
    """The installed extension's eyeLook / jawOpen key axes of this head."""
    module = sys.modules[f"{EXT_MODULE}.operators.import_livelink"]
    targets = livelink.shape_key_targets(mesh_obj.data.shape_keys.key_blocks.keys())
    return module.key_axes(arm, mesh_obj, targets)


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
    photo_keys = (naming.CAPTURED_KEY, *naming.BLINK_KEYS)
    assert len(keyed) == 52 and "tongueOut" in keyed  # ICT's 51 + the mouth's tongueOut
    assert set(key_curves) == {f'key_blocks["{n}"].value' for n in keyed | set(photo_keys)}
    for name in keyed:
        points = key_curves[f'key_blocks["{name}"].value'].keyframe_points
        assert [p.co[0] for p in points] == [float(START + f) for f in ROW_FRAMES]
        for p, fr in zip(points, take.frames):  # JawOpen opens the jaw bone, not the key
            want = 0.0 if name == livelink.JAW_OPEN_KEY else fr.weights[name]
            assert p.co[1] == pytest.approx(want, abs=VALUE_TOL), name
    for name in photo_keys:  # the take replaces the photo's expression
        points = key_curves[f'key_blocks["{name}"].value'].keyframe_points
        assert [(p.co[0], p.co[1]) for p in points] == [(START, 0.0), (START + ROW_FRAMES[-1], 0.0)]
    bone_paths = {fc.data_path for fc in _channelbag(action, arm).fcurves}
    assert bone_paths == {f'pose.bones["{b}"].rotation_euler'
                          for b in (*livelink.GROUP_BONES.values(), naming.JAW_BONE)}

    axes = _key_axes(arm, mesh_obj)
    assert set(axes) == set(livelink.KEY_BONES)
    for fr in take.frames:  # playback gives the CSV's rotations in the FLAME frame
        scene.frame_set(START + fr.frame)
        np.testing.assert_allclose(_flame_rotation(arm, naming.NECK_BONE),
                                   livelink.euler_to_matrix(*fr.rotations["Head"]), atol=ROT_TOL)
        for group in ("LeftEye", "RightEye"):  # eye bone after the eyeLook keys = the CSV gaze
            bone = livelink.matrix_to_axis_angle(_flame_rotation(
                arm, livelink.GROUP_BONES[group]).tolist())
            assert livelink.eye_gaze(bone, fr.weights, axes, group) == pytest.approx(
                fr.rotations[group], abs=ROT_TOL), group
        np.testing.assert_allclose(
            _flame_rotation(arm, naming.JAW_BONE),
            livelink.axis_angle_to_matrix(livelink.jaw_bone_rotation(fr.weights["jawOpen"], axes)),
            atol=ROT_TOL)


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
            want = v  # all 52, tongueOut included
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
    assert np.mean([pts[0].co[1] for pts in smile]) > 0.3  # the smile is captured (transfer)
    values = [kb.value for kb in shape_keys.key_blocks if kb.name in face_controls.ARKIT_NAMES]
    assert len(values) == 52 and min(values) >= 0.0 and max(values) <= 1.0
    for name in (naming.CAPTURED_KEY, *naming.BLINK_KEYS):  # replaces the photo's expression
        points = curves[f'key_blocks["{name}"].value'].keyframe_points
        assert [(p.co[0], p.co[1]) for p in points] == [(7.0, 0.0)], name
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


# ---------------------------------------------------------------- what the mesh shows (issue 13)
GAZE_TOL_DEG = 1.5  # eyeLook keys are linear blends of a rotation (chord, not arc)
NEUTRAL_TOL_M = 0.5e-3
JAW_ROUND_TRIP_TOL_M = 1e-3


def _evaluated_flame(mesh_obj: bpy.types.Object) -> np.ndarray:
    """(V, 3) float64 vertices of the evaluated mesh (shape keys, armature), FLAME frame."""
    from headrecon_addon import rig

    depsgraph = bpy.context.evaluated_depsgraph_get()
    depsgraph.update()
    ev = mesh_obj.evaluated_get(depsgraph)
    co = np.empty(len(ev.data.vertices) * 3, np.float32)
    ev.data.vertices.foreach_get("co", co)
    return co.reshape(-1, 3).astype(np.float64) @ rig.FLAME_TO_BLENDER


def _basis_flame(mesh_obj: bpy.types.Object) -> np.ndarray:
    """(V, 3) float64 Basis key (the neutral head: identity only), FLAME frame."""
    from headrecon_addon import rig

    kb = mesh_obj.data.shape_keys.key_blocks[naming.BASIS_KEY]
    co = np.empty(len(kb.data) * 3, np.float32)
    kb.data.foreach_get("co", co)
    return co.reshape(-1, 3).astype(np.float64) @ rig.FLAME_TO_BLENDER


def _gaze_deg(rest: np.ndarray, now: np.ndarray) -> tuple[float, float]:
    """(yaw, pitch) in degrees of an eyeball's forward (+Z at rest) direction: the best
    rotation (Kabsch, centroids removed) from its rest vertices to its evaluated ones
    applied to +Z. Yaw > 0 towards the subject's left, pitch > 0 down (livelink convention)."""
    p, q = rest - rest.mean(0), now - now.mean(0)
    u, _, vt = np.linalg.svd(q.T @ p)
    r = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    f = r[:, 2]
    return float(np.degrees(np.arctan2(f[0], f[2]))), float(np.degrees(np.arcsin(-f[1])))


def _eyeballs(bundle: Path) -> dict[str, np.ndarray]:
    """Rotation group -> vertex ids of that eyeball (FLAME eye joint weight > 0.5)."""
    with np.load(bundle / "rig.npz") as data:
        w, names = data["weights"], [str(n) for n in data["joint_names"]]
    return {g: np.flatnonzero(w[:, names.index(j)] > 0.5)
            for g, j in (("LeftEye", "eye_L"), ("RightEye", "eye_R"))}


def _row(frame: int, weights: dict[str, float] | None = None,
         rotations: dict[str, tuple[float, float, float]] | None = None) -> livelink.LiveLinkFrame:
    """A CSV row: every blend shape 0 and every rotation 0 except the given ones."""
    w = {livelink.arkit_name(c): 0.0 for c in livelink.BLENDSHAPES}
    r = {g: (0.0, 0.0, 0.0) for g in livelink.ROTATION_GROUPS}
    return livelink.LiveLinkFrame(frame, w | (weights or {}), r | (rotations or {}))


def test_gaze_is_driven_once(ext, arkit_bundle: Path, tmp_path: Path) -> None:
    """The CSV's eye angles are the gaze the eyeballs show, whether the eyeLook keys carry it
    (frame 0: keys and angles agree, as in the app's files) or only the angles (frame 1)."""
    yaw = 0.35  # rad, both eyes towards the subject's left: left eye out, right eye in
    rows = [_row(0, {"eyeLookOutLeft": 1.0, "eyeLookInRight": 1.0},
                 {"LeftEye": (yaw, 0.0, 0.0), "RightEye": (yaw, 0.0, 0.0)}),
            _row(1, {}, {"LeftEye": (-0.2, 0.15, 0.0), "RightEye": (-0.2, 0.15, 0.0)})]
    csv_path = tmp_path / "gaze.csv"
    livelink.write_csv(csv_path, livelink.LiveLinkTake(30.0, rows))
    arm, mesh_obj = import_head(arkit_bundle)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    scene.frame_set(START)
    assert bpy.ops.headrecon.import_livelink(filepath=str(csv_path)) == {'FINISHED'}
    rest, eyes = _basis_flame(mesh_obj), _eyeballs(arkit_bundle)
    for fr in rows:
        scene.frame_set(START + fr.frame)
        now = _evaluated_flame(mesh_obj)
        for group, ids in eyes.items():
            got = _gaze_deg(rest[ids], now[ids])
            want = np.degrees(fr.rotations[group][:2])
            print(f"frame {fr.frame} {group}: gaze {got[0]:.2f}, {got[1]:.2f} deg "
                  f"(CSV {want[0]:.2f}, {want[1]:.2f})")
            np.testing.assert_allclose(got, want, atol=GAZE_TOL_DEG, err_msg=f"{group} {fr.frame}")


def test_neutral_frame_gives_the_neutral_head(ext, arkit_bundle: Path, tmp_path: Path) -> None:
    """A row of zeros shows the identity's neutral head although the import left the photo's
    expression (Captured = 1, fitted eyelids, fitted jaw) on the head."""
    csv_path = tmp_path / "neutral.csv"
    livelink.write_csv(csv_path, livelink.LiveLinkTake(30.0, [_row(0), _row(3)]))
    arm, mesh_obj = import_head(arkit_bundle)
    scene = bpy.context.scene
    scene.frame_set(START)
    neutral = _basis_flame(mesh_obj)
    photo_err = np.linalg.norm(_evaluated_flame(mesh_obj) - neutral, axis=1).max()
    assert photo_err > 10 * NEUTRAL_TOL_M  # the imported head shows the photo's expression
    assert bpy.ops.headrecon.import_livelink(filepath=str(csv_path)) == {'FINISHED'}
    for f in (START, START + 2):
        scene.frame_set(f)
        err = np.linalg.norm(_evaluated_flame(mesh_obj) - neutral, axis=1).max()
        print(f"frame {f}: neutral row {err * 1e3:.4f} mm from the neutral head "
              f"(photo's expression {photo_err * 1e3:.2f} mm)")
        assert err < NEUTRAL_TOL_M


def test_jaw_open_preset_round_trip(ext, arkit_bundle: Path, tmp_path: Path) -> None:
    """Jaw Open preset (jaw bone) -> export -> neutral head -> import: the same mesh."""
    arm, mesh_obj = import_head(arkit_bundle)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    scene.frame_set(START)
    assert bpy.ops.headrecon.apply_preset(preset='JAW_OPEN', mode='REPLACE') == {'FINISHED'}
    want = _evaluated_flame(mesh_obj)
    opened = np.linalg.norm(want - _basis_flame(mesh_obj), axis=1).max()
    csv_path = tmp_path / "jaw.csv"
    assert bpy.ops.headrecon.export_livelink(filepath=str(csv_path), frame_start=START,
                                             frame_end=START) == {'FINISHED'}
    row = livelink.read_csv(csv_path, 30.0).frames[0]
    unit = np.linalg.norm(_key_axes(arm, mesh_obj)["jawOpen"])
    assert row.weights["jawOpen"] == pytest.approx(0.35 / unit, rel=1e-4)  # preset: 0.35 rad
    assert bpy.ops.headrecon.reset_expression(target='NEUTRAL') == {'FINISHED'}
    assert bpy.ops.headrecon.import_livelink(filepath=str(csv_path)) == {'FINISHED'}
    scene.frame_set(START)
    err = np.linalg.norm(_evaluated_flame(mesh_obj) - want, axis=1).max()
    print(f"JawOpen {row.weights['jawOpen']:.4f} (jawOpen key = {np.degrees(unit):.2f} deg of "
          f"jaw); round trip {err * 1e3:.4f} mm (mouth opened {opened * 1e3:.1f} mm)")
    assert opened > 0.01
    assert err < JAW_ROUND_TRIP_TOL_M
