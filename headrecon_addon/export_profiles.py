"""Export presets and rename profiles (pure Python).

Export presets (the settings of Blender's own exporters for one head):

* ``GLB``: glTF binary. Morph targets with their names (``mesh.extras.targetNames``) and
  normals, tangents (the material's normal map is tangent-space, so viewers must not guess
  them), the skin (the skinned mesh node is written beside the armature node, not under it:
  glTF ignores a skinned node's own transform, and importers then add no extra Empty), every action of the head (one glTF animation per action: pose-bone
  rotations and morph weights of the same action end up in one animation), Y-up.
* ``FBX_UNREAL``: FBX for Unreal Engine. Armature + mesh only, no leaf bones, Blender's
  bone axes kept (primary Y, secondary X: a bone's local X stays the nod / jaw-open axis in
  the engine as in Blender), -Z forward / Y up (the FBX default the Unreal importer
  converts), units applied to the object transforms (``FBX_SCALE_NONE``: metres become
  Unreal's centimetres), face smoothing (Unreal warns without smoothing groups), the active
  action baked over the keyed frame range of the head's action(s) into one take named after
  the action (the exporter names the take after the scene and bakes the scene's range; both
  are set for the export only). The armature object is written as ``Armature``, the one root-node name
  Unreal's FBX importer skips, so the skeleton's root is the ``root`` bone instead of an
  extra bone named after the object.
* ``FBX_UNITY``: FBX for Unity. As Unreal, but all scaling in the FBX unit
  (``FBX_SCALE_ALL``) so Unity imports the head at scale 1, and the object keeps its name.

Rename profiles (applied to the file only; the Blender names are restored after export):

* ``NONE``: Blender names (ARKit keys camelCase as the bundle has them).
* ``ARKIT``: camelCase everywhere: ARKit keys as ARKit spells them (``jawOpen``), PCA keys
  ``exp000``, eyelid keys ``flameBlinkLeft``, ``captured``, correctives ``pcJaw01``,
  bones ``root neck head jaw eyeLeft eyeRight``.
* ``UNREAL``: PascalCase, as Unreal's Live Link Face curves (``JawOpen``, ``EyeBlinkLeft``):
  ``Exp000``, ``FlameBlinkLeft``, ``Captured``, ``PcJaw01``, bones
  ``Root Neck Head Jaw EyeLeft EyeRight``.

The FLAME eyelid keys are spelled ``FlameBlink*`` so they never collide with ARKit's
``eyeBlinkLeft/Right``. Names outside these families (keys a user added) are kept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from . import naming
from .face_controls import ARKIT_NAMES, CORRECTIVE_KEY_RE, EXPRESSION_KEY_RE

UNREAL_ROOT_NODE = "Armature"


@dataclass(frozen=True)
class RenameProfile:
    """How names are spelled in an exported file.

    Attributes:
        id, label, description: enum item.
        style: ``None`` (keep names), ``"camel"`` or ``"pascal"``.
    """

    id: str
    label: str
    description: str
    style: str | None


@dataclass(frozen=True)
class ExportPreset:
    """Settings of one export.

    Attributes:
        id, label, description: enum item.
        exporter: ``"gltf"`` (bpy.ops.export_scene.gltf) or ``"fbx"`` (bpy.ops.export_scene.fbx).
        extension: file extension with the dot.
        rename: default rename profile id.
        armature_node_name: name the armature object gets in the file, or None (its own).
        settings: keyword arguments of the exporter operator (without ``filepath``).
        mesh_beside_armature: write the mesh unparented from the armature (glTF).
        take_from_action: bake the head action's keyed frame range into a take named after
            the action (FBX).
    """

    id: str
    label: str
    description: str
    exporter: str
    extension: str
    rename: str
    armature_node_name: str | None
    settings: Mapping[str, Any] = field(default_factory=dict)
    mesh_beside_armature: bool = False
    take_from_action: bool = False


@dataclass(frozen=True)
class RenameMap:
    """Old name -> new name of the shape keys and bones that change (unchanged ones left out)."""

    keys: dict[str, str]
    bones: dict[str, str]


RENAME_PROFILES: tuple[RenameProfile, ...] = (
    RenameProfile("NONE", "Blender Names", "Keep the names as they are in Blender", None),
    RenameProfile("ARKIT", "ARKit camelCase", "camelCase names: ARKit keys as ARKit spells "
                  "them (jawOpen), exp000, flameBlinkLeft, eyeLeft", "camel"),
    RenameProfile("UNREAL", "Unreal PascalCase", "PascalCase names as Unreal's Live Link "
                  "curves (JawOpen), Exp000, FlameBlinkLeft, EyeLeft", "pascal"),
)
RENAME_PROFILES_BY_ID: dict[str, RenameProfile] = {p.id: p for p in RENAME_PROFILES}

_GLTF_SETTINGS: dict[str, Any] = {
    "export_format": 'GLB',
    "use_selection": True,
    "export_apply": False,  # applying modifiers would drop the shape keys
    "export_yup": True,
    "export_texcoords": True,
    "export_normals": True,
    "export_tangents": True,
    "export_materials": 'EXPORT',
    "export_image_format": 'AUTO',
    "export_skins": True,
    "export_influence_nb": 4,
    "export_def_bones": False,
    "export_leaf_bone": False,
    "export_rest_position_armature": True,
    "export_morph": True,
    "export_morph_normal": True,
    "export_morph_tangent": False,
    "export_animations": True,
    "export_animation_mode": 'ACTIONS',
    "export_force_sampling": True,
    "export_anim_single_armature": True,
    "export_reset_pose_bones": True,
    "export_extras": False,
    "export_cameras": False,
    "export_lights": False,
}

_FBX_COMMON: dict[str, Any] = {
    "use_selection": True,
    "object_types": {'ARMATURE', 'MESH'},
    "global_scale": 1.0,
    "apply_unit_scale": True,
    "axis_forward": '-Z',
    "axis_up": 'Y',
    "use_space_transform": True,
    "bake_space_transform": False,  # experimental for armatures in Blender's exporter
    "use_mesh_modifiers": False,  # the Armature modifier is the skin, not geometry
    "mesh_smooth_type": 'FACE',
    "use_tspace": False,
    "use_custom_props": False,
    "add_leaf_bones": False,
    "primary_bone_axis": 'Y',
    "secondary_bone_axis": 'X',
    "use_armature_deform_only": True,
    "armature_nodetype": 'NULL',
    "bake_anim": True,
    "bake_anim_use_all_bones": True,
    "bake_anim_use_nla_strips": False,
    "bake_anim_use_all_actions": False,
    "bake_anim_force_startend_keying": True,
    "bake_anim_step": 1.0,
    "bake_anim_simplify_factor": 0.0,  # keep every sampled key
    "path_mode": 'COPY',
    "embed_textures": True,
}

EXPORT_PRESETS: tuple[ExportPreset, ...] = (
    ExportPreset("GLB", "glTF Binary (.glb)", "glTF binary: named morph targets, skin, "
                 "animations", "gltf", ".glb", "NONE", None, MappingProxyType(_GLTF_SETTINGS),
                 mesh_beside_armature=True),
    ExportPreset("FBX_UNREAL", "FBX for Unreal", "FBX with Unreal's axes, units and root; "
                 "PascalCase names", "fbx", ".fbx", "UNREAL", UNREAL_ROOT_NODE,
                 MappingProxyType({**_FBX_COMMON, "apply_scale_options": 'FBX_SCALE_NONE'}),
                 take_from_action=True),
    ExportPreset("FBX_UNITY", "FBX for Unity", "FBX with Unity's axes and scale 1; camelCase "
                 "ARKit names", "fbx", ".fbx", "ARKIT", None,
                 MappingProxyType({**_FBX_COMMON, "apply_scale_options": 'FBX_SCALE_ALL'}),
                 take_from_action=True),
)
EXPORT_PRESETS_BY_ID: dict[str, ExportPreset] = {p.id: p for p in EXPORT_PRESETS}

# Names whose words differ from their Blender spelling (avoids ARKit's eyeBlinkLeft/Right).
_WORD_SOURCE: dict[str, str] = {
    naming.BLINK_KEYS[0]: "FlameBlink_L",
    naming.BLINK_KEYS[1]: "FlameBlink_R",
}
_SIDES = {"L": "Left", "R": "Right"}
_WORD_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def words(name: str) -> list[str]:
    """Split a name into words: separators ``_ . -``, case changes, digit runs; side
    letters ``L``/``R`` become ``Left``/``Right``.

    ``"eyeBlinkLeft"`` -> ``["eye", "Blink", "Left"]``, ``"PC_jaw_01"`` -> ``["PC", "jaw", "01"]``,
    ``"eye.L"`` -> ``["eye", "Left"]``.
    """
    out: list[str] = []
    for part in re.split(r"[_.\-\s]+", name):
        out.extend(_SIDES.get(w, w) for w in _WORD_RE.findall(part))
    return out


def camel_case(name: str) -> str:
    """``"PC_jaw_01"`` -> ``"pcJaw01"``, ``"eye.L"`` -> ``"eyeLeft"``."""
    parts = words(name)
    return "".join([parts[0].lower()] + [w[:1].upper() + w[1:].lower() for w in parts[1:]]) \
        if parts else name


def pascal_case(name: str) -> str:
    """``"jawOpen"`` -> ``"JawOpen"``, ``"PC_jaw_01"`` -> ``"PcJaw01"``, ``"eye.L"`` -> ``"EyeLeft"``."""
    parts = words(name)
    return "".join(w[:1].upper() + w[1:].lower() for w in parts) if parts else name


def _is_renamed_key(name: str) -> bool:
    return (name in ARKIT_NAMES or name in naming.BLINK_KEYS or name == naming.CAPTURED_KEY
            or bool(EXPRESSION_KEY_RE.match(name)) or bool(CORRECTIVE_KEY_RE.match(name)))


def _styled(name: str, style: str) -> str:
    source = _WORD_SOURCE.get(name, name)
    return camel_case(source) if style == "camel" else pascal_case(source)


def _one_map(names: list[str], style: str | None, renamed: Iterable[str], what: str) -> dict[str, str]:
    renamed = set(renamed)
    new = {n: _styled(n, style) if style and n in renamed else n for n in names}
    final = list(new.values())
    if len(set(final)) != len(final):
        dup = sorted({n for n in final if final.count(n) > 1})
        raise ValueError(f"Renaming would give two {what} the same name ({', '.join(dup[:3])}).")
    return {old: nn for old, nn in new.items() if old != nn}


def rename_map(profile_id: str, key_names: Iterable[str], bone_names: Iterable[str]) -> RenameMap:
    """Renames of one head's shape keys and bones for a profile.

    Args:
        profile_id: a ``RENAME_PROFILES`` id.
        key_names: the head's shape keys (Basis is never renamed).
        bone_names: the head's bones.
    Raises:
        KeyError: unknown profile.
        ValueError: two keys or two bones would end up with the same name.
    """
    if profile_id not in RENAME_PROFILES_BY_ID:
        raise KeyError(f"unknown rename profile {profile_id!r}; known: "
                       f"{', '.join(RENAME_PROFILES_BY_ID)}")
    style = RENAME_PROFILES_BY_ID[profile_id].style
    keys, bones = list(key_names), list(bone_names)
    return RenameMap(
        keys=_one_map(keys, style, [k for k in keys if _is_renamed_key(k)], "shape keys"),
        bones=_one_map(bones, style, [b for b in bones if b in naming.BONE_NAMES], "bones"),
    )


def keyed_frame_range(ranges: Iterable[tuple[float, float]]) -> tuple[int, int] | None:
    """Whole frames covering every (start, end) keyed range (an action's ``frame_range``);
    None when there is none."""
    ranges = list(ranges)
    if not ranges:
        return None
    start = min(r[0] for r in ranges)
    end = max(r[1] for r in ranges)
    first, last = int(math.floor(start + 1e-6)), int(math.ceil(end - 1e-6))
    return first, max(first, last)


def export_path(path: str, preset_id: str) -> str:
    """``path`` with the preset's extension (replacing another known one, case-insensitive)."""
    ext = EXPORT_PRESETS_BY_ID[preset_id].extension
    low = path.lower()
    for known in {p.extension for p in EXPORT_PRESETS}:
        if low.endswith(known):
            return path[:-len(known)] + ext
    return path + ext
