"""UV texture sampled from the photo: each texel takes the photo colour where its surface point
projects, and is marked visible (alpha 255) only if the camera sees that point."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import BadInputError
from ..model.params import Camera
from ..fit.render import rasterize, raycast_points
from ..model.uv import UVLayout, uv_rasterize

# A texel counts as front-facing when cos(normal, direction to the camera) exceeds this;
# grazing texels would only smear a few photo pixels over many texels.
MIN_FACING_COS = 0.1
# Occlusion test: the first ray hit may lie this fraction of the distance before the point.
DEPTH_EPS = 1e-4
# Depth tolerance of the bilinear footprint check, in pixel footprints (before slope).
FOOTPRINT_PIXELS = 3.0


@dataclass
class TexelProjection:
    """Where the covered texels of a UV texture land in the photo.

    Attributes:
        rows, cols: (N,) int64 texel coordinates (row 0 = top of the texture image).
        points: (N, 3) float64 view-frame surface points.
        pixels: (N, 2) float64 photo coordinates (u, v), origin top-left, pixel centres at +0.5.
        visible: (N,) bool: in the image, front-facing, not occluded, and the photo pixels
            its bilinear lookup reads lie on the same part of the surface.
    """

    rows: np.ndarray
    cols: np.ndarray
    points: np.ndarray
    pixels: np.ndarray
    visible: np.ndarray


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def project_texels(verts_view: np.ndarray | torch.Tensor, faces: np.ndarray | torch.Tensor,
                   layout: UVLayout, camera: Camera, size: int) -> TexelProjection:
    """Project every covered texel's surface point into the camera and test its visibility.

    Args:
        verts_view: (V, 3) view-frame vertices of the fitted head.
        faces: (F, 3) vertex indices (the faces the layout was built for).
        layout: UV layout; camera: pinhole camera of the photo; size: texture side in texels.
    Returns:
        TexelProjection of the N covered texels.
    """
    verts = _as_numpy(verts_view).astype(np.float64)
    faces_np = _as_numpy(faces).astype(np.int64)
    if (verts.ndim != 2 or verts.shape[1] != 3 or faces_np.shape != layout.uv_faces.shape
            or faces_np.min() < 0 or faces_np.max() >= len(verts)):
        raise BadInputError("The mesh does not match the UV layout (wrong vertex or face arrays).")
    raster = uv_rasterize(layout, size)
    rows, cols = np.nonzero(raster.mask)
    face = raster.face_idx[rows, cols]
    tri = verts[faces_np[face]]  # (N, 3, 3)
    points = np.einsum("nk,nkc->nc", raster.bary[rows, cols].astype(np.float64), tri)

    depth = -points[:, 2]
    safe = np.where(depth > 1e-9, depth, 1.0)
    u = camera.cx + camera.focal * points[:, 0] / safe
    v = camera.cy - camera.focal * points[:, 1] / safe
    in_view = (depth > 1e-9) & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)

    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    cos = -(normal * points).sum(1) / np.maximum(
        np.linalg.norm(normal, axis=1) * np.linalg.norm(points, axis=1), 1e-30)
    facing = cos > MIN_FACING_COS

    visible = in_view & facing
    cand = np.nonzero(visible)[0]
    if len(cand):
        hit_face, t = raycast_points(torch.from_numpy(verts).float(), torch.from_numpy(faces_np),
                                     torch.from_numpy(points[cand]).float())
        hit_face, t = hit_face.numpy(), t.numpy()
        visible[cand] = (hit_face == face[cand]) | (t >= 1.0 - DEPTH_EPS)
    pixels = np.stack([u, v], axis=1)
    cand = np.nonzero(visible)[0]
    visible[cand] = _footprint_consistent(verts, faces_np, camera, pixels[cand], depth[cand], cos[cand])
    return TexelProjection(rows=rows, cols=cols, points=points,
                           pixels=pixels, visible=visible)


def _footprint_consistent(verts: np.ndarray, faces: np.ndarray, camera: Camera,
                          pixels: np.ndarray, depth: np.ndarray, cos: np.ndarray) -> np.ndarray:
    """(N,) bool: the four photo pixels a bilinear lookup at ``pixels`` (N, 2) reads all show
    the surface around the point (rendered depth within a few pixel footprints of ``depth``
    (N,), allowing for the slope ``cos`` (N,)), so that neither background nor an occluding
    part (nose over cheek) leaks in at depth edges."""
    frags = rasterize(torch.from_numpy(verts).float()[None], torch.from_numpy(faces),
                      camera.focal, camera.cx, camera.cy, camera.height, camera.width)
    zbuf = frags.depth[0].detach().numpy().astype(np.float64)
    H, W = zbuf.shape
    x0 = np.clip(np.floor(pixels[:, 0] - 0.5).astype(np.int64), 0, W - 1)
    y0 = np.clip(np.floor(pixels[:, 1] - 0.5).astype(np.int64), 0, H - 1)
    x1, y1 = np.minimum(x0 + 1, W - 1), np.minimum(y0 + 1, H - 1)
    tol = FOOTPRINT_PIXELS * depth / camera.focal / np.maximum(cos, MIN_FACING_COS)
    ok = np.ones(len(pixels), bool)
    for yy, xx in ((y0, x0), (y0, x1), (y1, x0), (y1, x1)):
        z = zbuf[yy, xx]
        ok &= (z > 0) & (np.abs(z - depth) <= tol)
    return ok


def bilinear_sample(image: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Bilinear colour of an image at pixel coordinates (edge-clamped).

    Args:
        image: (H, W, C) array; pixels: (N, 2) (u, v), pixel centres at integer + 0.5.
    Returns:
        (N, C) float64.
    """
    H, W = image.shape[:2]
    x = np.clip(pixels[:, 0] - 0.5, 0.0, W - 1.0)
    y = np.clip(pixels[:, 1] - 0.5, 0.0, H - 1.0)
    x0 = np.minimum(np.floor(x).astype(np.int64), W - 2) if W > 1 else np.zeros(len(x), np.int64)
    y0 = np.minimum(np.floor(y).astype(np.int64), H - 2) if H > 1 else np.zeros(len(y), np.int64)
    x1, y1 = np.minimum(x0 + 1, W - 1), np.minimum(y0 + 1, H - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    img = image.astype(np.float64)
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def footprint_in_mask(mask: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """(N,) bool: all four photo pixels a bilinear lookup at ``pixels`` (N, 2) reads lie in
    ``mask`` (H, W) bool (edge-clamped like ``bilinear_sample``)."""
    H, W = mask.shape
    x0 = np.clip(np.floor(pixels[:, 0] - 0.5).astype(np.int64), 0, W - 1)
    y0 = np.clip(np.floor(pixels[:, 1] - 0.5).astype(np.int64), 0, H - 1)
    x1, y1 = np.minimum(x0 + 1, W - 1), np.minimum(y0 + 1, H - 1)
    return mask[y0, x0] & mask[y0, x1] & mask[y1, x0] & mask[y1, x1]


def sample_photo_texture(image: np.ndarray, verts_view: np.ndarray | torch.Tensor,
                         faces: np.ndarray | torch.Tensor, layout: UVLayout, camera: Camera,
                         size: int = 1024, skin_mask: np.ndarray | None = None) -> np.ndarray:
    """UV texture of the photo over the fitted head.

    Args:
        image: (H, W, 3) uint8 RGB photo; the camera may belong to a resized copy of it.
        verts_view: (V, 3) fitted head in the view frame; faces: (F, 3).
        layout: FLAME UV layout; camera: the fit's camera; size: texture side in texels.
        skin_mask: optional (H, W) bool, the photo pixels that may colour the head
            (``Segmentation.skin_mask``); texels reading any other pixel count as unseen, so
            hair, glasses, clothing or background never reach the skin texels.
    Returns:
        (size, size, 4) uint8 RGBA, row 0 = top (v = 1); alpha 255 where the texel's
        surface point is visible in the photo (and on skin), 0 elsewhere (RGB 0 there).
    """
    cam = camera.for_photo(image)
    proj = project_texels(verts_view, faces, layout, cam, size)
    tex = np.zeros((size, size, 4), np.uint8)
    vis = proj.visible
    if skin_mask is not None:
        if skin_mask.shape != image.shape[:2]:
            raise ValueError("skin_mask must have the photo's (H, W).")
        vis = vis & footprint_in_mask(skin_mask, proj.pixels)
    rgb = bilinear_sample(image, proj.pixels[vis])
    tex[proj.rows[vis], proj.cols[vis], :3] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    tex[proj.rows[vis], proj.cols[vis], 3] = 255
    return tex


def face_seen_fraction(image: np.ndarray, verts_view: np.ndarray | torch.Tensor,
                       faces: np.ndarray | torch.Tensor, layout: UVLayout, camera: Camera,
                       assets: str, texture: np.ndarray | None = None, size: int = 256) -> float:
    """Share of the face (UV region ``face`` of the assets' masks) that the photo shows.

    A cheap, ground-truth-free quality signal for batch manifests: about 0.9 for a frontal
    photo, lower at large yaw or when the head leaves the frame.

    Args:
        image: (H, W, 3) uint8 RGB fitted photo; verts_view: (V, 3) fitted head, view frame;
        faces: (F, 3); layout: FLAME UV layout; camera: the fit's camera; assets: assets folder.
        texture: the photo texture when the texture stage ran (its alpha is reused, no extra
            projection); else the visibility is computed at ``size`` x ``size`` texels.
    Returns:
        Fraction in [0, 1] of the face texels that are visible in the photo.
    """
    from .uvmaps import region_mask

    if texture is not None:
        size = texture.shape[0]
        seen = texture[..., 3] > 0
    else:
        proj = project_texels(verts_view, faces, layout, camera.for_photo(image), size)
        seen = np.zeros((size, size), bool)
        seen[proj.rows[proj.visible], proj.cols[proj.visible]] = True
    face = region_mask(assets, ("face",), size) & uv_rasterize(layout, size).mask
    return float((seen & face).sum()) / max(int(face.sum()), 1)
