"""Expression presets (pure Python): tables of face-control values and how they apply.

A preset is written in terms an artist can read, never in PCA coefficients:

* ARKit-named shape keys (weights 0..1, as in ARKit), present on heads whose bundle
  carries ``arkit_names``;
* the FLAME eyelid keys ``EyeBlink_L/R`` (present on every head);
* expression bone rotations, FLAME-frame axis-angle in radians (the jaw opens about +X,
  the subject's left; the same axis as the jaw bone's local X, see ``rig``).

The jaw always moves by its bone (never by the ``jawOpen`` key), so presets open the
mouth on every head. Keys a head lacks are skipped and reported.

Modes: ``REPLACE`` first returns the expression to neutral (every face key 0, jaw and eyes
at rest; the head pose bones root/neck/head are left alone) and then sets the preset;
``ADD`` adds the preset on top of the current values (e.g. a smile over the Captured
expression: Reset to Captured, then add Smile). ``strength`` scales every value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import naming
from .face_controls import face_keys

MODES: tuple[tuple[str, str, str], ...] = (
    ("REPLACE", "Replace", "Neutral expression (face keys 0, jaw and eyes at rest), then the preset"),
    ("ADD", "Add", "Add the preset to the current values"),
)


@dataclass(frozen=True)
class Preset:
    """One expression preset.

    Attributes:
        id: identifier (operator enum item), e.g. ``"SMILE"``.
        label: UI name.
        description: one sentence for the tooltip.
        keys: (shape key, value) pairs.
        bones: (bone, (3,) FLAME-frame axis-angle in radians) pairs.
    """

    id: str
    label: str
    description: str
    keys: tuple[tuple[str, float], ...] = ()
    bones: tuple[tuple[str, tuple[float, float, float]], ...] = ()


@dataclass(frozen=True)
class PresetPlan:
    """What applying a preset to one head sets.

    Attributes:
        keys: shape key -> value (keys the head has), scaled by the strength.
        bones: bone -> (3,) FLAME-frame axis-angle, scaled by the strength.
        missing: preset keys the head lacks (skipped), in preset order.
    """

    keys: dict[str, float]
    bones: dict[str, tuple[float, float, float]]
    missing: tuple[str, ...]


def _both(stem: str, value: float) -> tuple[tuple[str, float], ...]:
    """ARKit key pair ``<stem>Left``, ``<stem>Right`` at ``value``."""
    return ((f"{stem}Left", value), (f"{stem}Right", value))


def _jaw(angle: float) -> tuple[tuple[str, tuple[float, float, float]], ...]:
    """Jaw opened by ``angle`` radians about FLAME +X."""
    return ((naming.JAW_BONE, (angle, 0.0, 0.0)),)


BL, BR = naming.BLINK_KEYS

PRESETS: tuple[Preset, ...] = (
    Preset("NEUTRAL", "Neutral", "No expression: face keys 0, jaw and eyes at rest"),
    Preset("SMILE", "Smile", "Smiling mouth with raised cheeks",
           _both("mouthSmile", 0.8) + _both("cheekSquint", 0.3) + _both("eyeSquint", 0.15)),
    Preset("SURPRISE", "Surprise", "Raised brows, wide eyes, dropped jaw",
           (("browInnerUp", 1.0),) + _both("browOuterUp", 0.8) + _both("eyeWide", 0.6),
           _jaw(0.15)),
    Preset("ANGER", "Anger", "Lowered brows, squint, sneer, pressed lips",
           _both("browDown", 0.9) + _both("eyeSquint", 0.4) + _both("noseSneer", 0.4)
           + _both("mouthPress", 0.5) + _both("mouthFrown", 0.3)),
    Preset("SADNESS", "Sadness", "Raised inner brows, frowning mouth",
           (("browInnerUp", 0.8),) + _both("mouthFrown", 0.7) + (("mouthShrugLower", 0.4),)),
    Preset("DISGUST", "Disgust", "Sneering nose, raised upper lip, lowered brows",
           _both("noseSneer", 0.8) + _both("mouthUpperUp", 0.5) + _both("browDown", 0.4)
           + _both("cheekSquint", 0.3)),
    Preset("PUCKER", "Pucker", "Kiss: puckered, funnelled lips",
           (("mouthPucker", 0.9), ("mouthFunnel", 0.3))),
    Preset("BLINK", "Blink", "Both eyes closed (FLAME eyelid keys)", ((BL, 1.0), (BR, 1.0))),
    Preset("JAW_OPEN", "Jaw Open", "Mouth wide open by the jaw bone (0.35 rad)", (), _jaw(0.35)),
)
PRESETS_BY_ID: dict[str, Preset] = {p.id: p for p in PRESETS}


def enum_items() -> list[tuple[str, str, str]]:
    """(id, label, description) of every preset, for a Blender EnumProperty."""
    return [(p.id, p.label, p.description) for p in PRESETS]


def preset_plan(preset_id: str, key_names: Iterable[str], strength: float = 1.0) -> PresetPlan:
    """The values a preset sets on a head with the given shape keys.

    Args:
        preset_id: a ``PRESETS`` id.
        key_names: the head's shape-key names.
        strength: factor on every value (1 = the table's values).
    Raises:
        KeyError: unknown preset id.
    """
    if preset_id not in PRESETS_BY_ID:
        raise KeyError(f"unknown preset {preset_id!r}; known: {', '.join(PRESETS_BY_ID)}")
    preset = PRESETS_BY_ID[preset_id]
    have = set(face_keys(key_names))
    keys = {name: strength * value for name, value in preset.keys if name in have}
    missing = tuple(name for name, _ in preset.keys if name not in have)
    bones = {bone: (strength * a, strength * b, strength * c) for bone, (a, b, c) in preset.bones}
    return PresetPlan(keys=keys, bones=bones, missing=missing)
