"""Plain-pytest tests of headrecon_addon.export_profiles (no bpy)."""

from __future__ import annotations

import pytest

from headrecon_addon import export_profiles as ep
from headrecon_addon import naming
from headrecon_addon.face_controls import ARKIT_NAMES

ALL_KEYS = naming.shape_key_names(50, ARKIT_NAMES)


@pytest.mark.parametrize("name, expected_words", [
    ("eyeBlinkLeft", ["eye", "Blink", "Left"]),
    ("PC_jaw_01", ["PC", "jaw", "01"]),
    ("eye.L", ["eye", "Left"]),
    ("Exp007", ["Exp", "007"]),
    ("FlameBlink_R", ["Flame", "Blink", "Right"]),
    ("mouthRollLower", ["mouth", "Roll", "Lower"]),
])
def test_words(name: str, expected_words: list[str]) -> None:
    assert ep.words(name) == expected_words


def test_case_styles() -> None:
    assert ep.camel_case("PC_jaw_01") == "pcJaw01"
    assert ep.pascal_case("PC_jaw_01") == "PcJaw01"
    assert ep.camel_case("eye.R") == "eyeRight"
    assert ep.pascal_case("eye.R") == "EyeRight"
    assert ep.pascal_case("jawOpen") == "JawOpen"
    assert ep.camel_case("Exp042") == "exp042"
    # ARKit names are already camelCase: camel_case is the identity on them and
    # pascal_case only capitalises the first letter.
    for name in ARKIT_NAMES:
        assert ep.camel_case(name) == name
        assert ep.pascal_case(name) == name[0].upper() + name[1:]


def test_none_profile_renames_nothing() -> None:
    m = ep.rename_map("NONE", ALL_KEYS, naming.BONE_NAMES)
    assert m.keys == {} and m.bones == {}


def test_unreal_profile() -> None:
    m = ep.rename_map("UNREAL", ALL_KEYS + ["MyKey_v2"], naming.BONE_NAMES)
    assert naming.BASIS_KEY not in m.keys and "MyKey_v2" not in m.keys
    assert m.keys["jawOpen"] == "JawOpen" and m.keys["eyeBlinkLeft"] == "EyeBlinkLeft"
    assert m.keys[naming.BLINK_KEYS[0]] == "FlameBlinkLeft"
    assert m.keys[naming.BLINK_KEYS[1]] == "FlameBlinkRight"
    assert "Exp000" not in m.keys and naming.CAPTURED_KEY not in m.keys  # already PascalCase
    assert m.keys["PC_neck_12"] == "PcNeck12"
    assert m.bones == {"root": "Root", "neck": "Neck", "head": "Head", "jaw": "Jaw",
                       "eye.L": "EyeLeft", "eye.R": "EyeRight"}
    final = [m.keys.get(k, k) for k in ALL_KEYS]
    assert len(set(final)) == len(final)


def test_arkit_profile() -> None:
    m = ep.rename_map("ARKIT", ALL_KEYS, naming.BONE_NAMES)
    assert not set(ARKIT_NAMES) & set(m.keys)  # ARKit keys keep ARKit's spelling
    assert m.keys["Exp013"] == "exp013" and m.keys[naming.CAPTURED_KEY] == "captured"
    assert m.keys[naming.BLINK_KEYS[0]] == "flameBlinkLeft"
    assert m.keys["PC_jaw_00"] == "pcJaw00"
    assert m.bones == {"eye.L": "eyeLeft", "eye.R": "eyeRight"}


def test_rename_collisions_and_unknown_profile() -> None:
    with pytest.raises(ValueError, match="same name.*JawOpen"):
        ep.rename_map("UNREAL", ALL_KEYS + ["JawOpen"], naming.BONE_NAMES)
    with pytest.raises(ValueError, match="two bones"):
        ep.rename_map("UNREAL", ALL_KEYS, list(naming.BONE_NAMES) + ["Jaw"])
    with pytest.raises(KeyError, match="unknown rename profile"):
        ep.rename_map("MAYA", ALL_KEYS, naming.BONE_NAMES)


def test_presets_table() -> None:
    assert [p.id for p in ep.EXPORT_PRESETS] == ["GLB", "FBX_UNREAL", "FBX_UNITY"]
    for preset in ep.EXPORT_PRESETS:
        assert preset.rename in ep.RENAME_PROFILES_BY_ID
        assert preset.settings["use_selection"] is True
        assert "filepath" not in preset.settings
    gltf = ep.EXPORT_PRESETS_BY_ID["GLB"].settings
    assert gltf["export_format"] == 'GLB' and gltf["export_morph"] and gltf["export_skins"]
    unreal, unity = (ep.EXPORT_PRESETS_BY_ID[i].settings for i in ("FBX_UNREAL", "FBX_UNITY"))
    assert unreal["add_leaf_bones"] is False and unity["add_leaf_bones"] is False
    assert unreal["apply_scale_options"] != unity["apply_scale_options"]
    with pytest.raises(TypeError):
        gltf["export_format"] = 'GLTF_SEPARATE'  # the tables are read-only


def test_export_path() -> None:
    assert ep.export_path("/tmp/head", "GLB") == "/tmp/head.glb"
    assert ep.export_path("/tmp/head.FBX", "GLB") == "/tmp/head.glb"
    assert ep.export_path("/tmp/head.glb", "FBX_UNITY") == "/tmp/head.fbx"
    assert ep.export_path("/tmp/head.v2.fbx", "FBX_UNREAL") == "/tmp/head.v2.fbx"


def test_keyed_frame_range_covers_every_action_in_whole_frames():
    from headrecon_addon.export_profiles import keyed_frame_range

    assert keyed_frame_range([]) is None
    assert keyed_frame_range([(1.0, 10.0)]) == (1, 10)
    assert keyed_frame_range([(1.0, 10.0), (-2.5, 4.2)]) == (-3, 10)
    assert keyed_frame_range([(5.0, 5.0)]) == (5, 5)
