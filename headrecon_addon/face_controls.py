"""The face controls of an imported head (pure Python + numpy): which shape keys and bones
an artist animates, how the panel groups them, and the two states Reset returns to.

Face controls are

* every shape key except ``Basis`` and the driven pose correctives (``PC_*``, their values
  come from the jaw/neck rotations): the PCA expression keys ``Exp000..``, the FLAME eyelid
  keys ``EyeBlink_L/R``, ``Captured`` and the ARKit-named keys of bundles that carry them;
* the local rotations of the six pose bones. ``EXPRESSION_BONES`` (jaw, eyes) belong to
  the expression (presets set them), ``HEAD_POSE_BONES`` (root, neck, head) to the head pose.

Reset targets:

* ``NEUTRAL``: every face key 0 and every bone at its rest orientation, i.e. FLAME's
  identity with zero expression and zero pose (what the head looks like with no expression);
* ``CAPTURED``: the state the import built from the photo: ``Captured`` = 1, the eyelid keys
  at the fitted eyelid weights, every other key 0, neck/jaw/eye bones at the fitted pose
  (root and head bones at rest; the fitted root rotation is not applied by the import
  either). The fitted values are read from the head's bundle (``rig.npz``).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import naming

ARKIT_NAMES = naming.ARKIT_NAMES  # re-exported: the add-on's panels and profiles use it

EXPRESSION_BONES: tuple[str, ...] = (naming.JAW_BONE, naming.EYE_L_BONE, naming.EYE_R_BONE)
HEAD_POSE_BONES: tuple[str, ...] = (naming.ROOT_BONE, naming.NECK_BONE, naming.HEAD_BONE)

RESET_TARGETS: tuple[tuple[str, str, str], ...] = (
    ("CAPTURED", "Captured", "Back to the photo: Captured key 1, fitted eyelids, fitted "
                             "neck/jaw/eye rotations, every other key 0"),
    ("NEUTRAL", "Neutral", "No expression: every face key 0, every bone at rest"),
)

# Panel groups of the face keys: (id, label), in display order.
KEY_GROUPS: tuple[tuple[str, str], ...] = (
    ("CAPTURED", "Captured & Eyelids"),
    ("BROWS", "Brows"),
    ("EYES", "Eyes"),
    ("CHEEKS_NOSE", "Cheeks & Nose"),
    ("MOUTH", "Mouth"),
    ("JAW", "Jaw"),
    ("TONGUE", "Tongue"),
    ("PCA", "PCA Expressions"),
    ("OTHER", "Other Keys"),
)
_ARKIT_PREFIX_GROUP: tuple[tuple[str, str], ...] = (
    ("brow", "BROWS"), ("eye", "EYES"), ("cheek", "CHEEKS_NOSE"), ("nose", "CHEEKS_NOSE"),
    ("mouth", "MOUTH"), ("jaw", "JAW"), ("tongue", "TONGUE"),
)
EXPRESSION_KEY_RE = re.compile(r"^Exp\d{3}$")
CORRECTIVE_KEY_RE = re.compile(r"^PC_(?:" + "|".join(naming.CORRECTIVE_JOINTS) + r")_[0-2][0-2]$")


class CapturedStateError(Exception):
    """The captured state cannot be read; the message is one sentence for the user."""


@dataclass(frozen=True)
class CapturedState:
    """What the import set from the photo.

    Attributes:
        pose: (J, 3) float64 fitted axis-angle per FLAME joint (naming.FLAME_JOINTS order).
        eyelids: (2,) float64 fitted eyelid weights (subject's left, right).
    """

    pose: np.ndarray
    eyelids: np.ndarray


def is_face_key(name: str) -> bool:
    """True for a shape key an artist sets (not Basis, not a driven pose corrective)."""
    return name != naming.BASIS_KEY and not CORRECTIVE_KEY_RE.match(name)


def face_keys(names: Iterable[str]) -> list[str]:
    """The face keys among ``names``, in the given order."""
    return [n for n in names if is_face_key(n)]


def key_group(name: str) -> str:
    """Panel group id (``KEY_GROUPS``) of a face key."""
    if name == naming.CAPTURED_KEY or name in naming.BLINK_KEYS:
        return "CAPTURED"
    if EXPRESSION_KEY_RE.match(name):
        return "PCA"
    if name in ARKIT_NAMES:
        return next(group for prefix, group in _ARKIT_PREFIX_GROUP if name.startswith(prefix))
    return "OTHER"


def matches_filter(name: str, text: str) -> bool:
    """Case-insensitive filter: every whitespace-separated word of ``text`` occurs in ``name``."""
    low = name.lower()
    return all(word in low for word in text.lower().split())


def grouped_keys(names: Iterable[str], text: str = "") -> list[tuple[str, str, list[str]]]:
    """The face keys matching ``text``, grouped for the panel.

    Returns:
        (group id, label, key names in their shape-key order) for every non-empty group,
        in ``KEY_GROUPS`` order.
    """
    buckets: dict[str, list[str]] = {gid: [] for gid, _ in KEY_GROUPS}
    for name in face_keys(names):
        if matches_filter(name, text):
            buckets[key_group(name)].append(name)
    return [(gid, label, buckets[gid]) for gid, label in KEY_GROUPS if buckets[gid]]


def load_captured(folder: str | Path) -> CapturedState:
    """Read the fitted pose and eyelid weights of a bundle (only those two arrays).

    Args:
        folder: the bundle folder the head was imported from.
    Raises:
        CapturedStateError: the folder or its rig.npz is gone or lacks a valid ``pose``.
    """
    path = Path(folder) / "rig.npz"
    if not path.is_file():
        raise CapturedStateError(f"The head's bundle {path} is gone, so its captured state is "
                                 "unknown; reset to Neutral instead.")
    try:
        with np.load(path, allow_pickle=False) as data:
            pose = np.asarray(data["pose"], dtype=np.float64)
            eyelids = (np.asarray(data["eyelids"], dtype=np.float64) if "eyelids" in data.files
                       else np.zeros(2))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise CapturedStateError(f"{path} cannot be read ({exc}).") from None
    if pose.shape != (len(naming.FLAME_JOINTS), 3) or eyelids.shape != (2,):
        raise CapturedStateError(f"{path} has pose {pose.shape} / eyelids {eyelids.shape}, "
                                 f"expected ({len(naming.FLAME_JOINTS)}, 3) / (2,).")
    if not (np.isfinite(pose).all() and np.isfinite(eyelids).all()):
        raise CapturedStateError(f"{path} has non-finite pose or eyelid values.")
    return CapturedState(pose=pose, eyelids=eyelids)


def reset_key_values(names: Iterable[str], target: str,
                     captured: CapturedState | None = None) -> dict[str, float]:
    """Value of every face key after a reset.

    Args:
        names: the head's shape-key names.
        target: ``"NEUTRAL"`` or ``"CAPTURED"`` (then ``captured`` is required).
    Returns:
        face key name -> value.
    """
    values = {name: 0.0 for name in face_keys(names)}
    if target == "NEUTRAL":
        return values
    if target != "CAPTURED" or captured is None:
        raise ValueError(f"reset target {target!r} needs a captured state" if target == "CAPTURED"
                         else f"unknown reset target {target!r}")
    for name, weight in zip(naming.BLINK_KEYS, captured.eyelids):
        if name in values:
            values[name] = float(weight)
    if naming.CAPTURED_KEY in values:
        values[naming.CAPTURED_KEY] = 1.0
    return values


def captured_joint_rotations(captured: CapturedState) -> dict[str, np.ndarray]:
    """Fitted FLAME-frame axis-angle of every bone as the import applies it.

    Returns:
        bone name -> (3,) axis-angle in the FLAME frame; zero for root (kept apart by the
        import) and for the extra head bone.
    """
    out = {bone: np.zeros(3) for bone in naming.BONE_NAMES}
    for j, joint in enumerate(naming.FLAME_JOINTS):
        if joint != "root":
            out[naming.JOINT_TO_BONE[joint]] = captured.pose[j].copy()
    return out


def head_stem(armature_name: str) -> str:
    """The head's photo stem from its armature name (``naming.object_names``: ``<stem>_rig``)."""
    suffix = naming.object_names("")["armature"]
    return armature_name[:-len(suffix)] if armature_name.endswith(suffix) and \
        len(armature_name) > len(suffix) else armature_name


def action_name(armature_name: str) -> str:
    """Name of the action Insert Keyframes creates for a head: ``<stem>_FaceAnim``."""
    return f"{head_stem(armature_name)}_FaceAnim"
