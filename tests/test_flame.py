"""FLAME model and LBS tests: dev model from the assets, plus small models generated here."""

from __future__ import annotations

import logging
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch

from backend.errors import HeadReconError, ModelFileError
from backend.model.flame import (FLAME, JOINT_NAMES, load_eyelid_deltas, load_flame, select_device,
                           sha_warning)
from backend.model.lbs import rigid_transforms, rodrigues, skew


@pytest.fixture(scope="module")
def dev(dev_model_path: Path, assets_dir: Path) -> FLAME:
    return FLAME(load_flame(dev_model_path), eyelid_deltas=load_eyelid_deltas(assets_dir))


# --------------------------------------------------------------------------------- lbs


def test_rodrigues_matches_matrix_exponential() -> None:
    rvec = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    rvec[:4] *= 1e-5  # Taylor branch
    rvec[4] = 0.0
    expected = torch.linalg.matrix_exp(skew(rvec))
    torch.testing.assert_close(rodrigues(rvec), expected, atol=1e-12, rtol=0)


def test_rodrigues_gradient_finite_and_exact_at_zero() -> None:
    r = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(rodrigues, r)  # (3,3,3): dR/dr_k = [e_k]_x at 0
    expected = torch.stack([skew(e) for e in torch.eye(3, dtype=torch.float64)], dim=-1)
    torch.testing.assert_close(jac, expected, atol=1e-12, rtol=0)


def test_rigid_transforms_match_homogeneous_chain() -> None:
    """The closed-form chain equals the product of 4x4 matrices G_j = G_p [R_j | J_j - J_p]."""
    gen = torch.Generator().manual_seed(1)
    parents = [-1, 0, 1, 1, 1]
    rot = rodrigues(0.5 * torch.randn(3, 5, 3, dtype=torch.float64, generator=gen))
    joints = torch.randn(3, 5, 3, dtype=torch.float64, generator=gen)

    def hom(r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        m = torch.eye(4, dtype=torch.float64).repeat(r.shape[0], 1, 1)
        m[:, :3, :3], m[:, :3, 3] = r, t
        return m

    world = [hom(rot[:, 0], joints[:, 0])]
    for j in range(1, 5):
        world.append(world[parents[j]] @ hom(rot[:, j], joints[:, j] - joints[:, parents[j]]))
    g = torch.stack(world, dim=1)
    posed, skin = rigid_transforms(rot, joints, parents)
    torch.testing.assert_close(posed, g[:, :, :3, 3], atol=1e-12, rtol=0)
    expected_skin = g.clone()
    expected_skin[:, :, :3, 3] -= (g[:, :, :3, :3] @ joints.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(skin, expected_skin, atol=1e-12, rtol=0)


# --------------------------------------------------------------------------- dev model


def test_dev_model_layout(dev: FLAME) -> None:
    data = dev.data
    assert data.name == "dev"
    assert data.joint_names == JOINT_NAMES
    assert data.parents.tolist() == [-1, 0, 1, 1, 1]
    assert data.v_template.shape == (5023, 3) and data.faces.shape == (9976, 3)
    rest = data.J_regressor @ data.v_template
    assert rest[3, 0] > 0.02 and rest[4, 0] < -0.02  # eye_L at +X (subject's left)
    assert rest[2, 1] < rest[1, 1] + 0.01  # jaw not above the neck joint by more than 1 cm


def test_rest_pose_is_template_exactly(dev: FLAME) -> None:
    out = dev(torch.zeros(2, 60), torch.zeros(2, 50), torch.zeros(2, 5, 3))
    assert torch.equal(out.vertices, dev.v_template.expand(2, -1, -1))
    assert torch.equal(out.joints, out.rest_joints)
    torch.testing.assert_close(out.rest_joints[0], dev.J_regressor @ dev.v_template,
                               atol=1e-7, rtol=0)


def test_jaw_rotation_moves_only_jaw_weighted_vertices(dev: FLAME) -> None:
    """Rotating the jaw by 0.3 rad about X (mouth opening), with ``B_P`` the jaw pose corrective
    ``posedirs[:, :, jaw block] @ flatten(R_jaw - I)`` and ``w`` the jaw skinning weight:
    * every vertex moves by ``B_P + w (R - I)(v + B_P - J_jaw)`` (1e-7 m), i.e. only the jaw
      transform acts, in proportion to the weight;
    * vertices with zero jaw weight move by exactly ``B_P`` (1e-7 m), which is below 2 mm;
    * the chin (lowest vertex with jaw weight > 0.9) moves down by more than 1 cm.
    """
    jaw = dev.joint_index("jaw")
    pose = torch.zeros(1, 5, 3)
    pose[0, jaw, 0] = 0.3
    out = dev(torch.zeros(1, 60), torch.zeros(1, 50), pose)
    rot = rodrigues(pose[0, jaw])
    feature = (rot - torch.eye(3)).reshape(-1)
    corrective = torch.einsum("vcp,p->vc", dev.posedirs[:, :, 9 * (jaw - 1):9 * jaw], feature)
    disp = out.vertices[0] - dev.v_template
    w = dev.weights[:, jaw]
    v_p = dev.v_template + corrective
    expected = corrective + w[:, None] * ((v_p - out.rest_joints[0, jaw]) @ (rot - torch.eye(3)).T)
    torch.testing.assert_close(disp, expected, atol=1e-7, rtol=0)
    free = w == 0
    assert free.sum() > 50
    torch.testing.assert_close(disp[free], corrective[free], atol=1e-7, rtol=0)
    assert disp[free].norm(dim=1).max() < 2e-3
    strong = torch.where(w > 0.9)[0]
    chin = strong[dev.v_template[strong, 1].argmin()]
    assert disp[chin, 1] < -0.01


def test_identity_and_expression_are_linear(dev: FLAME) -> None:
    gen = torch.Generator().manual_seed(2)
    s1, s2 = torch.randn(2, 1, 60, generator=gen)
    e1, e2 = torch.randn(2, 1, 50, generator=gen)
    zero_pose = torch.zeros(1, 5, 3)

    def shaped(s: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return dev(s, e, zero_pose).v_shaped[0] - dev.v_template

    torch.testing.assert_close(shaped(2 * s1 - 0.5 * s2, 0 * e1),
                               2 * shaped(s1, 0 * e1) - 0.5 * shaped(s2, 0 * e1), atol=1e-6, rtol=0)
    torch.testing.assert_close(shaped(0 * s1, 1.5 * e1 + e2),
                               1.5 * shaped(0 * s1, e1) + shaped(0 * s1, e2), atol=1e-6, rtol=0)
    torch.testing.assert_close(shaped(s1, e1), shaped(s1, 0 * e1) + shaped(0 * s1, e1),
                               atol=1e-6, rtol=0)
    # the blendshape sum written out with numpy, and the paper's J(beta) = J_reg (T + B_S beta)
    d = dev.data
    expected = np.einsum("vcs,s->vc", d.shapedirs, s1[0].numpy())
    torch.testing.assert_close(shaped(s1, 0 * e1), torch.from_numpy(expected), atol=1e-6, rtol=0)
    out = dev(s1, e1, zero_pose)
    rest = d.J_regressor @ (d.v_template + expected)
    torch.testing.assert_close(out.rest_joints[0], torch.from_numpy(rest), atol=1e-6, rtol=0)


def test_truncated_coefficients_and_subset(dev: FLAME, dev_model_path: Path) -> None:
    gen = torch.Generator().manual_seed(3)
    s, e = torch.randn(1, 10, generator=gen), torch.randn(1, 5, generator=gen)
    pose = 0.2 * torch.randn(1, 5, 3, generator=gen)
    t = torch.tensor([[0.01, -0.02, -0.5]])
    full = dev(torch.cat([s, torch.zeros(1, 50)], 1), torch.cat([e, torch.zeros(1, 45)], 1),
               pose, t, eyelids=torch.tensor([[0.3, 0.9]]))
    short = dev(s, e, pose, t, eyelids=torch.tensor([[0.3, 0.9]]))
    torch.testing.assert_close(short.vertices, full.vertices, atol=1e-6, rtol=0)
    ids = np.array([3000, 7, 4051, 12, 3564])
    sub = dev.subset(ids)(s, e, pose, t, eyelids=torch.tensor([[0.3, 0.9]]))
    torch.testing.assert_close(sub.vertices[0], full.vertices[0, ids], atol=1e-6, rtol=0)
    torch.testing.assert_close(sub.joints, full.joints, atol=1e-6, rtol=0)
    small = load_flame(dev_model_path, n_shape=10, n_expr=5)
    assert small.shapedirs.shape == (5023, 3, 10) and small.exprdirs.shape == (5023, 3, 5)
    with pytest.raises(ModelFileError, match="60 shapedirs components, 61 were requested"):
        load_flame(dev_model_path, n_shape=61)


def test_eyelid_blendshapes_close_the_named_eye(dev: FLAME, assets_dir: Path) -> None:
    """Blink 0 moves (by more than 0.1 mm) only vertices at +X (subject's left) and moves the
    lid down on average; blink 1 the same at -X."""
    deltas = load_eyelid_deltas(assets_dir)
    v = dev.data.v_template
    for k, sign in ((0, 1.0), (1, -1.0)):
        moved = np.linalg.norm(deltas[k], axis=1) > 1e-4
        assert moved.sum() > 100
        assert np.all(sign * v[moved, 0] > 0.0)
        assert deltas[k][moved, 1].mean() < 0.0
        assert np.abs(deltas[k]).max() > 5e-3
    with pytest.raises(ModelFileError, match="ordered"):
        FLAME(dev.data, eyelid_deltas=deltas[::-1])


# ---------------------------------------------------------------- small generated models


def _small_model(seed: int = 0, n_v: int = 40) -> dict[str, np.ndarray]:
    """A random 5-joint model in FLAME's layout and canonical joint order (root, neck, jaw,
    eye_L, eye_R); the first five vertices sit on the joints (the regressor picks them)."""
    rng = np.random.default_rng(seed)
    v = rng.normal(scale=0.05, size=(n_v, 3))
    v[:5] = [[0, -0.15, -0.08], [0, -0.01, -0.05], [0, -0.02, -0.055],
             [0.03, 0.02, 0.02], [-0.03, 0.02, 0.02]]
    weights = rng.random((n_v, 5)) ** 3
    weights /= weights.sum(1, keepdims=True)
    return {
        "v_template": v, "f": rng.integers(0, n_v, size=(30, 3)),
        "shapedirs": rng.normal(scale=1e-3, size=(n_v, 3, 300)),
        "exprdirs": rng.normal(scale=1e-3, size=(n_v, 3, 100)),
        "posedirs": rng.normal(scale=1e-3, size=(n_v, 3, 36)),
        "J_regressor": np.eye(5, n_v), "weights": weights,
        "kintree_table": np.array([[2**32 - 1, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
    }


class _FakeCh:
    """Pickles like ``chumpy.ch.Ch``: a plain object whose ``__dict__`` holds the array in ``x``."""

    def __init__(self, x: np.ndarray):
        self.x = x
        self._dirty_vars: set[str] = set()
        self._itr = None


def _write_official_pickle(model: dict[str, np.ndarray], path: Path, swap_eyes: bool) -> None:
    """Write ``model`` like the official pickle: shapedirs (V,3,400) as a ``chumpy.ch.Ch``
    object, J_regressor as scipy.sparse.csc_matrix; optionally with the eye joints swapped.
    A fake ``chumpy`` module exists only while pickling."""
    order = [0, 1, 2, 4, 3] if swap_eyes else [0, 1, 2, 3, 4]
    posedirs = model["posedirs"].reshape(-1, 3, 4, 9)[:, :, [o - 1 for o in order[1:]]]
    fake = types.ModuleType("chumpy.ch")
    fake.Ch = type("Ch", (_FakeCh,), {"__module__": "chumpy.ch"})
    data = {
        "v_template": model["v_template"], "f": model["f"].astype(np.uint32),
        "shapedirs": fake.Ch(np.concatenate([model["shapedirs"], model["exprdirs"]], axis=2)),
        "posedirs": posedirs.reshape(-1, 3, 36),
        "J_regressor": scipy.sparse.csc_matrix(model["J_regressor"][order]),
        "weights": model["weights"][:, order],
        "kintree_table": model["kintree_table"].astype(np.uint32),
        "bs_style": "lbs", "bs_type": "lrotmin",
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "chumpy", types.ModuleType("chumpy"))
        mp.setitem(sys.modules, "chumpy.ch", fake)
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=2)


def test_pickle_and_npz_loaders_agree(tmp_path: Path) -> None:
    """Small model as an official-layout pickle (chumpy-like shapedirs, sparse regressor, eye
    joints stored in the other order) and as a dev-layout npz: same arrays, same outputs."""
    model = _small_model()
    pkl = tmp_path / "generic_model.pkl"
    _write_official_pickle(model, pkl, swap_eyes=True)
    npz = tmp_path / "small.npz"
    np.savez(npz, **model)
    assert b"chumpy.ch" in pkl.read_bytes() and b"csc_matrix" in pkl.read_bytes()
    assert "chumpy" not in sys.modules
    a, b = load_flame(pkl), load_flame(npz)
    assert "chumpy" not in sys.modules
    assert a.name == "FLAME 2020" and b.name == "small"
    for key in ("v_template", "faces", "shapedirs", "exprdirs", "posedirs", "J_regressor",
                "weights", "parents"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    assert a.shapedirs.shape == (40, 3, 300) and a.exprdirs.shape == (40, 3, 100)
    gen = torch.Generator().manual_seed(4)
    args = (torch.randn(2, 300, generator=gen), torch.randn(2, 100, generator=gen),
            0.3 * torch.randn(2, 5, 3, generator=gen), torch.randn(2, 3, generator=gen))
    torch.testing.assert_close(FLAME(a)(*args).vertices, FLAME(b)(*args).vertices,
                               atol=0, rtol=0)


def test_sha_warning_for_a_wrong_flame2023_open(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "flame2023_Open.pkl"
    _write_official_pickle(_small_model(), path, swap_eyes=False)
    text = sha_warning(path)
    assert text is not None and "differs from the published FLAME 2023 Open" in text
    with caplog.at_level(logging.WARNING, logger="backend.model.flame"):
        data = load_flame(path)
    assert data.name == "FLAME 2023 Open"
    assert any("SHA-256" in r.getMessage() for r in caplog.records)
    other = tmp_path / "generic_model.pkl"
    other.write_bytes(path.read_bytes())
    assert sha_warning(other) is None


def test_bad_files_raise_model_file_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        load_flame(tmp_path / "missing.pkl")
    garbage = tmp_path / "generic_model.pkl"
    garbage.write_bytes(b"this is not a pickle at all")
    with pytest.raises(ModelFileError, match="cannot be read"):
        load_flame(garbage)
    truncated = tmp_path / "truncated.npz"
    np.savez(truncated, **_small_model())
    truncated.write_bytes(truncated.read_bytes()[:500])
    with pytest.raises(ModelFileError, match="cannot be read"):
        load_flame(truncated)
    wrong = _small_model()
    wrong["shapedirs"] = wrong["shapedirs"][:-1]
    np.savez(tmp_path / "wrong.npz", **wrong)
    with pytest.raises(ModelFileError, match=r"shapedirs of shape \(39, 3, 300\)"):
        load_flame(tmp_path / "wrong.npz")
    partial = {k: v for k, v in _small_model().items() if k != "weights"}
    np.savez(tmp_path / "partial.npz", **partial)
    with pytest.raises(ModelFileError, match="lacks the array"):
        load_flame(tmp_path / "partial.npz")
    (tmp_path / "model.obj").write_text("v 0 0 0\n")
    with pytest.raises(ModelFileError, match="must be a .pkl"):
        load_flame(tmp_path / "model.obj")
    with pytest.raises(ModelFileError, match="cannot be read"):
        load_eyelid_deltas(tmp_path)


def test_select_device() -> None:
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(HeadReconError, match="Unknown device"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(HeadReconError, match="no CUDA GPU"):
            select_device("cuda:0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(dev: FLAME) -> None:
    gen = torch.Generator().manual_seed(5)
    args = (torch.randn(2, 60, generator=gen), torch.randn(2, 50, generator=gen),
            0.3 * torch.randn(2, 5, 3, generator=gen), torch.randn(2, 3, generator=gen))
    cpu = dev(*args, eyelids=torch.ones(2, 2))
    gpu_model = FLAME(dev.data, eyelid_deltas=dev.eyelid_deltas.numpy()).to("cuda")
    gpu = gpu_model(*(a.cuda() for a in args), eyelids=torch.ones(2, 2, device="cuda"))
    assert gpu.vertices.device.type == "cuda"
    torch.testing.assert_close(gpu.vertices.cpu(), cpu.vertices, atol=1e-5, rtol=0)
