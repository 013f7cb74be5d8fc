"""Renderer: coverage, barycentrics, depth, perspective correctness, gradients, SH shading.

The meshes here are small hand-made triangles / an octahedron built in code (analytic ground
truth), plus the dev FLAME template for the checks that need a real head.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backend.fit.render import (face_normals, interpolate, interpolate_face_varying, pixel_rays,
                            rasterize, raycast_points, sh_basis, sh_shading, vertex_normals)

# Camera of the analytic scenes: 32 x 24 pixels, focal 20 px, principal point off-centre.
H, W, F, CX, CY = 24, 32, 20.0, 16.3, 11.7
LAMBERT = torch.tensor([math.pi] + [2 * math.pi / 3] * 3 + [math.pi / 4] * 5, dtype=torch.float64)


def _ray_at_depth(z: float) -> np.ndarray:
    """(H, W, 2) view-frame x, y where each pixel-centre ray crosses the plane -z = z."""
    j = np.arange(W) + 0.5
    i = np.arange(H) + 0.5
    x = (j[None, :] - CX) / F * z
    y = (CY - i[:, None]) / F * z
    return np.stack(np.broadcast_arrays(x, y), axis=-1)


def _fronto_triangle(z: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right triangle (-0.5,-0.4), (0.6,-0.4), (-0.5,0.7) in the plane -z = z, CCW from the camera."""
    v = torch.tensor([[[-0.5, -0.4, -z], [0.6, -0.4, -z], [-0.5, 0.7, -z]]], dtype=torch.float64)
    return v, torch.tensor([[0, 1, 2]])


def test_coverage_barycentrics_depth_fronto_parallel() -> None:
    verts, faces = _fronto_triangle(2.0)
    frags = rasterize(verts, faces, F, CX, CY, H, W)
    xy = _ray_at_depth(2.0)
    b1 = (xy[..., 0] + 0.5) / 1.1  # closed form for this right triangle
    b2 = (xy[..., 1] + 0.4) / 1.1
    b0 = 1.0 - b1 - b2
    expected = np.stack([b0, b1, b2], -1)
    inside = (expected > 0).all(-1)
    margin = np.abs(expected).min(-1) > 1e-3  # pixel centres not on an edge
    assert inside.sum() > 50 and (~inside).sum() > 50
    mask = frags.mask[0].numpy()
    np.testing.assert_array_equal(mask[margin], inside[margin])
    np.testing.assert_array_equal(frags.face_idx[0].numpy()[mask], 0)
    np.testing.assert_allclose(frags.bary[0].numpy()[mask], expected[mask], atol=1e-6)
    np.testing.assert_allclose(frags.depth[0].numpy()[mask], 2.0, atol=1e-9)


def test_background_values() -> None:
    verts, faces = _fronto_triangle(2.0)
    frags = rasterize(verts, faces, F, CX, CY, H, W)
    bg = ~frags.mask[0]
    assert bg.any()
    assert (frags.face_idx[0][bg] == -1).all()
    assert (frags.depth[0][bg] == -1).all()
    assert (frags.bary[0][bg] == 0).all()
    colour = interpolate(torch.ones(1, 3, 2, dtype=torch.float64), faces, frags)
    assert (colour[0][bg] == 0).all() and (colour[0][~bg] - 1).abs().max() < 1e-9


def test_behind_camera_and_empty() -> None:
    verts, faces = _fronto_triangle(-2.0)  # the triangle is behind the camera (+z)
    frags = rasterize(verts, faces, F, CX, CY, H, W)
    assert not frags.mask.any()
    assert frags.bary.shape == (1, H, W, 3) and frags.depth.shape == (1, H, W)


def test_perspective_correct_on_tilted_plane() -> None:
    """Interpolating vertex positions must give the exact ray-plane intersection, which
    screen-space (affine) interpolation does not for a plane tilted in depth."""
    # Plane -z = 2 + 0.8 x, spanned by a large triangle.
    xs = np.array([-1.5, 1.5, -1.5])
    ys = np.array([-1.2, -1.2, 1.5])
    v = torch.tensor(np.stack([xs, ys, -(2.0 + 0.8 * xs)], 1)[None], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2]])
    frags = rasterize(v, faces, F, CX, CY, H, W)
    mask = frags.mask[0]
    assert mask.sum() > 100
    d = pixel_rays(F, CX, CY, H, W, dtype=torch.float64)
    t = 2.0 / (1.0 - 0.8 * d[..., 0])  # -t = -(2 + 0.8 t dx)
    expected = d * t[..., None]
    got = interpolate(v, faces, frags)[0]
    torch.testing.assert_close(got[mask], expected[mask], atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(frags.depth[0][mask], t[mask], atol=1e-9, rtol=1e-9)
    # Affine (screen-space) barycentrics differ by far more than the tolerance above.
    proj = torch.stack([CX + F * v[0, :, 0] / -v[0, :, 2], CY - F * v[0, :, 1] / -v[0, :, 2]], 1)
    jj, ii = torch.meshgrid(torch.arange(W) + 0.5, torch.arange(H) + 0.5, indexing="xy")
    e1, e2 = proj[1] - proj[0], proj[2] - proj[0]
    det = e1[0] * e2[1] - e1[1] * e2[0]
    p = torch.stack([jj - proj[0, 0], ii - proj[0, 1]], -1).double()
    s1 = (p[..., 0] * e2[1] - p[..., 1] * e2[0]) / det
    s2 = (e1[0] * p[..., 1] - e1[1] * p[..., 0]) / det
    affine = torch.stack([1 - s1 - s2, s1, s2], -1)
    assert (affine[mask] - frags.bary[0][mask]).abs().max() > 1e-2


def test_nearest_surface_wins_and_face_ids() -> None:
    near = [[-0.2, -0.2, -1.5], [0.3, -0.2, -1.5], [-0.2, 0.3, -1.5]]
    far = [[-1.0, -1.0, -3.0], [1.0, -1.0, -3.0], [-1.0, 1.0, -3.0]]
    verts = torch.tensor([far + near], dtype=torch.float32)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    frags = rasterize(verts, faces, F, CX, CY, H, W)
    ids = frags.face_idx[0]
    assert (ids == 1).sum() > 10 and (ids == 0).sum() > 10
    torch.testing.assert_close(frags.depth[0][ids == 1], torch.full_like(frags.depth[0][ids == 1], 1.5))
    torch.testing.assert_close(frags.depth[0][ids == 0], torch.full_like(frags.depth[0][ids == 0], 3.0))


def test_batch_and_refit_after_moving_vertices() -> None:
    """Batch slots hold different meshes; moving the vertices (BVH refit) moves the coverage."""
    v1, faces = _fronto_triangle(2.0)
    v2 = v1.clone()
    v2[..., 0] += 0.4
    both = rasterize(torch.cat([v1, v2]), faces, F, CX, CY, H, W)
    single = [rasterize(v, faces, F, CX, CY, H, W) for v in (v1, v2)]  # reuses slot 0, refitted
    for b in range(2):
        assert torch.equal(both.mask[b], single[b].mask[0])
        torch.testing.assert_close(both.bary[b], single[b].bary[0])
    assert not torch.equal(both.mask[0], both.mask[1])


def test_gradients_match_finite_differences() -> None:
    """Barycentrics and depth of a two-triangle quad, d/d(vertices) by autograd vs central
    differences (gradcheck: eps 1e-6, atol 1e-5; no pixel centre lies near an edge)."""
    verts = torch.tensor([[[-0.55, -0.45, -2.0], [0.6, -0.5, -2.3], [0.65, 0.6, -2.1],
                           [-0.5, 0.55, -1.8]]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    weights = torch.rand(H, W, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def loss(v: torch.Tensor) -> torch.Tensor:
        frags = rasterize(v, faces, F, CX, CY, H, W)
        attr = torch.tensor([[1.0, 0.0, 0.3], [0.0, 1.0, 0.2], [0.5, 0.5, 1.0], [0.2, 0.9, 0.1]],
                            dtype=torch.float64)
        img = interpolate(attr[None], faces, frags)
        return torch.stack([(img * weights).sum(), (frags.depth * weights[..., 0]).sum(),
                            (frags.bary ** 2).sum()])

    v = verts.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(loss, (v,), eps=1e-6, atol=1e-5, rtol=1e-4)
    g, = torch.autograd.grad(loss(v)[0], v)
    assert g.abs().sum() > 1.0


def test_interpolate_face_varying_matches_vertex_interpolation() -> None:
    verts, faces = _fronto_triangle(2.0)
    attr = torch.tensor([[0.1, 0.2], [0.9, 0.3], [0.4, 0.8]], dtype=torch.float64)
    frags = rasterize(verts, faces, F, CX, CY, H, W)
    a = interpolate(attr, faces, frags)
    b = interpolate_face_varying(attr[faces], frags)
    c = interpolate_face_varying(attr[faces][None], frags)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


def test_raycast_points_visibility() -> None:
    near = [[-0.2, -0.2, -1.5], [0.3, -0.2, -1.5], [-0.2, 0.3, -1.5]]
    far = [[-1.0, -1.0, -3.0], [1.0, -1.0, -3.0], [-1.0, 1.0, -3.0]]
    verts = torch.tensor(far + near)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    targets = torch.tensor([[0.0, 0.0, -3.0], [-0.8, -0.8, -3.0], [0.0, 0.0, -1.5]])
    face, t = raycast_points(verts, faces, targets)
    assert face.tolist() == [1, 0, 1]
    torch.testing.assert_close(t, torch.tensor([0.5, 1.0, 1.0]), atol=1e-5, rtol=0)


def _octahedron() -> tuple[torch.Tensor, torch.Tensor]:
    v = torch.tensor([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]],
                     dtype=torch.float64)
    f = torch.tensor([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4],
                      [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    return v, f


def test_vertex_and_face_normals_point_outwards() -> None:
    v, f = _octahedron()
    vn = vertex_normals(v[None], f)[0]
    torch.testing.assert_close(vn, v, atol=1e-12, rtol=0)  # by symmetry: radial
    fn = face_normals(v[None], f)[0]
    centroids = v[f].mean(1)
    assert ((fn * centroids).sum(-1) > 0).all()
    torch.testing.assert_close(fn.norm(dim=-1), torch.full((8,), math.sqrt(3.0), dtype=torch.float64))


def test_dev_head_normals_face_the_camera(dev_model_path) -> None:
    """The FLAME faces are counter-clockwise seen from outside: the rendered frontal head's
    interpolated normals point towards the camera (+z) on most covered pixels."""
    data = np.load(dev_model_path)
    v = torch.tensor(data["v_template"], dtype=torch.float32)[None] + torch.tensor([0.0, 0.0, -0.6])
    f = torch.tensor(data["f"], dtype=torch.long)
    frags = rasterize(v, f, 300.0, 64.0, 64.0, 128, 128)
    n = interpolate(vertex_normals(v, f), f, frags)[0][frags.mask[0]]
    assert frags.mask.float().mean() > 0.3
    assert (n[:, 2] > 0).float().mean() > 0.97


def _fibonacci_sphere(n: int) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * k / n
    phi = math.pi * (1 + math.sqrt(5)) * k
    r = torch.sqrt(1 - z * z)
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1)


def test_sh_basis_is_orthonormal_after_removing_lambert_factors() -> None:
    """Y_lm = basis / A_l integrate to the identity over the sphere (quadrature on 20000
    Fibonacci points, tolerance 2e-3)."""
    n = _fibonacci_sphere(20000)
    y = sh_basis(n) / LAMBERT
    gram = (y.T @ y) * (4 * math.pi / n.shape[0])
    torch.testing.assert_close(gram, torch.eye(9, dtype=torch.float64), atol=2e-3, rtol=0)


def test_sh_constant_lighting_gives_constant_shading() -> None:
    normals = torch.nn.functional.normalize(torch.randn(2, 5, 7, 3, dtype=torch.float64), dim=-1)
    sh = torch.zeros(2, 9, 3, dtype=torch.float64)
    sh[:, 0] = torch.tensor([1.0, 0.5, 0.25]) / 0.886227
    shade = sh_shading(normals, sh)
    expected = torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64).expand_as(shade)
    torch.testing.assert_close(shade, expected, atol=1e-6, rtol=0)


def test_sh_directional_light_closed_form() -> None:
    """A unit directional light from w has SH coefficients Y_lm(w); by the addition theorem
    its irradiance is E(n) = sum_l A_l (2l+1)/(4 pi) P_l(n.w) = 1/4 + c/2 + 5/16 (3c^2 - 1)/2."""
    gen = torch.Generator().manual_seed(1)
    w = torch.nn.functional.normalize(torch.randn(3, generator=gen, dtype=torch.float64), dim=0)
    n = torch.nn.functional.normalize(torch.randn(1, 40, 50, 3, generator=gen, dtype=torch.float64), dim=-1)
    coeff = (sh_basis(w) / LAMBERT)[None, :, None].expand(1, 9, 3)
    shade = sh_shading(n, coeff)[..., 0]
    c = (n * w).sum(-1)
    torch.testing.assert_close(shade, 0.25 + 0.5 * c + 0.3125 * (3 * c * c - 1) / 2, atol=1e-9, rtol=0)
    # The light is brightest facing it and about zero opposite to it.
    assert abs(float(sh_shading(w.view(1, 1, 1, 3), coeff)[0, 0, 0, 0]) - 1.0625) < 1e-9
    assert abs(float(sh_shading(-w.view(1, 1, 1, 3), coeff)[0, 0, 0, 0]) - 0.0625) < 1e-9


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        rasterize(torch.zeros(3, 3), torch.tensor([[0, 1, 2]]), F, CX, CY, H, W)
    with pytest.raises(ValueError):
        rasterize(torch.zeros(1, 3, 3), torch.tensor([[0.0, 1.0, 2.0]]), F, CX, CY, H, W)
