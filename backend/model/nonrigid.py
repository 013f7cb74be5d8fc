"""Closest points on triangle meshes and Laplacian-regularised non-rigid ICP (numpy/scipy, CPU).

Used at setup to register one mesh onto another (backend/model/arkit.py). Everything is float64
numpy; meshes are small (thousands of vertices) so a sparse direct solve per iteration is
fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import splu
from scipy.spatial import cKDTree


def closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray,
                         c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest point of each query point on its candidate triangles (Ericson, RTCD 5.1.5).

    Args:
        p: (N, 1, 3) or (N, K, 3) query points (broadcast against the triangles).
        a, b, c: (N, K, 3) triangle corners.
    Returns:
        points (N, K, 3) closest points and bary (N, K, 3) their barycentric coordinates
        with respect to (a, b, c).
    """
    ab, ac, ap = b - a, c - a, p - a
    bp, cp = p - b, p - c
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ab = d1 / (d1 - d3)
        t_ac = d2 / (d2 - d6)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        denom = 1.0 / (va + vb + vc)
    v_in, w_in = vb * denom, vc * denom
    one, zero = np.ones_like(d1), np.zeros_like(d1)
    # Regions in Ericson's order; the first that holds wins, so apply them last to first.
    regions = [
        ((d1 <= 0) & (d2 <= 0), (one, zero, zero)),
        ((d3 >= 0) & (d4 <= d3), (zero, one, zero)),
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), (1 - t_ab, t_ab, zero)),
        ((d6 >= 0) & (d5 <= d6), (zero, zero, one)),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), (1 - t_ac, zero, t_ac)),
        ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), (zero, 1 - t_bc, t_bc)),
    ]
    bary = np.stack([1 - v_in - w_in, v_in, w_in], -1)
    for cond, coords in reversed(regions):
        bary = np.where(cond[..., None], np.stack(coords, -1), bary)
    bary = np.nan_to_num(bary, nan=1.0 / 3.0)
    points = bary[..., :1] * a + bary[..., 1:2] * b + bary[..., 2:] * c
    return points, bary


@dataclass
class SurfaceHit:
    """Result of a closest-point query of N points.

    Attributes:
        points: (N, 3) closest surface points.
        tri: (N,) index into the surface's triangle array (global numbering).
        bary: (N, 3) barycentric coordinates on that triangle.
        dist: (N,) distance from the query point.
        normal: (N, 3) unit normal of the hit triangle.
    """

    points: np.ndarray
    tri: np.ndarray
    bary: np.ndarray
    dist: np.ndarray
    normal: np.ndarray


class Surface:
    """A triangle mesh (or a subset of its triangles) prepared for closest-point queries."""

    def __init__(self, verts: np.ndarray, tris: np.ndarray, subset: np.ndarray | None = None,
                 n_candidates: int = 16) -> None:
        """
        Args:
            verts: (V, 3) vertex positions.
            tris: (T, 3) triangle vertex indices.
            subset: optional (T',) indices of the triangles to search (hits report global indices).
            n_candidates: triangles (nearest by centroid) tested exactly per query.
        """
        self.verts = np.asarray(verts, np.float64)
        self.tris = np.asarray(tris, np.int64)
        self.subset = np.arange(len(self.tris)) if subset is None else np.asarray(subset, np.int64)
        corners = self.verts[self.tris[self.subset]]  # (T', 3, 3)
        self._corners = corners
        normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        self._normals = normal / np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-20)
        self._tree = cKDTree(corners.mean(1))
        self._k = min(n_candidates, len(self.subset))

    def closest(self, points: np.ndarray) -> SurfaceHit:
        """Closest point on the surface for each of the (N, 3) query points."""
        points = np.asarray(points, np.float64)
        _, cand = self._tree.query(points, k=self._k)
        cand = cand.reshape(len(points), self._k)
        tri = self._corners[cand]  # (N, K, 3, 3)
        cp, bary = closest_on_triangles(points[:, None], tri[:, :, 0], tri[:, :, 1], tri[:, :, 2])
        dist = np.linalg.norm(cp - points[:, None], axis=-1)
        best = dist.argmin(1)
        rows = np.arange(len(points))
        local = cand[rows, best]
        return SurfaceHit(points=cp[rows, best], tri=self.subset[local], bary=bary[rows, best],
                          dist=dist[rows, best], normal=self._normals[local])


def vertex_normals(verts: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals. verts (V, 3), tris (T, 3) -> (V, 3)."""
    fn = np.cross(verts[tris[:, 1]] - verts[tris[:, 0]], verts[tris[:, 2]] - verts[tris[:, 0]])
    vn = np.zeros_like(verts)
    for k in range(3):
        np.add.at(vn, tris[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-20)


def adjacency(n_verts: int, tris: np.ndarray) -> sp.csr_matrix:
    """Symmetric 0/1 vertex adjacency (V, V) of a triangle mesh."""
    e = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    e = np.concatenate([e, e[:, ::-1]])
    adj = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n_verts, n_verts)).tocsr()
    adj.data[:] = 1.0
    return adj


def boundary_loops(n_verts: int, tris: np.ndarray) -> list[np.ndarray]:
    """Vertex sets of the open borders (edges used by one triangle only), one per loop."""
    e = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), axis=1)
    uniq, count = np.unique(e, axis=0, return_counts=True)
    border = uniq[count == 1]
    graph = sp.coo_matrix((np.ones(len(border)), (border[:, 0], border[:, 1])),
                          shape=(n_verts, n_verts))
    _, label = connected_components(graph, directed=False)
    on_border = np.unique(border)
    return [on_border[label[on_border] == k] for k in np.unique(label[on_border])]


def uniform_laplacian(n_verts: int, tris: np.ndarray) -> sp.csr_matrix:
    """Uniform graph Laplacian L = I - D^-1 A (V, V); isolated vertices get a zero row."""
    adj = adjacency(n_verts, tris)
    deg = np.asarray(adj.sum(1)).ravel()
    inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
    return (sp.diags((deg > 0).astype(np.float64)) - sp.diags(inv) @ adj).tocsr()


def smooth_scalar(values: np.ndarray, tris: np.ndarray, iterations: int) -> np.ndarray:
    """Repeated one-ring averaging (each vertex with its neighbours) of a (V,) field."""
    adj = adjacency(len(values), tris) + sp.identity(len(values), format="csr")
    deg = np.asarray(adj.sum(1)).ravel()
    out = np.asarray(values, np.float64)
    for _ in range(iterations):
        out = (adj @ out) / deg
    return out


@dataclass
class IcpStage:
    """One stiffness level of the non-rigid ICP schedule."""

    stiffness: float  # weight of ||L d||^2 relative to the unit data weights
    landmark_weight: float  # weight per landmark
    iterations: int  # closest-point updates at this level


def nonrigid_icp(
    verts: np.ndarray,
    tris: np.ndarray,
    free: np.ndarray,
    find_closest: "callable",
    lmk_matrix: sp.csr_matrix,
    lmk_targets: np.ndarray,
    schedule: list[IcpStage],
    max_dist: float,
    min_normal_dot: float = 0.5,
) -> tuple[np.ndarray, dict[str, float]]:
    """Deform a source mesh onto a target surface (Laplacian-regularised non-rigid ICP).

    Minimises, per stiffness level and closest-point update,
    ``sum_i w_i |x_i + d_i - c_i|^2 + lambda |B(x + d) - p|^2 + gamma |L d|^2`` over the
    per-vertex displacements d of the free vertices, where c_i is the closest target point
    of the current x_i + d_i, w_i is 1 for accepted pairs (distance below ``max_dist``,
    normals agreeing) and 0 otherwise, B the landmark barycentric matrix and L the uniform
    Laplacian of the source. Fixed (non-free) vertices keep d = 0.

    Args:
        verts: (V, 3) source vertices.
        tris: (T, 3) source triangles.
        free: (V,) bool, the vertices that move.
        find_closest: callable (points (V, 3)) -> SurfaceHit for every source vertex.
        lmk_matrix: (L, V) sparse barycentric rows of the source landmarks.
        lmk_targets: (L, 3) target landmark positions.
        schedule: stiffness levels, from stiff to soft.
        max_dist: pairs farther apart than this are ignored.
        min_normal_dot: pairs whose normals agree less than this are ignored.
    Returns:
        deformed (V, 3) and stats (final mean/max accepted distance, landmark RMS, accepted share).
    """
    verts = np.asarray(verts, np.float64)
    idx = np.flatnonzero(free)
    sel = sp.identity(len(verts), format="csr")[idx].T.tocsr()  # (V, n) scatter of free d
    lap = uniform_laplacian(len(verts), tris) @ sel
    reg = (lap.T @ lap).tocsc()
    bl = (lmk_matrix @ sel).tocsr()
    blb = (bl.T @ bl).tocsc()
    d = np.zeros((len(idx), 3))
    stats: dict[str, float] = {}
    for stage in schedule:
        for _ in range(stage.iterations):
            cur = verts.copy()
            cur[idx] += d
            hit = find_closest(cur)
            vn = vertex_normals(cur, tris)
            ok = (hit.dist < max_dist) & ((vn * hit.normal).sum(1) >= min_normal_dot)
            w = ok[idx].astype(np.float64)
            a = sp.diags(w) + stage.stiffness * reg + stage.landmark_weight * blb
            rhs = w[:, None] * (hit.points[idx] - verts[idx])
            rhs += stage.landmark_weight * (bl.T @ (lmk_targets - lmk_matrix @ verts))
            d = splu((a + 1e-9 * sp.identity(len(idx))).tocsc()).solve(rhs)
            stats = {"accepted": float(w.mean()),
                     "mean_dist": float(hit.dist[idx][w > 0].mean()),
                     "max_dist": float(hit.dist[idx][w > 0].max())}
    out = verts.copy()
    out[idx] += d
    stats["landmark_rms"] = float(np.sqrt(((lmk_matrix @ out - lmk_targets) ** 2).sum(1).mean()))
    return out, stats
