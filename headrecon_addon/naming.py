"""Names of everything the extension creates: shape keys, bones, vertex groups, objects.

Other parts of the extension (presets, export, backend operators) find a head's parts by
these names, so they are the one place to change them.

Bones (Blender names, FLAME joint each one carries, see ``rig.BONES`` for the frames):

======== ============= ==========================================================
bone     FLAME joint   role
======== ============= ==========================================================
root     root          global rotation about the root joint (base of the neck)
neck     neck          FLAME's neck rotation (the head turning on the neck)
head     (none)        extra control, child of neck at its tail; at rest pose the
                       mesh is exactly FLAME; rotating it turns the skull only
jaw      jaw           jaw rotation (corrective keys follow it)
eye.L    eye_L         subject's left eye (+X in FLAME, +X in Blender)
eye.R    eye_R         subject's right eye
======== ============= ==========================================================
"""

from __future__ import annotations

BASIS_KEY = "Basis"
CAPTURED_KEY = "Captured"
BLINK_KEYS: tuple[str, str] = ("EyeBlink_L", "EyeBlink_R")  # subject's left, right

ROOT_BONE = "root"
NECK_BONE = "neck"
HEAD_BONE = "head"
JAW_BONE = "jaw"
EYE_L_BONE = "eye.L"
EYE_R_BONE = "eye.R"
BONE_NAMES: tuple[str, ...] = (ROOT_BONE, NECK_BONE, HEAD_BONE, JAW_BONE, EYE_L_BONE, EYE_R_BONE)

# FLAME joint name -> the bone that carries its rotation.
JOINT_TO_BONE: dict[str, str] = {
    "root": ROOT_BONE,
    "neck": NECK_BONE,
    "jaw": JAW_BONE,
    "eye_L": EYE_L_BONE,
    "eye_R": EYE_R_BONE,
}
FLAME_JOINTS: tuple[str, ...] = tuple(JOINT_TO_BONE)

# Joints whose pose-corrective blendshapes become driven shape keys. The eye correctives are
# left out: eyeball rotation moves only eyeball vertices, whose correctives are below 1e-6 m.
CORRECTIVE_JOINTS: tuple[str, ...] = ("neck", "jaw")

# Custom properties on the armature and mesh objects of an imported head.
HEAD_PROP = "headrecon_head"  # 1 on both objects of a head
BUNDLE_PROP = "headrecon_bundle"  # folder of the bundle the head was built from
PHOTO_PROP = "headrecon_photo"  # photo file name from result.json
ROOT_POSE_PROP = "headrecon_root_pose"  # (3,) fitted root axis-angle, FLAME frame (not applied)
TRANSLATION_PROP = "headrecon_translation"  # (3,) fitted translation, FLAME/view frame

UV_MAP = "UVMap"


def expression_key(index: int) -> str:
    """Shape key of expression component ``index`` (0-based): ``Exp000``, ``Exp001``, ..."""
    if not 0 <= index < 1000:
        raise ValueError(f"expression index {index} outside 0..999")
    return f"Exp{index:03d}"


def corrective_key(joint: str, row: int, col: int) -> str:
    """Shape key of the pose corrective of entry (row, col) of ``R_joint - I``: ``PC_jaw_01``."""
    if joint not in FLAME_JOINTS[1:]:
        raise ValueError(f"unknown posed joint {joint!r}")
    if not (0 <= row < 3 and 0 <= col < 3):
        raise ValueError(f"matrix entry ({row}, {col}) outside 3x3")
    return f"PC_{joint}_{row}{col}"


def corrective_keys() -> list[str]:
    """All corrective key names in creation order (joint, then row-major entry)."""
    return [corrective_key(j, r, c) for j in CORRECTIVE_JOINTS for r in range(3) for c in range(3)]


# Apple's ARFaceAnchor.BlendShapeLocation names (the 52 ARKit blendshapes). The backend's
# list (backend/model/arkit.py) imports this one.
ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)


TONGUE_OUT_KEY = "tongueOut"  # the ARKit shape the mouth interior adds (ICT has none)


def shape_key_names(n_expr: int, arkit_names: tuple[str, ...] = (), mouth: bool = False) -> list[str]:
    """Every shape key of a head in order: Basis, expressions, blinks, Captured, ARKit,
    ``tongueOut`` (with a mouth interior, unless the ARKit shapes have it), correctives.

    Args:
        n_expr: number of expression components E of the model.
        arkit_names: names of the optional ARKit shapes of the bundle (kept as they are).
        mouth: the bundle has a mouth interior (its ``tongueOut`` drives the tongue's).
    """
    tongue = [TONGUE_OUT_KEY] if mouth and TONGUE_OUT_KEY not in arkit_names else []
    return ([BASIS_KEY] + [expression_key(k) for k in range(n_expr)] + list(BLINK_KEYS)
            + [CAPTURED_KEY] + list(arkit_names) + tongue + corrective_keys())


def object_names(photo_stem: str) -> dict[str, str]:
    """Names of the new collection and its objects/data for a photo stem (Blender adds .001 on clashes)."""
    return {
        "collection": photo_stem,
        "armature": f"{photo_stem}_rig",
        "mesh": f"{photo_stem}_head",
        "material": f"{photo_stem}_skin",
        "eye_material": f"{photo_stem}_eyes",
        "upper_teeth": f"{photo_stem}_teeth_upper",
        "lower_teeth": f"{photo_stem}_teeth_lower",
        "tongue": f"{photo_stem}_tongue",
        "cavity": f"{photo_stem}_mouth",
        "teeth_material": f"{photo_stem}_teeth",
        "tongue_material": f"{photo_stem}_tongue",
        "cavity_material": f"{photo_stem}_mouth",
    }


# Mouth interior objects (builder/mouth.py): children of the head's armature, skinned to it,
# marked with MOUTH_PROP = their part name (not HEAD_PROP: they are not the head mesh).
MOUTH_PROP = "headrecon_mouth"
MOUTH_PARTS: tuple[str, ...] = ("upper_teeth", "lower_teeth", "tongue", "cavity")

# FLAME topology: the eyeball vertices (assets masks left_eyeball / right_eyeball), half-open
# ranges, subject's left (+X) first. They get the eye material (builder/eyes.py).
EYEBALL_VERTEX_RANGES: tuple[tuple[int, int], ...] = ((3931, 4477), (4477, 5023))
FLAME_VERTEX_COUNT = 5023
EYE_UV_MAP = "EyeUV"
# Iris colour (sRGB 0..1) when result.json has no ``iris_color``: a mid brown.
DEFAULT_IRIS_SRGB: tuple[float, float, float] = (0.36, 0.22, 0.12)
