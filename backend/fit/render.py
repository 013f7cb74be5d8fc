"""Differentiable mesh rendering: warp ray-cast rasterizer, barycentrics in torch, SH shading.

Warp finds the nearest triangle under every pixel centre (a pinhole ray from the view-frame
origin, see docs/ARCHITECTURE.md). The barycentrics of that hit are then recomputed in torch
(Moller-Trumbore) from the hit triangle's vertices, so they are exact, perspective-correct
and differentiable with respect to the vertex positions. Visibility changes (which face is
hit) carry no gradient, as in any hard rasterizer.

The warp kernels are module-level (compiled once, then loaded from warp's kernel cache).
Warp's BVH of each batch slot is kept and refitted when only the vertex positions change.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import torch
import warp as wp

# Warp logs its start-up banner to stdout by default; the stdio service needs a clean stdout.
wp.config.log_level = wp.LOG_WARNING


@wp.kernel
def _raycast_pinhole_kernel(
    mesh_ids: wp.array(dtype=wp.uint64),
    focal: float,
    cx: float,
    cy: float,
    face_out: wp.array3d(dtype=wp.int32),
):
    """One ray per pixel centre (i + 0.5, j + 0.5) from the origin; writes the nearest face."""
    b, i, j = wp.tid()
    d = wp.vec3((float(j) + 0.5 - cx) / focal, (cy - float(i) - 0.5) / focal, -1.0)
    hit = wp.mesh_query_ray(mesh_ids[b], wp.vec3(0.0, 0.0, 0.0), d, 1.0e8)
    if hit.result:
        face_out[b, i, j] = hit.face
    else:
        face_out[b, i, j] = -1


@wp.kernel
def _raycast_points_kernel(
    mesh_id: wp.uint64,
    origin: wp.vec3,
    targets: wp.array(dtype=wp.vec3),
    face_out: wp.array(dtype=wp.int32),
    t_out: wp.array(dtype=wp.float32),
):
    """One ray per target point from ``origin``; ``t`` is in units of |target - origin|."""
    k = wp.tid()
    d = targets[k] - origin
    hit = wp.mesh_query_ray(mesh_id, origin, d, 2.0)
    if hit.result:
        face_out[k] = hit.face
        t_out[k] = hit.t
    else:
        face_out[k] = -1
        t_out[k] = 2.0


@wp.kernel
def _raycast_ortho_kernel(
    mesh_id: wp.uint64,
    size: int,
    face_out: wp.array2d(dtype=wp.int32),
):
    """Orthographic rays down -Z through texel centres of [0,1]^2, row 0 at y = 1 (image order)."""
    i, j = wp.tid()
    p = wp.vec3((float(j) + 0.5) / float(size), 1.0 - (float(i) + 0.5) / float(size), 1.0)
    hit = wp.mesh_query_ray(mesh_id, p, wp.vec3(0.0, 0.0, -1.0), 2.0)
    if hit.result:
        face_out[i, j] = hit.face
    else:
        face_out[i, j] = -1


@dataclass
class Fragments:
    """Per-pixel rasterization result.

    Attributes:
        face_idx: (B, H, W) long, index of the visible face, -1 = background.
        bary: (B, H, W, 3) perspective-correct barycentrics of the visible point
            (differentiable w.r.t. the vertices); 0 on background.
        mask: (B, H, W) bool, True where a face is visible.
        depth: (B, H, W) distance along the view axis (-z of the visible point, metres,
            differentiable); -1 on background.
    """

    face_idx: torch.Tensor
    bary: torch.Tensor
    mask: torch.Tensor
    depth: torch.Tensor


def _wp_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"
    if device.type != "cpu":
        raise ValueError(f"The renderer runs on CPU or CUDA, not on {device}.")
    return "cpu"


class _WarpMesh:
    """A warp mesh that owns its vertex buffer; vertex updates refit its BVH."""

    def __init__(self, verts: torch.Tensor, faces: torch.Tensor):
        device = _wp_device(verts.device)
        self.faces = faces
        self.n_verts = int(verts.shape[0])
        points = wp.array(verts.detach().float().contiguous().cpu().numpy(), dtype=wp.vec3,
                          device=device)
        indices = wp.array(faces.detach().reshape(-1).int().cpu().numpy(), dtype=wp.int32,
                           device=device)
        self.mesh = wp.Mesh(points=points, indices=indices)
        self._indices = indices  # keep the index buffer alive as long as the mesh

    def matches(self, verts: torch.Tensor, faces: torch.Tensor) -> bool:
        return (self.n_verts == verts.shape[0] and self.faces.shape == faces.shape
                and self.faces.device == faces.device and torch.equal(self.faces, faces))

    def update(self, verts: torch.Tensor) -> None:
        wp.to_torch(self.mesh.points).copy_(verts.detach().reshape(-1, 3))
        self.mesh.refit()


_MESHES: dict[tuple[str, int], _WarpMesh] = {}
_MESH_LOCK = threading.Lock()


def _warp_mesh(slot: int, verts: torch.Tensor, faces: torch.Tensor) -> _WarpMesh:
    """The cached warp mesh of batch slot ``slot`` holding ``verts`` (rebuilt if faces change)."""
    key = (str(verts.device), slot)
    cached = _MESHES.get(key)
    if cached is None or not cached.matches(verts, faces):
        cached = _WarpMesh(verts, faces)
        _MESHES[key] = cached
    else:
        cached.update(verts)
    return cached


def _torch_stream(device: torch.device) -> contextlib.AbstractContextManager:
    """Run warp work on torch's current CUDA stream (no-op on CPU)."""
    if device.type == "cuda":
        return wp.ScopedStream(wp.stream_from_torch(device))
    return contextlib.nullcontext()


def _check_mesh(verts: torch.Tensor, faces: torch.Tensor) -> None:
    if verts.ndim != 3 or verts.shape[-1] != 3:
        raise ValueError(f"verts must be (B, V, 3), got {tuple(verts.shape)}.")
    if faces.ndim != 2 or faces.shape[-1] != 3 or faces.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"faces must be an integer (F, 3) tensor, got {tuple(faces.shape)}.")


def pixel_rays(focal: float, cx: float, cy: float, H: int, W: int, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Unnormalized view-frame ray directions through pixel centres, with z = -1.

    Returns:
        (H, W, 3): ((j + 0.5 - cx) / f, (cy - i - 0.5) / f, -1).
    """
    j = (torch.arange(W, device=device, dtype=dtype) + 0.5 - cx) / focal
    i = (cy - torch.arange(H, device=device, dtype=dtype) - 0.5) / focal
    return torch.stack([j[None, :].expand(H, W), i[:, None].expand(H, W),
                        torch.full((H, W), -1.0, device=device, dtype=dtype)], dim=-1)


def ray_triangle_barycentrics(tri: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Moller-Trumbore intersection of rays from the view-frame origin with their triangles
    (differentiable w.r.t. the vertices).

    Args:
        tri: (N, 3, 3) triangle vertices.
        dirs: (N, 3) ray directions (need not be normalized).
    Returns:
        bary (N, 3) barycentrics of the hit point w.r.t. tri[:, 0..2] (they sum to 1),
        t (N,) hit distance in units of |dirs|.
    """
    v0, v1, v2 = tri.unbind(1)
    e1, e2 = v1 - v0, v2 - v0
    p = torch.linalg.cross(dirs, e2, dim=-1)
    det = (e1 * p).sum(-1)
    # Rays that warp reports as hits are never parallel; guard against float round-off only.
    tiny = 1e-12
    det = torch.where(det.abs() < tiny, torch.full_like(det, tiny) * torch.where(det < 0, -1.0, 1.0), det)
    s = -v0  # origin - v0
    q = torch.linalg.cross(s, e1, dim=-1)
    u = (s * p).sum(-1) / det
    v = (dirs * q).sum(-1) / det
    t = (e2 * q).sum(-1) / det
    return torch.stack([1.0 - u - v, u, v], dim=-1), t


def rasterize(verts_view: torch.Tensor, faces: torch.Tensor, focal: float, cx: float, cy: float,
              H: int, W: int) -> Fragments:
    """Rasterize meshes seen by the pinhole camera of docs/ARCHITECTURE.md.

    Args:
        verts_view: (B, V, 3) view-frame vertices (camera at the origin looking down -Z).
        faces: (F, 3) long vertex indices, shared by the batch.
        focal, cx, cy: intrinsics in pixels; H, W: image size.
    Returns:
        Fragments with (B, H, W) face_idx / mask / depth and (B, H, W, 3) bary.
    """
    _check_mesh(verts_view, faces)
    B = verts_view.shape[0]
    device = verts_view.device
    faces = faces.to(device=device, dtype=torch.long)
    face_out = torch.empty((B, H, W), dtype=torch.int32, device=device)
    with _MESH_LOCK, _torch_stream(device):
        meshes = [_warp_mesh(b, verts_view[b], faces) for b in range(B)]
        ids = wp.array([m.mesh.id for m in meshes], dtype=wp.uint64, device=_wp_device(device))
        wp.launch(_raycast_pinhole_kernel, dim=(B, H, W), device=_wp_device(device),
                  inputs=[ids, float(focal), float(cx), float(cy)],
                  outputs=[wp.from_torch(face_out, dtype=wp.int32)])
    face_idx = face_out.long()
    mask = face_idx >= 0
    b_idx, i_idx, j_idx = mask.nonzero(as_tuple=True)
    hit_faces = face_idx[b_idx, i_idx, j_idx]
    dirs = pixel_rays(focal, cx, cy, H, W, device, verts_view.dtype)[i_idx, j_idx]
    tri = verts_view[b_idx[:, None], faces[hit_faces]]  # (N, 3, 3)
    bary_hit, t_hit = ray_triangle_barycentrics(tri, dirs)
    bary = verts_view.new_zeros((B, H, W, 3)).index_put((b_idx, i_idx, j_idx), bary_hit)
    depth = verts_view.new_full((B, H, W), -1.0).index_put((b_idx, i_idx, j_idx), t_hit)
    return Fragments(face_idx=face_idx, bary=bary, mask=mask, depth=depth)


def raycast_points(verts_view: torch.Tensor, faces: torch.Tensor,
                   targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First hit of the rays from the view-frame origin towards each target point (no gradient).

    Args:
        verts_view: (V, 3) one mesh; faces: (F, 3).
        targets: (N, 3) points, e.g. surface points whose visibility is wanted.
    Returns:
        face (N,) long, -1 if nothing was hit before 2x the target distance;
        t (N,) float, hit distance as a fraction of |target| (1 = at the target).
    """
    _check_mesh(verts_view[None], faces)
    device = verts_view.device
    wdev = _wp_device(device)
    targets = targets.detach().float().contiguous()
    n = targets.shape[0]
    face_out = torch.empty(n, dtype=torch.int32, device=device)
    t_out = torch.empty(n, dtype=torch.float32, device=device)
    with _torch_stream(device):
        mesh = _WarpMesh(verts_view.detach().float(), faces.to(device=device, dtype=torch.long))
        wp.launch(_raycast_points_kernel, dim=n, device=wdev,
                  inputs=[mesh.mesh.id, wp.vec3(0.0, 0.0, 0.0),
                          wp.from_torch(targets, dtype=wp.vec3)],
                  outputs=[wp.from_torch(face_out, dtype=wp.int32),
                           wp.from_torch(t_out, dtype=wp.float32)])
    return face_out.long(), t_out


def raycast_uv(uv: torch.Tensor, uv_faces: torch.Tensor, size: int) -> torch.Tensor:
    """Which UV triangle covers each texel centre of a size x size texture (row 0 = v near 1).

    Args:
        uv: (T, 2) UV coordinates in [0, 1]; uv_faces: (F, 3) indices into uv.
    Returns:
        (size, size) long face index per texel, -1 where no triangle covers it.
    """
    pts = torch.cat([uv.float(), torch.zeros(uv.shape[0], 1)], dim=1)
    mesh = _WarpMesh(pts, uv_faces.long())
    face_out = torch.empty((size, size), dtype=torch.int32)
    wp.launch(_raycast_ortho_kernel, dim=(size, size), device="cpu",
              inputs=[mesh.mesh.id, int(size)], outputs=[wp.from_torch(face_out, dtype=wp.int32)])
    return face_out.long()


def interpolate(vertex_attr: torch.Tensor, faces: torch.Tensor, frags: Fragments) -> torch.Tensor:
    """Interpolate per-vertex attributes with the fragments' barycentrics.

    Args:
        vertex_attr: (B, V, C) or (V, C) (shared by the batch).
        faces: (F, 3) long.
    Returns:
        (B, H, W, C); 0 on background.
    """
    faces = faces.to(device=vertex_attr.device, dtype=torch.long)
    face_attr = vertex_attr[..., faces, :]  # (B, F, 3, C) or (F, 3, C)
    return interpolate_face_varying(face_attr, frags)


def interpolate_face_varying(attr: torch.Tensor, frags: Fragments) -> torch.Tensor:
    """Interpolate attributes given per face corner (e.g. UVs, which split at seams).

    Args:
        attr: (F, 3, C) shared by the batch, or (B, F, 3, C).
    Returns:
        (B, H, W, C); 0 on background.
    """
    B, H, W = frags.face_idx.shape
    idx = frags.face_idx.clamp(min=0).reshape(B, H * W)
    if attr.ndim == 3:
        corner = attr[idx]  # (B, HW, 3, C)
    else:
        corner = torch.gather(attr, 1, idx[:, :, None, None].expand(-1, -1, 3, attr.shape[-1]))
    bary = frags.bary.reshape(B, H * W, 3, 1).to(attr.dtype)
    out = (corner * bary).sum(2)
    return out.reshape(B, H, W, -1)


def face_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unnormalized face normals (cross(v1 - v0, v2 - v0), length = 2 x area).

    Args:
        verts: (B, V, 3); faces: (F, 3).
    Returns:
        (B, F, 3).
    """
    tri = verts[:, faces.to(verts.device, torch.long)]
    return torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals (counter-clockwise faces point outwards).

    Args:
        verts: (B, V, 3); faces: (F, 3).
    Returns:
        (B, V, 3) unit normals.
    """
    faces = faces.to(verts.device, torch.long)
    fn = face_normals(verts, faces)  # (B, F, 3)
    vn = torch.zeros_like(verts)
    for k in range(3):
        vn = vn.index_add(1, faces[:, k], fn)
    return torch.nn.functional.normalize(vn, dim=-1, eps=1e-12)


# Real SH basis up to band 2 times the Lambertian convolution factors A_l (pi, 2pi/3, pi/4),
# Ramamoorthi & Hanrahan 2001: irradiance E(n) = sum_k sh_k * basis_k(n).
_SH_C0 = 0.886226925  # pi * 0.282094792
_SH_C1 = 1.023326708  # 2pi/3 * 0.488602512
_SH_C2 = 0.858085531  # pi/4 * 1.092548431
_SH_C3 = 0.247707956  # pi/4 * 0.315391565
_SH_C4 = 0.429042765  # pi/4 * 0.546274215


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """Lambertian-convolved real SH basis (9 terms) of unit normals.

    Order: 1, y, z, x, xy, yz, 3z^2 - 1, xz, x^2 - y^2 (times constants). A coefficient
    vector (1/0.886227, 0, ..., 0) gives shading 1 for every normal.

    Args:
        normals: (..., 3) unit normals in the view (= FLAME) frame.
    Returns:
        (..., 9).
    """
    x, y, z = normals.unbind(-1)
    return torch.stack([
        torch.full_like(x, _SH_C0),
        _SH_C1 * y, _SH_C1 * z, _SH_C1 * x,
        _SH_C2 * x * y, _SH_C2 * y * z, _SH_C3 * (3.0 * z * z - 1.0), _SH_C2 * x * z,
        _SH_C4 * (x * x - y * y),
    ], dim=-1)


def sh_shading(normals: torch.Tensor, sh: torch.Tensor) -> torch.Tensor:
    """RGB shading (irradiance) of unit normals under SH lighting.

    Args:
        normals: (B, H, W, 3) unit normals.
        sh: (B, 9, 3) coefficients per colour channel.
    Returns:
        (B, H, W, 3).
    """
    return torch.einsum("bhwk,bkc->bhwc", sh_basis(normals), sh.to(normals.dtype))
