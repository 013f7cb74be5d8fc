"""Mouth interior placement (backend/model/mouth.py) on the dev FLAME model: the asset's
teeth split at the bite plane, and for the template and random identities (60 identity
components, N(0, 1.5)) nothing of the mouth shows with the mouth closed and nothing pokes
through the lips or cheeks with the jaw open (0.35 rad, the Jaw Open preset) and the tongue
out (tests/mouth_support.py measures it from 9 views); the upper incisors show 2-3 mm under
the upper lip with the jaw open and the tongue lies under the lower incisors' edges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.model import mouth as M
from backend.model.flame import load_flame
from backend.model.assets import flame_model_path
from backend.files.bundle import flame_forward_np
from tests import mouth_support

JAW_OPEN_RAD = 0.35
REAL_POKE_MM = 20.0  # deeper "pokes" are rays into the open mouth hitting a nostril from inside


@pytest.fixture(scope="module")
def model(assets_dir: Path):
    return load_flame(flame_model_path(None, assets_dir))


@pytest.fixture(scope="module")
def assets(assets_dir: Path) -> M.MouthAssets:
    return M.load_mouth_assets(assets_dir / "mouth")


def test_teeth_split_at_the_bite_plane(assets: M.MouthAssets) -> None:
    up, low = assets.upper_teeth, assets.lower_teeth
    a, b = assets.bite_line
    assert abs(b) < 0.5  # nearly level
    for part, sign in ((up, 1.0), (low, -1.0)):
        labels = M._components(len(part.verts), part.faces)
        teeth = [k for k in range(labels.max() + 1) if (labels == k).sum() < 200]
        assert len(teeth) == 16
        centres = np.array([part.verts[labels == k].mean(0) for k in teeth])
        assert (sign * (centres[:, 1] - (a + b * centres[:, 2])) > 0).all()


def test_parts_weights_and_cavity_rim(model, assets) -> None:
    geo = M.place_mouth(assets, model.v_template, model.weights, model.joint_names)
    jaw, neck = model.joint_names.index("jaw"), model.joint_names.index("neck")
    for name, part in geo.parts.items():
        np.testing.assert_allclose(part.weights.sum(1), 1.0, atol=1e-9)
        assert part.faces.max() < len(part.verts) and part.uv_faces.max() < len(part.uv)
    assert (geo.parts["upper_teeth"].weights[:, neck] == 1).all()
    assert (geo.parts["lower_teeth"].weights[:, jaw] == 1).all()
    assert (geo.parts["tongue"].weights[:, jaw] == 1).all()
    rim = geo.parts["cavity"].verts[:M.CAVITY_RIM_POINTS]
    ring = model.v_template[list(M.LIP_RINGS["inner_upper"] + M.LIP_RINGS["inner_lower"])]
    d = np.linalg.norm(rim[:, None] - ring[None], axis=2).min(1)
    assert d.max() < 0.006  # the opening follows the inner lip ring
    assert geo.tongue_out[:, 2].max() == pytest.approx(M.TONGUE_OUT_M, rel=0.05)
    assert np.abs(geo.head_tongue_out).max() <= M.LIPS_PART_LOWER_M + 1e-9


def _real_pokes(views: dict) -> tuple[int, float]:
    real = [v for v in views.values() if v[1] and v[2] < REAL_POKE_MM]
    return sum(v[1] for v in real), max([0.0] + [v[2] for v in real])


def test_nothing_pokes_through_closed_or_open(model, assets) -> None:
    """Closed: what shows is seen through the identity's own lip gap (a slit at most); open:
    lots of teeth, tongue and cavity, none of it outside the skin."""
    rng = np.random.default_rng(14)
    shapes = [np.zeros(60)] + [rng.normal(0.0, 1.5, 60) for _ in range(5)]
    for k, shape in enumerate(shapes):
        closed, geo = mouth_support.measure(model, assets, shape, jaw=0.0)
        opened, _ = mouth_support.measure(model, assets, shape, jaw=JAW_OPEN_RAD)
        c_vis, o_vis = sum(v[0] for v in closed.values()), sum(v[0] for v in opened.values())
        (c_poke, c_mm), (o_poke, o_mm) = _real_pokes(closed), _real_pokes(opened)
        print(f"identity {k}: scale {geo.scale:.3f}; closed: {c_vis} mouth px visible (9 views), "
              f"{c_poke} poke px ({c_mm:.1f} mm); jaw open: {o_vis} visible, {o_poke} poke px "
              f"({o_mm:.1f} mm)")
        assert c_poke == 0 and o_poke == 0
        assert c_vis < 0.02 * o_vis and o_vis > 10000


def test_tongue_out_reaches_past_the_lips(model, assets) -> None:
    geo = M.place_mouth(assets, model.v_template, model.weights, model.joint_names)
    out = geo.parts["tongue"].verts + geo.tongue_out
    tip = out[:, 2].max()
    lips = model.v_template[[M.LIP_RINGS["outer_upper"][7], M.LIP_RINGS["outer_lower"][7]], 2].max()
    print(f"tongue tip {1e3 * (tip - lips):.1f} mm in front of the lips at tongueOut = 1")
    assert tip > lips + 0.005
    # it leaves between the lips, over the lower incisors (not through the lower lip)
    low = geo.parts["lower_teeth"]
    lower_edge = M.central_incisors(M.MeshPart(low.verts, low.faces, low.uv, low.uv_faces))[:, 1].max()
    over_teeth = np.abs(out[:, 2] - low.verts[:, 2].max()) < 0.002
    assert out[over_teeth, 1].min() > lower_edge


def test_dev_bundle_has_the_mouth(tmp_path: Path, assets_dir: Path) -> None:
    from backend.files.bundle import write_dev_bundle
    from headrecon_addon.bundle import load_bundle

    result = write_dev_bundle(tmp_path / "b", seed=2, assets=assets_dir)
    assert {result["files"][k] for k in ("mouth", "teeth_texture", "tongue_texture")} == {
        "mouth.npz", "teeth.png", "tongue.png"}
    b = load_bundle(tmp_path / "b")
    assert b.mouth is not None and set(b.mouth.textures) == {"teeth", "tongue"} and not b.warnings


def test_incisors_show_under_the_lip_and_tongue_lies_low(model, assets) -> None:
    """Anatomy: a relaxed upper lip shows 1-3 mm of the upper incisors (rest display). With the
    Jaw Open preset FLAME's upper lip sags ~2 mm, so the incisal edge sits 4.5 mm under the
    closed lip's lowest midline point and 2-3 mm under the open one; the tongue's highest point
    stays under the lower incisors' edges, its tip behind them."""
    rng = np.random.default_rng(14)
    jaw = model.joint_names.index("jaw")
    for k, shape in enumerate([np.zeros(60)] + [rng.normal(0.0, 1.5, 60) for _ in range(5)]):
        v = model.v_template + model.shapedirs[:, :, :60] @ shape
        geo = M.place_mouth(assets, v, model.weights, model.joint_names)
        upper = M.central_incisors(M.MeshPart(geo.parts["upper_teeth"].verts, geo.parts["upper_teeth"].faces,
                                              geo.parts["upper_teeth"].uv, geo.parts["upper_teeth"].uv_faces))
        lower = M.central_incisors(M.MeshPart(geo.parts["lower_teeth"].verts, geo.parts["lower_teeth"].faces,
                                              geo.parts["lower_teeth"].uv, geo.parts["lower_teeth"].uv_faces))
        pose = np.zeros((5, 3))
        pose[2, 0] = JAW_OPEN_RAD
        opened = flame_forward_np(model, shape, np.zeros(model.exprdirs.shape[2]), pose).vertices
        lip_closed = M.upper_lip_edge(v, model.weights[:, jaw])
        lip_open = M.upper_lip_edge(opened, model.weights[:, jaw])
        edge = upper[:, 1].min()
        tongue = geo.parts["tongue"].verts
        print(f"identity {k}: incisal edge {1e3 * (lip_closed - edge):.1f} mm under the closed upper lip, "
              f"{1e3 * (lip_open - edge):.1f} mm under the open one; tongue top "
              f"{1e3 * (lower[:, 1].max() - tongue[:, 1].max()):.1f} mm under the lower incisors' edges")
        assert 0.0015 < lip_open - edge < 0.0035
        assert lip_closed - edge == pytest.approx(M.INCISOR_BELOW_LIP_M, abs=1e-6)
        assert tongue[:, 1].max() < lower[:, 1].max() - 0.001
        assert tongue[:, 2].max() < lower[:, 2].max()
