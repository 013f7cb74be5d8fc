"""Plain-pytest tests of headrecon_addon.presets and headrecon_addon.face_controls (no bpy)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from backend.model.arkit import ARKIT_NAMES as BACKEND_ARKIT_NAMES
from backend.files.bundle import write_dev_bundle
from headrecon_addon import face_controls, naming, presets
from headrecon_addon.face_controls import ARKIT_NAMES, CapturedStateError

N_EXPR = 50
ALL_KEYS = naming.shape_key_names(N_EXPR, ARKIT_NAMES)
NO_ARKIT_KEYS = naming.shape_key_names(N_EXPR)


@pytest.fixture(scope="module")
def dev_bundle(tmp_path_factory: pytest.TempPathFactory, assets_dir: Path) -> Path:
    """A development bundle written by the backend from the FLAME dev model (seed 3)."""
    out = tmp_path_factory.mktemp("bundle") / "dev"
    write_dev_bundle(out, seed=3, assets=assets_dir)
    return out


def test_arkit_names_match_backend_and_assets(assets_dir: Path) -> None:
    assert ARKIT_NAMES == BACKEND_ARKIT_NAMES
    with np.load(assets_dir / "expressions" / "arkit51_on_flame.npz") as data:
        asset_names = {str(n) for n in data["names"]}
    assert asset_names <= set(ARKIT_NAMES)
    assert len(asset_names) == 51


def test_presets_use_only_artist_controls() -> None:
    allowed_keys = set(ARKIT_NAMES) | set(naming.BLINK_KEYS)
    for preset in presets.PRESETS:
        assert {k for k, _ in preset.keys} <= allowed_keys, preset.id
        assert {b for b, _ in preset.bones} <= set(face_controls.EXPRESSION_BONES), preset.id
        assert all(0.0 < v <= 1.0 for _, v in preset.keys), preset.id
        assert len({k for k, _ in preset.keys}) == len(preset.keys), preset.id
    ids = [p.id for p in presets.PRESETS]
    for required in ("NEUTRAL", "SMILE", "SURPRISE", "ANGER", "BLINK", "JAW_OPEN"):
        assert required in ids
    assert [item[0] for item in presets.enum_items()] == ids


def test_preset_plan_full_head_scales_by_strength() -> None:
    plan = presets.preset_plan("SURPRISE", ALL_KEYS, strength=0.5)
    assert plan.missing == ()
    assert plan.keys == pytest.approx({"browInnerUp": 0.5, "browOuterUpLeft": 0.4,
                                       "browOuterUpRight": 0.4, "eyeWideLeft": 0.3,
                                       "eyeWideRight": 0.3}, abs=1e-12)
    assert plan.bones[naming.JAW_BONE] == pytest.approx((0.075, 0.0, 0.0), abs=1e-12)


def test_preset_plan_skips_missing_arkit_keys() -> None:
    smile = presets.preset_plan("SMILE", NO_ARKIT_KEYS)
    assert smile.keys == {}
    assert smile.missing == ("mouthSmileLeft", "mouthSmileRight", "cheekSquintLeft",
                             "cheekSquintRight", "eyeSquintLeft", "eyeSquintRight")
    blink = presets.preset_plan("BLINK", NO_ARKIT_KEYS)
    assert blink.keys == {naming.BLINK_KEYS[0]: 1.0, naming.BLINK_KEYS[1]: 1.0}
    assert blink.missing == ()
    jaw = presets.preset_plan("JAW_OPEN", NO_ARKIT_KEYS)
    assert jaw.keys == {} and jaw.missing == ()
    assert jaw.bones == {naming.JAW_BONE: pytest.approx((0.35, 0.0, 0.0), abs=1e-12)}
    partial = presets.preset_plan("PUCKER", NO_ARKIT_KEYS + ["mouthPucker"])
    assert partial.keys == {"mouthPucker": pytest.approx(0.9)}
    assert partial.missing == ("mouthFunnel",)


def test_neutral_preset_and_unknown_presets() -> None:
    plan = presets.preset_plan("NEUTRAL", ALL_KEYS)
    assert plan.keys == {} and plan.bones == {} and plan.missing == ()
    with pytest.raises(KeyError, match="unknown preset"):
        presets.preset_plan("GRIN", ALL_KEYS)


def test_face_keys_exclude_basis_and_correctives() -> None:
    keys = face_controls.face_keys(ALL_KEYS)
    assert naming.BASIS_KEY not in keys
    assert not set(naming.corrective_keys()) & set(keys)
    assert len(keys) == N_EXPR + 2 + 1 + len(ARKIT_NAMES)
    assert face_controls.is_face_key("PC_jaw_22") is False
    assert face_controls.is_face_key("PC_eye_L_00") is True  # not a corrective the add-on makes


def test_key_groups_cover_every_face_key() -> None:
    groups = {name: face_controls.key_group(name) for name in face_controls.face_keys(ALL_KEYS)}
    assert {groups[k] for k in ARKIT_NAMES} == {"BROWS", "EYES", "CHEEKS_NOSE", "MOUTH", "JAW",
                                                "TONGUE"}
    assert groups["eyeBlinkLeft"] == "EYES" and groups["noseSneerRight"] == "CHEEKS_NOSE"
    assert groups[naming.CAPTURED_KEY] == "CAPTURED"
    assert all(groups[k] == "CAPTURED" for k in naming.BLINK_KEYS)
    assert all(groups[naming.expression_key(k)] == "PCA" for k in range(N_EXPR))
    assert face_controls.key_group("MyCustomKey") == "OTHER"
    order = [gid for gid, _ in face_controls.KEY_GROUPS]
    listed = face_controls.grouped_keys(ALL_KEYS + ["MyCustomKey"])
    assert [gid for gid, _, _ in listed] == order
    assert sum(len(names) for _, _, names in listed) == len(groups) + 1


def test_grouped_keys_filter() -> None:
    listed = face_controls.grouped_keys(ALL_KEYS, "smile")
    assert listed == [("MOUTH", "Mouth", ["mouthSmileLeft", "mouthSmileRight"])]
    listed = face_controls.grouped_keys(ALL_KEYS, "  BROW  left ")
    assert listed == [("BROWS", "Brows", ["browDownLeft", "browOuterUpLeft"])]
    assert face_controls.grouped_keys(ALL_KEYS, "zzz") == []
    assert face_controls.grouped_keys(ALL_KEYS, "PC_jaw") == []  # correctives are never listed


def test_load_captured_reads_the_bundle(dev_bundle: Path) -> None:
    captured = face_controls.load_captured(dev_bundle)
    with np.load(dev_bundle / "rig.npz") as data:
        np.testing.assert_allclose(captured.pose, data["pose"], rtol=0, atol=1e-7)
        np.testing.assert_allclose(captured.eyelids, data["eyelids"], rtol=0, atol=1e-7)
    assert np.abs(captured.pose[2]).max() > 0.01  # the dev bundle opens the jaw

    rotations = face_controls.captured_joint_rotations(captured)
    assert set(rotations) == set(naming.BONE_NAMES)
    np.testing.assert_array_equal(rotations[naming.ROOT_BONE], np.zeros(3))
    np.testing.assert_array_equal(rotations[naming.HEAD_BONE], np.zeros(3))
    np.testing.assert_allclose(rotations[naming.JAW_BONE], captured.pose[2], rtol=0, atol=0)
    np.testing.assert_allclose(rotations[naming.EYE_R_BONE], captured.pose[4], rtol=0, atol=0)

    values = face_controls.reset_key_values(ALL_KEYS, "CAPTURED", captured)
    assert values[naming.CAPTURED_KEY] == 1.0
    assert values[naming.BLINK_KEYS[0]] == pytest.approx(captured.eyelids[0], abs=1e-12)
    assert values[naming.BLINK_KEYS[1]] == pytest.approx(captured.eyelids[1], abs=1e-12)
    assert all(v == 0.0 for k, v in values.items()
               if k not in (naming.CAPTURED_KEY, *naming.BLINK_KEYS))
    neutral = face_controls.reset_key_values(ALL_KEYS, "NEUTRAL")
    assert set(neutral) == set(values) and not any(neutral.values())
    with pytest.raises(ValueError, match="captured state"):
        face_controls.reset_key_values(ALL_KEYS, "CAPTURED")


def test_load_captured_errors(tmp_path: Path, dev_bundle: Path) -> None:
    with pytest.raises(CapturedStateError, match="is gone"):
        face_controls.load_captured(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "rig.npz").write_bytes(b"not a zip file")
    with pytest.raises(CapturedStateError, match="cannot be read"):
        face_controls.load_captured(broken)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    np.savez(wrong / "rig.npz", pose=np.zeros((4, 3)))
    with pytest.raises(CapturedStateError, match="expected"):
        face_controls.load_captured(wrong)
    copy = tmp_path / "copy"
    shutil.copytree(dev_bundle, copy)
    with np.load(copy / "rig.npz") as data:
        arrays = {k: data[k] for k in data.files if k != "eyelids"}
    np.savez(copy / "rig.npz", **arrays)  # an older bundle without eyelids
    np.testing.assert_array_equal(face_controls.load_captured(copy).eyelids, np.zeros(2))


def test_action_names() -> None:
    names = naming.object_names("portrait_01")
    assert face_controls.head_stem(names["armature"]) == "portrait_01"
    assert face_controls.action_name(names["armature"]) == "portrait_01_FaceAnim"
    assert face_controls.action_name("portrait_01_rig.001") == "portrait_01_rig.001_FaceAnim"
    assert face_controls.head_stem("_rig") == "_rig"
