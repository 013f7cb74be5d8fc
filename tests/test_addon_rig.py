"""Rig math of the extension core (headrecon_addon.rig, naming): plain numpy, no bpy.

Reference rotations come from scipy (independent of the quaternion formulas under test).
Tolerances: 1e-12 for float64 algebra.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from headrecon_addon import naming, rig


def _eval(expression: str, quat_wxyz: np.ndarray) -> float:
    w, x, y, z = (float(c) for c in quat_wxyz)
    return eval(expression, {"__builtins__": {}}, {"w": w, "x": x, "y": y, "z": z})  # noqa: S307


@pytest.fixture(scope="module")
def dev_rig(dev_model_path):
    data = np.load(dev_model_path)
    v = data["v_template"].astype(np.float64)
    joints = data["J_regressor"] @ v
    return v, joints, data["weights"]


def test_flame_to_blender_maps_axes():
    pts = np.array([[1.0, 2.0, 3.0], [-4.0, 5.0, -6.0]])
    np.testing.assert_allclose(rig.flame_to_blender(pts), [[1, -3, 2], [-4, 6, 5]])
    np.testing.assert_allclose(rig.FLAME_TO_BLENDER @ pts.T, rig.flame_to_blender(pts).T)
    assert np.isclose(np.linalg.det(rig.FLAME_TO_BLENDER), 1.0)  # a rotation, not a mirror


def test_axis_angle_matches_scipy():
    rng = np.random.default_rng(0)
    rv = rng.normal(0, 1.0, (20, 3))
    rv[0] = 0.0
    np.testing.assert_allclose(rig.axis_angle_to_matrix(rv), Rotation.from_rotvec(rv).as_matrix(),
                               atol=1e-12)


@pytest.mark.parametrize("frame", [rig.FRAME_UP, rig.FRAME_FORWARD])
def test_entry_expressions_give_flame_pose_feature(frame):
    """Every expression equals (P R_local P^T - I)[row, col] for random local rotations."""
    rng = np.random.default_rng(1)
    for rot in Rotation.from_rotvec(rng.normal(0, 0.8, (25, 3))):
        x, y, z, w = rot.as_quat()  # scipy order
        expected = frame @ rot.as_matrix() @ frame.T - np.eye(3)
        for row in range(3):
            for col in range(3):
                expr, variables = rig.entry_expression(frame, row, col)
                got = _eval(expr, np.array([w, x, y, z]))
                assert got == pytest.approx(expected[row, col], abs=1e-12)
                # the expression needs only the variables it declares
                assert {c for c in expr if c in "wxyz"} == set(variables)
                # q and -q are the same rotation
                assert _eval(expr, -np.array([w, x, y, z])) == pytest.approx(got, abs=1e-12)


def test_entry_expression_rejects_non_permutation():
    with pytest.raises(ValueError, match="signed permutation"):
        rig.entry_expression(Rotation.from_rotvec([0.1, 0.2, 0.3]).as_matrix(), 0, 0)


def test_bone_layout_frames_parents_and_pivots(dev_rig):
    v, joints, weights = dev_rig
    bones = rig.bone_layout(joints, v, weights)
    assert [b.name for b in bones] == list(naming.BONE_NAMES)
    by_name = {b.name: b for b in bones}
    for b in bones:
        assert np.allclose(b.frame.T @ b.frame, np.eye(3)) and np.isclose(np.linalg.det(b.frame), 1.0)
        axis = (b.tail - b.head) / np.linalg.norm(b.tail - b.head)
        np.testing.assert_allclose(axis, b.frame[:, 1], atol=1e-12)  # tail along local Y
        np.testing.assert_allclose(b.frame[:, 0], [1, 0, 0])  # local X = FLAME X everywhere
        if b.joint is not None:  # the pivot of a FLAME joint's bone is the joint
            np.testing.assert_allclose(b.head, joints[naming.FLAME_JOINTS.index(b.joint)], atol=1e-12)
        assert b.parent is None or naming.BONE_NAMES.index(b.parent) < naming.BONE_NAMES.index(b.name)
        assert np.linalg.norm(b.tail - b.head) >= rig.MIN_BONE_LENGTH
    head = by_name[naming.HEAD_BONE]
    assert head.connected and np.allclose(head.head, by_name[naming.NECK_BONE].tail)
    assert by_name[naming.JAW_BONE].parent == naming.HEAD_BONE
    assert by_name[naming.EYE_L_BONE].head[0] > 0 > by_name[naming.EYE_R_BONE].head[0]


def test_bone_weights_split_neck_and_keep_lbs(dev_rig):
    _, _, weights = dev_rig
    bw = rig.bone_weights(weights)
    assert list(bw) == list(naming.BONE_NAMES)
    total = sum(w.astype(np.float64) for w in bw.values())
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
    np.testing.assert_allclose(bw["neck"] + bw["head"], weights[:, 1], atol=1e-6)
    # the skull (no root weight) belongs to 'head', the neck base (root weight >= tau) to 'neck'
    skull = (weights[:, 0] == 0) & (weights[:, 1] > 0.5)
    base = (weights[:, 0] >= rig.HEAD_SPLIT_TAU) & (weights[:, 1] > 0)
    assert skull.any() and base.any()
    np.testing.assert_allclose(bw["head"][skull], weights[skull, 1], atol=1e-6)
    np.testing.assert_allclose(bw["head"][base], 0.0, atol=1e-6)


def test_pose_rotations_map_back_to_flame(dev_rig):
    v, joints, weights = dev_rig
    bones = rig.bone_layout(joints, v, weights)
    pose = np.random.default_rng(2).normal(0, 0.3, (5, 3))
    local = rig.pose_rotations(pose, bones)
    np.testing.assert_allclose(local[naming.HEAD_BONE], np.eye(3))
    for b in bones:
        if b.joint is not None:
            flame = b.frame @ local[b.name] @ b.frame.T
            expected = Rotation.from_rotvec(pose[naming.FLAME_JOINTS.index(b.joint)]).as_matrix()
            np.testing.assert_allclose(flame, expected, atol=1e-12)
    # jaw: positive FLAME X rotation (mouth opening) is positive local X rotation
    jaw = rig.pose_rotations(np.array([[0, 0, 0], [0, 0, 0], [0.3, 0, 0], [0, 0, 0], [0, 0, 0]]),
                             bones)[naming.JAW_BONE]
    np.testing.assert_allclose(Rotation.from_matrix(jaw).as_rotvec(), [0.3, 0, 0], atol=1e-12)


def test_corrective_drivers_cover_neck_and_jaw(dev_rig):
    v, joints, weights = dev_rig
    drivers = rig.corrective_drivers(rig.bone_layout(joints, v, weights))
    assert [d.key for d in drivers] == naming.corrective_keys()
    assert len(drivers) == 18
    assert [d.feature for d in drivers] == list(range(0, 18))  # neck rows 0..8, jaw rows 9..17
    assert {d.bone for d in drivers} == {naming.NECK_BONE, naming.JAW_BONE}


def test_naming_tables():
    names = naming.shape_key_names(50, ("jawOpen",))
    assert names[0] == "Basis" and names[1] == "Exp000" and names[50] == "Exp049"
    assert names[51:54] == ["EyeBlink_L", "EyeBlink_R", "Captured"]
    assert names[54] == "jawOpen" and names[55] == "PC_neck_00" and names[-1] == "PC_jaw_22"
    assert len(names) == len(set(names)) == 1 + 50 + 3 + 1 + 18
    assert naming.object_names("me")["collection"] == "me"
    with pytest.raises(ValueError):
        naming.expression_key(1000)
    with pytest.raises(ValueError):
        naming.corrective_key("root", 0, 0)
