"""Live Link Face CSV reading/writing and rotation conventions (headrecon_addon/livelink.py,
pure Python). Tolerances: values are written with 8 significant digits (relative 1e-7);
rotation round trips in float64 (1e-9 rad)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from headrecon_addon import face_controls, livelink, naming
from headrecon_addon.livelink import LiveLinkError, LiveLinkFrame, LiveLinkTake

ROT_TOL = 1e-9


def _random_take(seed: int, n: int, fps: float) -> LiveLinkTake:
    rng = random.Random(seed)
    frames = []
    for i in range(n):
        weights = {livelink.arkit_name(c): rng.random() for c in livelink.BLENDSHAPES}
        rots = {g: tuple(rng.uniform(-0.5, 0.5) for _ in range(3)) for g in livelink.ROTATION_GROUPS}
        frames.append(LiveLinkFrame(2 * i, weights, rots))  # every other frame
    return LiveLinkTake(fps, frames)


def test_header_layout_and_names() -> None:
    header = livelink.HEADER
    assert header[:2] == ("Timecode", "BlendShapeCount") and len(header) == 2 + 52 + 9
    assert header[-9:] == ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch",
                           "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
    # the app's order: JawRight before JawLeft, MouthRight before MouthLeft
    assert header.index("JawRight") + 1 == header.index("JawLeft")
    assert header.index("MouthRight") + 1 == header.index("MouthLeft")
    # same 52 shapes as the ARKit names of the head's keys
    assert {livelink.arkit_name(c) for c in livelink.BLENDSHAPES} == set(face_controls.ARKIT_NAMES)
    assert livelink.arkit_name("JawOpen") == "jawOpen" and livelink.column_name("jawOpen") == "JawOpen"


@pytest.mark.parametrize(("text", "fps", "frames"), [
    ("00:00:00:00", 30, 0.0),
    ("00:00:01:12.000", 30, 42.0),
    ("01:02:03:04.500", 60, ((1 * 60 + 2) * 60 + 3) * 60 + 4.5),
    ("00:00:02;05", 25, 55.0),  # drop-frame separator accepted
])
def test_parse_timecode(text: str, fps: float, frames: float) -> None:
    assert livelink.parse_timecode(text, fps) == pytest.approx(frames, abs=1e-9)


def test_format_timecode_round_trip() -> None:
    for frame in (0, 1, 29, 30, 1799, 108000 + 17):
        text = livelink.format_timecode(frame, 30)
        assert livelink.parse_timecode(text, 30) == pytest.approx(frame, abs=1e-9)
    assert livelink.format_timecode(42, 30) == "00:00:01:12.000"


@pytest.mark.parametrize("text", ["12:00", "aa:bb:cc:dd", "00:61:00:00", "00:00:00:30"])
def test_bad_timecode(text: str) -> None:
    with pytest.raises(LiveLinkError, match="timecode|Timecode"):
        livelink.parse_timecode(text, 30)


def test_csv_round_trip(tmp_path: Path) -> None:
    take = _random_take(1, 12, 60.0)
    path = tmp_path / "take.csv"
    livelink.write_csv(path, take, start_frame=3600)
    lines = path.read_text().splitlines()
    assert lines[0].split(",") == list(livelink.HEADER)
    assert lines[1].startswith("00:01:00:00.000,61,")
    back = livelink.read_csv(path, 60.0)
    assert [f.frame for f in back.frames] == [f.frame for f in take.frames]
    for a, b in zip(take.frames, back.frames):
        assert b.weights.keys() == a.weights.keys()
        for name, v in a.weights.items():
            assert b.weights[name] == pytest.approx(v, rel=1e-7, abs=1e-12)
        for g in livelink.ROTATION_GROUPS:
            assert b.rotations[g] == pytest.approx(a.rotations[g], rel=1e-7, abs=1e-12)


def test_read_by_column_name_subframes_and_partial_columns() -> None:
    """Columns in another order, no rotations, sub-frame timecodes at 60 fps read at 30 fps:
    rows land on the nearest frame relative to the first; two rows on one frame keep the last."""
    text = ("Timecode,BlendShapeCount,JawOpen,EyeBlinkLeft\n"
            "10:00:00:10.000,2,0.1,0.2\n"
            "10:00:00:10.400,2,0.3,0.4\n"   # rounds to the same frame as the first: replaces it
            "10:00:00:11.500,2,0.5,0.6\n"   # 1.5 frames later -> frame 2 (round half to even)
            "10:00:01:00.000,2,0.7,0.8\n")  # 20 frames after the first
    take = livelink.parse_csv(text, 30.0)
    assert [f.frame for f in take.frames] == [0, 2, 20]
    assert take.frames[0].weights == {"jawOpen": 0.3, "eyeBlinkLeft": 0.4}
    assert take.frames[2].rotations == {}


@pytest.mark.parametrize(("text", "match"), [
    ("", "empty"),
    ("a,b,c\n1,2,3\n", "no Timecode column"),
    ("Timecode,Foo\n00:00:00:00,1\n", "none of the Live Link Face"),
    ("Timecode,BlendShapeCount,JawOpen\n", "no frames"),
    ("Timecode,BlendShapeCount,JawOpen\n00:00:00:00,1\n", "Row 2 .* 2 values"),
    ("Timecode,BlendShapeCount,JawOpen\n00:00:00:00,1,abc\n", "Row 2 .*'abc', not a number"),
    ("Timecode,BlendShapeCount,JawOpen\n00:00:00:00,1,nan\n", "non-finite"),
    ("Timecode,BlendShapeCount,JawOpen\nxx,1,0.1\n", "not a timecode"),
    ("Timecode,BlendShapeCount,JawOpen\n00:00:01:00,1,0.1\n00:00:00:05,1,0.1\n", "backwards"),
])
def test_bad_csv_gives_one_sentence(text: str, match: str) -> None:
    with pytest.raises(LiveLinkError, match=match) as info:
        livelink.parse_csv(text, 30.0, "take.csv")
    msg = str(info.value)
    assert msg.endswith(".") and "\n" not in msg


def test_missing_file_and_whole_fps(tmp_path: Path) -> None:
    with pytest.raises(LiveLinkError, match="cannot be read"):
        livelink.read_csv(tmp_path / "nope.csv", 30.0)
    with pytest.raises(LiveLinkError, match="whole frame rate"):
        livelink.format_csv(LiveLinkTake(29.97, [LiveLinkFrame(0)]))


def test_shape_key_targets() -> None:
    keys = naming.shape_key_names(3, ("jawOpen", "eyeBlinkLeft")) + ["MouthSmileLeft"]
    targets = livelink.shape_key_targets(keys)
    assert targets == {"jawOpen": "jawOpen", "eyeBlinkLeft": "eyeBlinkLeft",
                       "mouthSmileLeft": "MouthSmileLeft"}
    assert livelink.shape_key_targets(naming.shape_key_names(3)) == {}  # FLAME keys only


def test_euler_convention_and_round_trips() -> None:
    yaw = livelink.euler_to_matrix(0.3, 0.0, 0.0)
    # positive yaw turns the face (+Z) towards +X
    assert yaw[0][2] == pytest.approx(math.sin(0.3)) and yaw[2][2] == pytest.approx(math.cos(0.3))
    pitch = livelink.euler_to_matrix(0.0, 0.2, 0.0)
    assert pitch[1][2] == pytest.approx(-math.sin(0.2))  # the face (+Z) tilts down (-Y)
    rng = random.Random(4)
    for _ in range(50):
        e = (rng.uniform(-1.2, 1.2), rng.uniform(-1.2, 1.2), rng.uniform(-1.2, 1.2))
        assert livelink.matrix_to_euler(livelink.euler_to_matrix(*e)) == pytest.approx(e, abs=ROT_TOL)
        aa = livelink.euler_to_axis_angle(*e)
        assert livelink.axis_angle_to_euler(aa) == pytest.approx(e, abs=ROT_TOL)
    near_pi = (0.0, math.pi - 1e-8, 0.0)
    assert livelink.matrix_to_axis_angle(livelink.axis_angle_to_matrix(near_pi)) == \
        pytest.approx(near_pi, abs=1e-6)


def test_frame_from_capture_composes_root_and_neck() -> None:
    fr = livelink.frame_from_capture(5, {"jawOpen": 0.4}, {
        "root": [0.0, 0.2, 0.0], "neck": [0.0, 0.1, 0.0], "eye_L": [0.1, 0.0, 0.0],
        "eye_R": [0.0, -0.05, 0.0]})
    assert fr.frame == 5 and fr.weights["jawOpen"] == 0.4 and fr.weights["tongueOut"] == 0.0
    assert fr.rotations["Head"] == pytest.approx((0.3, 0.0, 0.0), abs=ROT_TOL)
    assert fr.rotations["LeftEye"] == pytest.approx((0.0, 0.1, 0.0), abs=ROT_TOL)
    assert fr.rotations["RightEye"] == pytest.approx((-0.05, 0.0, 0.0), abs=ROT_TOL)


def test_frame_from_capture_writes_the_whole_gaze() -> None:
    """With the fit's eyeLook axes the eye angles include what the eyeLook shapes turn: the
    left eye looking out fully (25 degrees) plus a 0.05 rad joint yaw is a 25 deg + 0.05 rad
    gaze; the importer takes the keys' part back off the bone."""
    axes = livelink.eye_look_axes(25.0)
    rots = {"eye_L": [0.0, 0.05, 0.0], "eye_R": [0.0, 0.0, 0.0]}
    fr = livelink.frame_from_capture(0, {"eyeLookOutLeft": 1.0, "eyeLookUpRight": 0.5}, rots, axes)
    assert fr.rotations["LeftEye"] == pytest.approx((math.radians(25.0) + 0.05, 0.0, 0.0),
                                                    abs=ROT_TOL)
    assert fr.rotations["RightEye"] == pytest.approx((0.0, -math.radians(12.5), 0.0), abs=ROT_TOL)
    back = livelink.eye_bone_rotation(fr.rotations["LeftEye"], fr.weights, axes, "LeftEye")
    assert back == pytest.approx((0.0, 0.05, 0.0), abs=ROT_TOL)
