"""Live Link Face CSV files (Epic's iOS app): read, write, and map to a HeadRecon head.
Pure Python (stdlib only), shared by the Blender operators and the backend's ``capture`` CLI.

Layout (one header row, then one row per captured frame)::

    Timecode,BlendShapeCount,EyeBlinkLeft,...,TongueOut,HeadYaw,HeadPitch,HeadRoll,
    LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll
    00:00:01:12.000,61,0.0123,...

The column order is the one of the app's export (the 52 ARKit shapes in PascalCase, in
Apple's order except that ``JawRight`` comes before ``JawLeft`` and ``MouthRight`` before
``MouthLeft``, then 9 rotations; ``BlendShapeCount`` = 61). Source: the header constant of
the MIT-licensed Blender add-on nmfisher/blender_livelinkface (``bpylivelinkface.py``),
which reads the app's CSV exports, and the same header in other public Live Link Face CSV
readers (e.g. alexdjulin/LiveLinkFace-CSV-Retarget-For-Motionbuilder). Reading goes by
column name, so files with the columns in another order (or without the rotations) work.

Timecode ``HH:MM:SS:FF.fff``: ``FF`` counts frames at the timecode rate and ``.fff`` is a
fraction of a frame (sub-frame). A row's frame is ``round((t - t_first) * fps)`` at the
caller's fps, so the first row lands on frame 0 (the operators add the start frame).

Gaze and jaw (one motion each, see :func:`eye_bone_rotation` and :func:`jaw_bone_rotation`).
The ``eyeLook*`` shapes turn the eyeballs themselves, so a CSV's eye angles are the eye's whole
gaze (as in the app) and the eye bones receive only what the keyed ``eyeLook*`` values do not
already turn: ``R_bone = R_gaze R_keys^T``; export writes ``R_bone R_keys`` back. ``JawOpen``
opens the mouth by the jaw bone (as the presets do), never by the ``jawOpen`` key: import sets
the bone to ``JawOpen`` times the rotation the head's ``jawOpen`` key imitates and the key to
0; export writes the key's value plus the bone's opening in those units (values above 1 when
the bone opens wider than the shape). ``R_keys`` and the jaw unit are measured on the head
(``rig.equivalent_rotation`` of each key about its bone's joint), passed in as ``axes``.

Rotations are radians; ``Yaw``, ``Pitch``, ``Roll`` are this project's convention in the
FLAME frame (+X the subject's left, +Y up, +Z out of the face, as ARKit's face anchor):
``R = Ry(yaw) @ Rx(pitch) @ Rz(roll)``, right-handed (positive yaw turns the face towards
+X, positive pitch tilts it down). ``Head`` is the ``neck`` bone (the fitted head rotation),
``LeftEye``/``RightEye`` the subject's left/right eye bones.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from dataclasses import dataclass, field

from . import naming

# The 52 blend shapes in the order of the app's CSV export (see the module docstring): ARKit's
# names capitalised, in Apple's order except that the app writes Right before Left for the
# jaw and mouth side shapes.
_CSV_SWAPS = {"jawLeft": "jawRight", "jawRight": "jawLeft",
              "mouthLeft": "mouthRight", "mouthRight": "mouthLeft"}
BLENDSHAPES: tuple[str, ...] = tuple(
    (n := _CSV_SWAPS.get(a, a))[0].upper() + n[1:] for a in naming.ARKIT_NAMES)
ROTATION_GROUPS: tuple[str, ...] = ("Head", "LeftEye", "RightEye")
ANGLES: tuple[str, ...] = ("Yaw", "Pitch", "Roll")
ROTATIONS: tuple[str, ...] = tuple(g + a for g in ROTATION_GROUPS for a in ANGLES)
HEADER: tuple[str, ...] = ("Timecode", "BlendShapeCount") + BLENDSHAPES + ROTATIONS
# Rotation group -> the head's bone that carries it.
GROUP_BONES: dict[str, str] = {"Head": naming.NECK_BONE, "LeftEye": naming.EYE_L_BONE,
                               "RightEye": naming.EYE_R_BONE}

_TIMECODE_RE = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2})[:;](\d+)(?:\.(\d+))?\s*$")
Matrix = list[list[float]]


class LiveLinkError(Exception):
    """A Live Link Face CSV cannot be read or written; the message is one sentence."""


def arkit_name(column: str) -> str:
    """ARKit (camelCase) name of a blend-shape column: ``JawOpen`` -> ``jawOpen``."""
    return column[:1].lower() + column[1:]


def column_name(arkit: str) -> str:
    """Column of an ARKit name: ``jawOpen`` -> ``JawOpen``."""
    return arkit[:1].upper() + arkit[1:]


@dataclass
class LiveLinkFrame:
    """One row.

    Attributes:
        frame: frame number at the take's fps, 0 = the first row.
        weights: ARKit (camelCase) name -> value (only the columns present).
        rotations: ``ROTATION_GROUPS`` name -> (yaw, pitch, roll) radians (groups present).
    """

    frame: int
    weights: dict[str, float] = field(default_factory=dict)
    rotations: dict[str, tuple[float, float, float]] = field(default_factory=dict)


@dataclass
class LiveLinkTake:
    """A whole CSV: frames in increasing frame order at ``fps``."""

    fps: float
    frames: list[LiveLinkFrame]


def parse_timecode(text: str, fps: float) -> float:
    """``HH:MM:SS:FF[.fff]`` -> frames at ``fps`` since 00:00:00:00 (fractional).

    Raises:
        LiveLinkError: not a timecode, or a frame field not below ``fps``.
    """
    m = _TIMECODE_RE.match(text)
    if m is None:
        raise LiveLinkError(f"{text!r} is not a timecode (HH:MM:SS:FF.fff).")
    if len(m.group(1)) > 4 or len(m.group(4)) > 6 or len(m.group(5) or "") > 9:
        raise LiveLinkError(f"Timecode {text[:40]!r} is out of range.")
    h, mi, s, ff = (int(g) for g in m.groups()[:4])
    sub = float("0." + m.group(5)) if m.group(5) else 0.0
    if mi >= 60 or s >= 60 or ff >= math.ceil(fps):
        raise LiveLinkError(f"Timecode {text!r} is out of range at {fps:g} fps.")
    return ((h * 60 + mi) * 60 + s) * fps + ff + sub


def format_timecode(frame: float, fps: float) -> str:
    """Frames at an integer ``fps`` -> ``HH:MM:SS:FF.fff`` (``.fff`` = sub-frame)."""
    if fps != int(fps) or fps <= 0:
        raise LiveLinkError(f"Writing timecodes needs a whole frame rate, not {fps:g}.")
    rate = int(fps)
    whole = math.floor(frame + 1e-9)
    sub = min(max(frame - whole, 0.0), 0.999)
    secs, ff = divmod(whole, rate)
    mins, s = divmod(secs, 60)
    h, mi = divmod(mins, 60)
    return f"{h:02d}:{mi:02d}:{s:02d}:{ff:02d}.{round(sub * 1000):03d}"


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LiveLinkError(f"{where} holds {text!r}, not a number.") from None
    if not math.isfinite(value):
        raise LiveLinkError(f"{where} holds a non-finite value.")
    return value


def parse_csv(text: str, fps: float, source: str = "the CSV") -> LiveLinkTake:
    """Read Live Link Face CSV text.

    Args:
        text: the file's content.
        fps: frame rate of the timecodes and of the result.
        source: name for messages.
    Raises:
        LiveLinkError: no header / no Timecode column / no known column, a short row, a bad
            number or timecode, or timecodes that go backwards.
    """
    if not math.isfinite(fps) or fps <= 0 or fps > 1000:
        raise LiveLinkError(f"The frame rate must be a positive number up to 1000, not {fps:g}.")
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")  # CR-only files too
    try:
        rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    except csv.Error as exc:  # e.g. a field longer than csv.field_size_limit()
        raise LiveLinkError(f"{source} is not a readable CSV ({exc}).") from None
    if not rows:
        raise LiveLinkError(f"{source} is empty.")
    header = [c.strip() for c in rows[0]]
    if "Timecode" not in header:
        raise LiveLinkError(f"{source} has no Timecode column, so it is not a Live Link Face CSV.")
    col = {name: header.index(name) for name in HEADER if name in header}
    shapes = [n for n in BLENDSHAPES if n in col]
    groups = [g for g in ROTATION_GROUPS if all(g + a in col for a in ANGLES)]
    if not shapes and not groups:
        raise LiveLinkError(f"{source} has none of the Live Link Face blend-shape columns.")
    frames: list[LiveLinkFrame] = []
    first = last = None
    for line, row in enumerate(rows[1:], start=2):
        if len(row) < len(header):
            raise LiveLinkError(f"Row {line} of {source} has {len(row)} values, the header "
                                f"{len(header)}.")
        t = parse_timecode(row[col["Timecode"]], fps)
        first = t if first is None else first
        if last is not None and t < last:
            raise LiveLinkError(f"The timecode of row {line} of {source} goes backwards.")
        last = t
        where = f"Row {line} of {source}"
        frame = LiveLinkFrame(round(t - first))
        frame.weights = {arkit_name(n): _number(row[col[n]], where) for n in shapes}
        frame.rotations = {g: tuple(_number(row[col[g + a]], where) for a in ANGLES)
                           for g in groups}
        if frames and frames[-1].frame == frame.frame:
            frames[-1] = frame  # two rows on one frame at this fps: the later one wins
        else:
            frames.append(frame)
    if not frames:
        raise LiveLinkError(f"{source} has a header but no frames.")
    return LiveLinkTake(fps=fps, frames=frames)


def read_csv(path: str | os.PathLike[str], fps: float) -> LiveLinkTake:
    """Read a Live Link Face CSV file (see :func:`parse_csv`)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise LiveLinkError(f"{os.fspath(path)} cannot be read ({exc}).") from None
    return parse_csv(text, fps, os.path.basename(os.fspath(path)))


def format_csv(take: LiveLinkTake, start_frame: int = 0) -> str:
    """CSV text of a take in the app's full layout (missing values written as 0).

    Args:
        take: frames at ``take.fps`` (a whole number).
        start_frame: timecode frame of ``frame`` 0.
    """
    values = [v for fr in take.frames for v in list(fr.weights.values())
              + [a for r in fr.rotations.values() for a in r]]
    if not all(math.isfinite(v) for v in values):
        raise LiveLinkError("The take holds NaN or infinite values, which a Live Link CSV cannot "
                            "carry.")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for fr in take.frames:
        rot = [v for g in ROTATION_GROUPS for v in fr.rotations.get(g, (0.0, 0.0, 0.0))]
        writer.writerow([format_timecode(start_frame + fr.frame, take.fps), len(BLENDSHAPES) + 9]
                        + [f"{fr.weights.get(arkit_name(n), 0.0):.8g}" for n in BLENDSHAPES]
                        + [f"{v:.8g}" for v in rot])
    return out.getvalue()


def write_csv(path: str | os.PathLike[str], take: LiveLinkTake, start_frame: int = 0) -> None:
    """Write a take as a Live Link Face CSV file."""
    text = format_csv(take, start_frame)
    try:
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    except OSError as exc:
        raise LiveLinkError(f"{os.fspath(path)} cannot be written ({exc}).") from None


def shape_key_targets(key_names: list[str]) -> dict[str, str]:
    """ARKit name -> the head's shape key that carries it.

    A key spelled as ARKit (``jawOpen``, what the importer creates) or as Live Link /
    Unreal (``JawOpen``, after a PascalCase rename) matches; other shapes are left out.
    """
    keys = set(key_names)
    out: dict[str, str] = {}
    for col in BLENDSHAPES:
        name = arkit_name(col)
        for cand in (name, col):
            if cand in keys:
                out[name] = cand
                break
    return out


# ------------------------------------------------------------------ rotations (pure math)
def _matmul(a: Matrix, b: Matrix) -> Matrix:
    return [[sum(a[i][k] * b[k][j] for k in range(3)) for j in range(3)] for i in range(3)]


def axis_angle_to_matrix(v: tuple[float, float, float] | list[float]) -> Matrix:
    """(3,) axis-angle (radians) -> 3x3 rotation (Rodrigues)."""
    x, y, z = (float(c) for c in v)
    angle = math.sqrt(x * x + y * y + z * z)
    if angle < 1e-12:
        return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    x, y, z = x / angle, y / angle, z / angle
    c, s = math.cos(angle), math.sin(angle)
    t = 1.0 - c
    return [[c + x * x * t, x * y * t - z * s, x * z * t + y * s],
            [y * x * t + z * s, c + y * y * t, y * z * t - x * s],
            [z * x * t - y * s, z * y * t + x * s, c + z * z * t]]


def matrix_to_axis_angle(r: Matrix) -> tuple[float, float, float]:
    """3x3 rotation -> (3,) axis-angle (radians), angle in [0, pi]."""
    cos = max(-1.0, min(1.0, (r[0][0] + r[1][1] + r[2][2] - 1.0) / 2.0))
    angle = math.acos(cos)
    if angle < 1e-9:
        return (0.0, 0.0, 0.0)
    if math.pi - angle < 1e-6:  # near pi: axis from the diagonal
        d = [math.sqrt(max((r[i][i] + 1.0) / 2.0, 0.0)) for i in range(3)]
        k = max(range(3), key=lambda i: d[i])
        axis = [r[k][i] / (2.0 * d[k]) if i != k else d[k] for i in range(3)]
        return tuple(angle * a for a in axis)  # type: ignore[return-value]
    s = 2.0 * math.sin(angle)
    axis = ((r[2][1] - r[1][2]) / s, (r[0][2] - r[2][0]) / s, (r[1][0] - r[0][1]) / s)
    return tuple(angle * a for a in axis)  # type: ignore[return-value]


def euler_to_matrix(yaw: float, pitch: float, roll: float) -> Matrix:
    """``Ry(yaw) @ Rx(pitch) @ Rz(roll)`` in the FLAME frame."""
    return _matmul(_matmul(axis_angle_to_matrix((0.0, yaw, 0.0)), axis_angle_to_matrix((pitch, 0.0, 0.0))),
                   axis_angle_to_matrix((0.0, 0.0, roll)))


def matrix_to_euler(r: Matrix) -> tuple[float, float, float]:
    """Inverse of :func:`euler_to_matrix`: (yaw, pitch, roll), pitch in [-pi/2, pi/2]."""
    pitch = math.asin(max(-1.0, min(1.0, -r[1][2])))
    if abs(r[1][2]) > 1.0 - 1e-9:  # gimbal lock: roll folded into yaw
        return (math.atan2(-r[2][0], r[0][0]), pitch, 0.0)
    return (math.atan2(r[0][2], r[2][2]), pitch, math.atan2(r[1][0], r[1][1]))


def axis_angle_to_euler(v: tuple[float, float, float] | list[float]) -> tuple[float, float, float]:
    """FLAME-frame axis-angle -> (yaw, pitch, roll)."""
    return matrix_to_euler(axis_angle_to_matrix(v))


def euler_to_axis_angle(yaw: float, pitch: float, roll: float) -> tuple[float, float, float]:
    """(yaw, pitch, roll) -> FLAME-frame axis-angle."""
    return matrix_to_axis_angle(euler_to_matrix(yaw, pitch, roll))


def compose_axis_angle(outer: list[float] | tuple[float, float, float],
                       inner: list[float] | tuple[float, float, float]) -> tuple[float, float, float]:
    """Axis-angle of ``R(outer) @ R(inner)`` (a parent joint's rotation, then its child's)."""
    return matrix_to_axis_angle(_matmul(axis_angle_to_matrix(outer), axis_angle_to_matrix(inner)))


def eye_look_axes(degrees: float) -> Axes:
    """The ``eyeLook*`` key axes of the convention that every key turns its eyeball by
    ``degrees`` (``backend.model.arkit.EYE_LOOK_DEG``): out/in about FLAME Y (the left eye's
    "out" towards +X), up/down about X (up = negative X rotation)."""
    a = math.radians(degrees)
    out: Axes = {}
    for side, sign in (("Left", 1.0), ("Right", -1.0)):
        out[f"eyeLookOut{side}"] = (0.0, sign * a, 0.0)
        out[f"eyeLookIn{side}"] = (0.0, -sign * a, 0.0)
        out[f"eyeLookUp{side}"] = (-a, 0.0, 0.0)
        out[f"eyeLookDown{side}"] = (a, 0.0, 0.0)
    return out


def frame_from_capture(frame: int, weights: dict[str, float],
                       rotations: dict[str, list[float]],
                       axes: Axes | None = None) -> LiveLinkFrame:
    """A row from a capture result (``backend.capture.FrameResult`` fields).

    Args:
        weights: ARKit name -> weight.
        rotations: FLAME joint name -> axis-angle; ``Head`` = root composed with neck.
        axes: the ``eyeLook*`` key axes of the fit (:func:`eye_look_axes`); the eye angles are
            then the whole gaze (eye joint after the keys), as the app and the importer have
            them. None: the eye joints' rotations alone.
    """
    head = compose_axis_angle(rotations.get("root", (0.0, 0.0, 0.0)),
                              rotations.get("neck", (0.0, 0.0, 0.0)))
    rots = {"Head": axis_angle_to_euler(head)}
    for group, joint in (("LeftEye", "eye_L"), ("RightEye", "eye_R")):
        rots[group] = eye_gaze(rotations.get(joint, (0.0, 0.0, 0.0)), weights, axes or {}, group)
    return LiveLinkFrame(frame, {n: float(weights.get(n, 0.0)) for n in map(arkit_name, BLENDSHAPES)},
                         rots)


# ------------------------------------------------------------------ gaze and jaw (pure math)
EYE_LOOK_KEYS: dict[str, tuple[str, ...]] = {
    group: tuple(f"eyeLook{d}{side}" for d in ("Down", "In", "Out", "Up"))
    for group, side in (("LeftEye", "Left"), ("RightEye", "Right"))}
JAW_OPEN_KEY = "jawOpen"
# ARKit key -> the bone whose rotation it imitates (for ``rig.equivalent_rotation``).
KEY_BONES: dict[str, str] = {
    **{k: naming.EYE_L_BONE for k in EYE_LOOK_KEYS["LeftEye"]},
    **{k: naming.EYE_R_BONE for k in EYE_LOOK_KEYS["RightEye"]},
    JAW_OPEN_KEY: naming.JAW_BONE}
Axes = dict[str, tuple[float, float, float]]


def implied_rotation(weights: dict[str, float], axes: Axes,
                     keys: tuple[str, ...]) -> tuple[float, float, float]:
    """Axis-angle the weighted ``keys`` turn their bone by: ``sum_k w_k a_k``.

    Args:
        weights: ARKit name -> value (missing = 0).
        axes: ARKit name -> (3,) FLAME-frame axis-angle of the key at value 1.
        keys: the keys to sum (those without an axis are left out).
    """
    out = [0.0, 0.0, 0.0]
    for k in keys:
        if k in axes:
            w = float(weights.get(k, 0.0))
            out = [o + w * a for o, a in zip(out, axes[k])]
    return (out[0], out[1], out[2])


def _transpose(r: Matrix) -> Matrix:
    return [[r[j][i] for j in range(3)] for i in range(3)]


def eye_bone_rotation(gaze: tuple[float, float, float], weights: dict[str, float], axes: Axes,
                      group: str) -> tuple[float, float, float]:
    """Eye-bone axis-angle that, after the ``eyeLook*`` keys at ``weights``, gives ``gaze``.

    Args:
        gaze: the CSV's (yaw, pitch, roll) of the eye (the whole gaze).
        group: ``"LeftEye"`` or ``"RightEye"``.
    """
    keys = axis_angle_to_matrix(implied_rotation(weights, axes, EYE_LOOK_KEYS[group]))
    return matrix_to_axis_angle(_matmul(euler_to_matrix(*gaze), _transpose(keys)))


def eye_gaze(bone: tuple[float, float, float] | list[float], weights: dict[str, float],
             axes: Axes, group: str) -> tuple[float, float, float]:
    """The whole gaze (yaw, pitch, roll) of an eye: its bone after its ``eyeLook*`` keys."""
    keys = axis_angle_to_matrix(implied_rotation(weights, axes, EYE_LOOK_KEYS[group]))
    return matrix_to_euler(_matmul(axis_angle_to_matrix(bone), keys))


def jaw_bone_rotation(jaw_open: float, axes: Axes) -> tuple[float, float, float]:
    """Jaw-bone axis-angle of a ``JawOpen`` value (zero when the head has no jawOpen axis)."""
    return implied_rotation({JAW_OPEN_KEY: jaw_open}, axes, (JAW_OPEN_KEY,))


def jaw_open_of_bone(bone: tuple[float, float, float] | list[float], axes: Axes) -> float:
    """How far the jaw bone opens in ``JawOpen`` units: the bone's axis-angle projected on the
    jawOpen axis, divided by its length (0 when closed past rest or without an axis)."""
    a = axes.get(JAW_OPEN_KEY)
    norm2 = sum(c * c for c in a) if a else 0.0
    if norm2 < 1e-12:
        return 0.0
    return max(0.0, sum(b * c for b, c in zip(bone, a)) / norm2)
