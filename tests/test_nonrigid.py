"""Closest points on triangles and non-rigid ICP (backend/model/nonrigid.py).

Uses small meshes generated in code (random triangles, a UV sphere) for speed.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from backend.model.nonrigid import (IcpStage, Surface, boundary_loops, closest_on_triangles,
                              nonrigid_icp, smooth_scalar)


def _uv_sphere(n_lat: int = 16, n_lon: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Unit sphere without poles (two open border loops), (V, 3) and (F, 3)."""
    lat = np.linspace(0.15 * np.pi, 0.85 * np.pi, n_lat)
    lon = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    th, ph = np.meshgrid(lat, lon, indexing="ij")
    verts = np.stack([np.sin(th) * np.cos(ph), np.cos(th), np.sin(th) * np.sin(ph)], -1).reshape(-1, 3)
    faces = []
    for i in range(n_lat - 1):
        for j in range(n_lon):
            a, b = i * n_lon + j, i * n_lon + (j + 1) % n_lon
            c, d = a + n_lon, b + n_lon
            faces += [(a, b, c), (b, d, c)]  # outward normals
    return verts, np.array(faces)


def test_closest_on_triangles_matches_dense_sampling() -> None:
    """Exact closest point is never farther than the best of 5k samples on the triangle and
    at most 2 mm-per-metre closer (the sampling resolution); barycentrics reproduce it."""
    rng = np.random.default_rng(1)
    tri = rng.normal(size=(200, 3, 3))
    pts = rng.normal(size=(200, 3)) * 2
    cp, bary = closest_on_triangles(pts[:, None], tri[:, None, 0], tri[:, None, 1], tri[:, None, 2])
    cp, bary = cp[:, 0], bary[:, 0]
    np.testing.assert_allclose(bary.sum(1), 1.0, atol=1e-12)
    assert (bary >= -1e-12).all()
    np.testing.assert_allclose(np.einsum("nk,nkc->nc", bary, tri), cp, atol=1e-12)
    u, v = np.meshgrid(np.linspace(0, 1, 100), np.linspace(0, 1, 100))
    keep = (u + v) <= 1
    w = np.stack([1 - u[keep] - v[keep], u[keep], v[keep]], 1)  # (S, 3)
    samples = np.einsum("sk,nkc->nsc", w, tri)
    brute = np.linalg.norm(samples - pts[:, None], axis=2).min(1)
    exact = np.linalg.norm(cp - pts, axis=1)
    assert (exact <= brute + 1e-12).all()
    edge = np.linalg.norm(tri - tri[:, [1, 2, 0]], axis=2).max(1)
    assert (brute - exact <= edge * 0.02).all()


def test_surface_query_and_subset() -> None:
    """The candidate search finds the same distance as testing every triangle (points 5% off
    the sphere); normals face the query; a subset never returns other triangles."""
    verts, faces = _uv_sphere()
    surf = Surface(verts, faces)
    rng = np.random.default_rng(2)
    direction = rng.normal(size=(300, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    direction = direction[np.abs(direction[:, 1]) < 0.7]  # away from the open poles
    hit = surf.closest(direction * 1.05)
    tri = verts[faces]
    every, _ = closest_on_triangles(direction[:, None] * 1.05, tri[None, :, 0], tri[None, :, 1],
                                    tri[None, :, 2])
    brute = np.linalg.norm(every - direction[:, None] * 1.05, axis=2).min(1)
    np.testing.assert_allclose(hit.dist, brute, atol=1e-12)
    assert (hit.dist >= 0.05).all()
    assert ((hit.normal * direction).sum(1) > 0.95).all()
    half = np.flatnonzero(verts[faces].mean(1)[:, 0] > 0)
    sub = Surface(verts, faces, subset=half).closest(direction * 1.05)
    assert np.isin(sub.tri, half).all()


def test_boundary_loops_and_smoothing() -> None:
    verts, faces = _uv_sphere()
    loops = boundary_loops(len(verts), faces)
    assert sorted(len(loop) for loop in loops) == [24, 24]
    assert {round(float(verts[loop, 1].mean()), 6) for loop in loops} == {
        round(float(np.cos(0.15 * np.pi)), 6), round(float(np.cos(0.85 * np.pi)), 6)}
    field = (verts[:, 0] > 0).astype(float)
    smooth = smooth_scalar(field, faces, 3)
    assert smooth.min() >= 0 and smooth.max() <= 1
    assert np.abs(np.diff(np.sort(smooth))).max() < 0.5  # no jump of a full step left


def test_nonrigid_icp_registers_an_ellipsoid() -> None:
    """A sphere registered onto a bumpy ellipsoid ends within 2% of the radius everywhere,
    landmarks land on their targets within 1%."""
    def warp(p: np.ndarray) -> np.ndarray:
        bump = 1 + 0.05 * np.sin(3 * np.arctan2(p[:, 2], p[:, 0]))
        return p * [1.3, 0.8, 1.1] * bump[:, None]

    verts, faces = _uv_sphere()
    target = warp(verts)
    tgt_verts, tgt_faces = _uv_sphere(32, 48)
    tgt_verts = warp(tgt_verts)
    surf = Surface(tgt_verts, tgt_faces)
    lmk_ids = np.array([0, 100, 200, 300])
    lmk = sp.csr_matrix((np.ones(4), (np.arange(4), lmk_ids)), shape=(4, len(verts)))
    schedule = [IcpStage(100.0, 10.0, 3), IcpStage(10.0, 5.0, 3), IcpStage(1.0, 2.0, 5)]
    out, stats = nonrigid_icp(verts, faces, np.ones(len(verts), bool), surf.closest, lmk,
                              target[lmk_ids], schedule, max_dist=0.5)
    dist = surf.closest(out).dist
    print(f"\nICP: max {dist.max():.4f}, mean {dist.mean():.4f}, landmark RMS {stats['landmark_rms']:.4f}")
    assert dist.max() < 0.02
    assert stats["landmark_rms"] < 0.01
    assert stats["accepted"] > 0.95
