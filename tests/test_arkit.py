"""ARKit shapes transferred from ICT-FaceKit onto FLAME (backend/model/arkit.py), on the real assets.

The transfer is computed once per session from ../shared/assets (a few seconds). The
reference ``expressions/arkit51_on_flame.npz`` (another artist's ARKit set on FLAME, used by
tests only) shows whether the same regions move in the same direction; the two sets are
different artists' shapes, so the thresholds are about agreement, not identity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from backend.model.arkit import (ARKIT_NAMES, MISSING_FROM_ICT, WEIGHTS_NAME, arkit_for_identity,
                           build_arkit_on_flame, ensure_arkit_on_flame, eye_lids,
                           ict_to_arkit_map, lid_apertures, load_arkit_on_flame,
                           load_flame_template, load_ict)
from backend.errors import ModelFileError
from backend.model.flame import load_flame
from backend.model.nonrigid import boundary_loops

# A vertex "moves" when its displacement exceeds this share of the shape's largest one.
MOVING_SHARE = 0.25
# Per shape: IoU of the moving sets, mean cosine over the reference's moving vertices,
# RMS magnitude ratio (ours / reference) over those vertices.
MIN_IOU = 0.25
MIN_COS = 0.6
RATIO_RANGE = (0.25, 4.0)
# Shapes whose ICT sculpt means something else than the reference's: ICT's mouthPress
# raises the chin and presses the lips up, its shrugs and funnel/pucker roll the lips
# differently. They must still point the same way on average.
DIFFERENT_SCULPT = {"mouthPressLeft", "mouthPressRight", "mouthShrugLower", "mouthShrugUpper",
                    "mouthFunnel", "mouthPucker"}
MIN_COS_DIFFERENT_SCULPT = 0.25
# Over all shared shapes.
MIN_MEDIAN_IOU = 0.55
MIN_MEDIAN_COS = 0.8
MEDIAN_RATIO_RANGE = (0.75, 1.4)


@pytest.fixture(scope="session")
def transfer(assets_dir: Path) -> tuple[list[str], np.ndarray, dict]:
    return build_arkit_on_flame(assets_dir)


@pytest.fixture(scope="session")
def flame_t(assets_dir: Path):
    return load_flame_template(assets_dir)


@pytest.fixture(scope="session")
def reference(assets_dir: Path) -> tuple[list[str], np.ndarray]:
    with np.load(assets_dir / "expressions" / "arkit51_on_flame.npz") as data:
        return [str(n) for n in data["names"]], data["deltas"].astype(np.float64)


def _lmk(flame_t, verts: np.ndarray) -> np.ndarray:
    out = np.zeros((68, 3))
    out[17:] = flame_t.lmk51 @ verts
    return out


def test_names_and_mapping(assets_dir: Path, transfer) -> None:
    assert len(ARKIT_NAMES) == 52 and len(set(ARKIT_NAMES)) == 52
    ict = load_ict(assets_dir)
    mapping = ict_to_arkit_map(ict.names)
    assert mapping["browDownLeft"] == ("browDown_L",)
    assert mapping["eyeBlinkRight"] == ("eyeBlink_R",)
    assert mapping["browInnerUp"] == ("browInnerUp_L", "browInnerUp_R")
    assert mapping["cheekPuff"] == ("cheekPuff_L", "cheekPuff_R")
    assert sorted(set(ARKIT_NAMES) - set(mapping)) == list(MISSING_FROM_ICT) == ["tongueOut"]
    names, deltas, report = transfer
    assert names == [n for n in ARKIT_NAMES if n != "tongueOut"]
    assert deltas.shape == (51, 5023, 3) and deltas.dtype == np.float32
    assert np.isfinite(deltas).all()
    assert report["missing"] == ["tongueOut"]


def test_registration_quality(transfer) -> None:
    """The registered FLAME lies on ICT's surface: mean < 0.5 mm, landmarks within 2 mm RMS."""
    report = transfer[2]
    print("\nreport:", {k: v for k, v in report.items() if k != "missing"})
    assert report["surface_dist_mean_mm"] < 0.5
    assert report["surface_dist_p95_mm"] < 1.5
    assert report["landmark_rms_registered_mm"] < 2.0
    assert report["transfer_vertices"] > 3000  # of 5023: face, scalp, neck (not eyeballs)


def test_matches_reference(transfer, reference) -> None:
    names, deltas, _ = transfer
    ref_names, ref = reference
    rows = []
    print(f"\n{'shape':20s} {'IoU':>5s} {'prec':>5s} {'cos':>5s} {'ratio':>5s} "
          f"{'max mm':>7s} {'ref mm':>7s}")
    for k, name in enumerate(names):
        if name not in ref_names:
            continue
        ours, theirs = deltas[k].astype(np.float64), ref[ref_names.index(name)]
        m_o, m_r = np.linalg.norm(ours, axis=1), np.linalg.norm(theirs, axis=1)
        mov_o, mov_r = m_o > MOVING_SHARE * m_o.max(), m_r > MOVING_SHARE * m_r.max()
        iou = (mov_o & mov_r).sum() / (mov_o | mov_r).sum()
        prec = (mov_o & mov_r).sum() / mov_o.sum()
        cos = ((ours[mov_r] * theirs[mov_r]).sum(1) / (m_o[mov_r] * m_r[mov_r] + 1e-12)).mean()
        ratio = np.sqrt((m_o[mov_r] ** 2).mean() / (m_r[mov_r] ** 2).mean())
        rows.append((name, iou, cos, ratio))
        print(f"{name:20s} {iou:5.2f} {prec:5.2f} {cos:5.2f} {ratio:5.2f} "
              f"{m_o.max() * 1e3:7.2f} {m_r.max() * 1e3:7.2f}")
    assert len(rows) == 51
    iou, cos, ratio = (np.array([r[i] for r in rows]) for i in (1, 2, 3))
    print(f"median IoU {np.median(iou):.2f}, cos {np.median(cos):.2f}, ratio {np.median(ratio):.2f}")
    for name, i, c, r in rows:
        assert i >= MIN_IOU, f"{name}: IoU {i:.2f}"
        assert c >= (MIN_COS_DIFFERENT_SCULPT if name in DIFFERENT_SCULPT else MIN_COS), \
            f"{name}: cosine {c:.2f}"
        assert RATIO_RANGE[0] <= r <= RATIO_RANGE[1], f"{name}: magnitude ratio {r:.2f}"
    assert np.median(iou) >= MIN_MEDIAN_IOU
    assert np.median(cos) >= MIN_MEDIAN_COS
    assert MEDIAN_RATIO_RANGE[0] <= np.median(ratio) <= MEDIAN_RATIO_RANGE[1]


def test_jaw_open_opens_the_mouth(transfer, flame_t) -> None:
    """Lower lip down by more than 2 cm, upper lip by less than 5 mm: the lips are not glued."""
    names, deltas, _ = transfer
    d = _lmk(flame_t, deltas[names.index("jawOpen")].astype(np.float64))
    for lower in (57, 66):  # outer and inner lower-lip midpoints
        assert d[lower, 1] < -0.02, d[lower]
    for upper in (51, 62):
        assert abs(d[upper, 1]) < 0.005, d[upper]
    base = _lmk(flame_t, flame_t.verts)
    gap = (base[62, 1] + d[62, 1]) - (base[66, 1] + d[66, 1])
    assert gap > 0.02  # inner lips more than 2 cm apart


@pytest.mark.parametrize("side", ["Left", "Right"])
def test_blink_closes_that_eye(transfer, flame_t, side: str) -> None:
    """eyeBlinkLeft closes the subject's left eye (+X, landmarks 42..47) to < 1.5 mm, the
    other eye's lid gap changes by < 0.1 mm."""
    names, deltas, _ = transfer
    base = _lmk(flame_t, flame_t.verts)
    assert base[42:48, 0].mean() > 0 > base[36:42, 0].mean()  # left eye at +X
    blink = _lmk(flame_t, flame_t.verts + deltas[names.index("eyeBlink" + side)])
    before, after = lid_apertures(base), lid_apertures(blink)
    shut, other = (1, 0) if side == "Left" else (0, 1)
    assert before[shut] > 0.008
    # signed vertical gap (upper minus lower lid): closed, not through the lower lid
    pairs = ((43, 47), (44, 46)) if side == "Left" else ((37, 41), (38, 40))
    for up, low in pairs:
        assert -0.0015 < blink[up, 1] - blink[low, 1] < 0.0015, (up, low)
    np.testing.assert_allclose(after[other], before[other], atol=1e-4)


@pytest.mark.parametrize("side,corner,other", [("Left", 54, 48), ("Right", 48, 54)])
def test_smile_raises_that_corner(transfer, flame_t, side: str, corner: int, other: int) -> None:
    """mouthSmileLeft lifts the +X mouth corner (landmark 54) by > 4 mm outwards-up; the other
    corner moves < 0.5 mm."""
    names, deltas, _ = transfer
    base = _lmk(flame_t, flame_t.verts)
    assert (base[corner, 0] > 0) == (side == "Left")
    d = _lmk(flame_t, deltas[names.index("mouthSmile" + side)].astype(np.float64))
    assert d[corner, 1] > 0.004
    assert np.sign(d[corner, 0]) == np.sign(base[corner, 0])  # towards the cheek
    assert np.linalg.norm(d[other]) < 0.0005


def test_left_right_mirror(transfer, flame_t) -> None:
    """Each ...Left shape mirrored through x = 0 matches its ...Right shape: mean cosine > 0.9
    over the moving vertices (FLAME's template is symmetric to within 4 mm)."""
    names, deltas, _ = transfer
    verts = flame_t.verts
    dist, mirror = cKDTree(verts).query(verts * [-1, 1, 1])
    assert dist.max() < 0.004
    for name in names:
        if not name.endswith("Left"):
            continue
        a = deltas[names.index(name)].astype(np.float64)
        b = deltas[names.index(name[:-4] + "Right")][mirror] * [-1, 1, 1]
        mag = np.linalg.norm(a, axis=1)
        mov = mag > MOVING_SHARE * mag.max()
        cos = ((a[mov] * b[mov]).sum(1) / (mag[mov] * np.linalg.norm(b[mov], axis=1) + 1e-12)).mean()
        assert cos > 0.9, f"{name}: mirror cosine {cos:.3f}"


def test_static_parts(transfer, flame_t) -> None:
    """The back and the crown of the head move < 0.1 mm in every shape, the neck border not at
    all, eyeballs only in the eyeLook shapes (rigid rotation about the eye joint)."""
    names, deltas, _ = transfer
    verts = flame_t.verts
    skull = (verts[:, 2] < -0.09) | (verts[:, 1] > 0.11)
    assert skull.sum() > 300
    assert np.linalg.norm(deltas[:, skull], axis=2).max() < 1e-4
    neck = min(boundary_loops(len(verts), flame_t.faces), key=lambda loop: verts[loop, 1].mean())
    assert len(neck) > 20 and np.abs(deltas[:, neck]).max() == 0.0
    for eye in (3, 4):
        ball = flame_t.weights[:, eye] > 0.5
        centre = flame_t.joints[eye]
        for k, name in enumerate(names):
            moved = np.linalg.norm(deltas[k, ball], axis=1).max()
            if name.startswith("eyeLook") and name.endswith("Left" if eye == 3 else "Right"):
                radius_before = np.linalg.norm(verts[ball] - centre, axis=1)
                radius_after = np.linalg.norm(verts[ball] + deltas[k, ball] - centre, axis=1)
                np.testing.assert_allclose(radius_after, radius_before, atol=1e-6)
                assert moved > 0.003
            else:
                assert moved == 0.0, name


def test_eye_look_directions(transfer, flame_t) -> None:
    """The eyeball front (gaze +Z) turns outwards/inwards/up/down as named."""
    names, deltas, _ = transfer
    for eye, side, out_sign in ((3, "Left", 1.0), (4, "Right", -1.0)):
        ball = flame_t.weights[:, eye] > 0.5
        front = np.flatnonzero(ball)[np.argmax(flame_t.verts[ball, 2])]
        step = {n: deltas[names.index(f"eyeLook{n}{side}"), front] for n in ("Out", "In", "Up", "Down")}
        assert step["Out"][0] * out_sign > 0.003 and step["In"][0] * out_sign < -0.003
        assert step["Up"][1] > 0.003 and step["Down"][1] < -0.003


def test_identity_adaptation_exact_for_similarity(transfer, flame_t) -> None:
    """A rotated, scaled, moved template gets exactly s R delta (tolerance 1e-6 m)."""
    names, deltas, _ = transfer
    lids = eye_lids(flame_t)
    same = arkit_for_identity(deltas, flame_t.verts, flame_t.verts, flame_t.faces, lids)
    np.testing.assert_allclose(same, deltas, atol=1e-7)
    angle = np.deg2rad(20.0)
    rot = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    s, t = 1.3, np.array([0.1, -0.2, 0.3])
    moved = flame_t.verts @ rot.T * s + t
    out = arkit_for_identity(deltas, moved, flame_t.verts, flame_t.faces, lids)
    np.testing.assert_allclose(out, deltas.astype(np.float64) @ rot.T * s, atol=1e-6)


def test_identity_adaptation_keeps_blink_closed(transfer, flame_t, dev_model_path: Path) -> None:
    """On random FLAME identities (2 sigma) eyeBlink still closes both lids to within 1.5 mm
    (the unadapted template deltas leave gaps up to 2 mm or push through), and other shapes
    keep their direction (mean cosine to the template deltas > 0.9)."""
    names, deltas, _ = transfer
    model = load_flame(dev_model_path)
    lids = eye_lids(flame_t)
    rng = np.random.default_rng(0)
    for _ in range(4):
        ident = (model.v_template + model.shapedirs @ (2.0 * rng.standard_normal(model.shapedirs.shape[2])))
        ident = ident.astype(np.float64)
        out = arkit_for_identity(deltas, ident, flame_t.verts, flame_t.faces, lids)
        for side, pairs in (("Left", ((43, 47), (44, 46))), ("Right", ((37, 41), (38, 40)))):
            shut = lids.landmarks(ident + out[names.index("eyeBlink" + side)])
            for up, low in pairs:
                assert abs(shut[up, 1] - shut[low, 1]) < 0.0015, (side, up, low)
        a, b = out.astype(np.float64), deltas.astype(np.float64)
        mag = np.linalg.norm(b, axis=2)
        cos = (a * b).sum(2) / (np.linalg.norm(a, axis=2) * mag + 1e-12)
        for k in range(len(names)):
            mov = mag[k] > MOVING_SHARE * mag[k].max()
            assert cos[k, mov].mean() > 0.9, names[k]


def test_ensure_is_idempotent_and_load(assets_dir: Path, tmp_path: Path, transfer) -> None:
    with pytest.raises(ModelFileError, match=r"run \./setup\.sh"):
        load_arkit_on_flame(tmp_path)
    path = ensure_arkit_on_flame(assets_dir, tmp_path)
    assert path == tmp_path / WEIGHTS_NAME
    names, deltas = load_arkit_on_flame(tmp_path)
    assert names == transfer[0]
    np.testing.assert_allclose(deltas, transfer[1], atol=1e-7)
    stamp = path.stat().st_mtime_ns
    assert ensure_arkit_on_flame(assets_dir, tmp_path) == path
    assert path.stat().st_mtime_ns == stamp  # up to date: not rewritten
    # a file from other inputs (or an older version) is rebuilt
    np.savez(path, names=np.array(names), deltas=deltas, provenance=np.array('{"format_version": 0}'))
    ensure_arkit_on_flame(assets_dir, tmp_path)
    with np.load(path) as data:
        assert '"format_version": 1' in str(data["provenance"])
    path.write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match=r"run \./setup\.sh"):
        load_arkit_on_flame(tmp_path)
