"""The photo with the fitted mesh drawn over it: a shaded render blended in, the mesh
silhouette outlined, and the 68 landmarks as dots."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..model.params import Camera
from ..fit.render import interpolate, rasterize, vertex_normals

MESH_ALPHA = 0.55
MESH_TINT = np.array([0.75, 0.82, 1.0])  # light blue-grey clay
OUTLINE_RGB = (255, 220, 60)
LANDMARK_RGB = (255, 40, 40)
LIGHT_DIR = np.array([0.3, 0.4, 1.0]) / np.linalg.norm([0.3, 0.4, 1.0])


def _shade(verts: np.ndarray, faces: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Clay render of the mesh: (H, W, 3) float in [0, 1] and (H, W) bool coverage."""
    v = torch.from_numpy(verts).float()[None]
    f = torch.from_numpy(faces).long()
    frags = rasterize(v, f, camera.focal, camera.cx, camera.cy, camera.height, camera.width)
    normals = torch.nn.functional.normalize(interpolate(vertex_normals(v, f), f, frags), dim=-1)
    n = normals[0].numpy().astype(np.float64)
    lambert = np.clip(n @ LIGHT_DIR, 0.0, 1.0)
    rgb = (0.25 + 0.75 * lambert)[..., None] * MESH_TINT
    return rgb, frags.mask[0].numpy()


def _outline(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: covered pixels with an uncovered 4-neighbour."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def draw_overlay(image: np.ndarray, verts_view: np.ndarray | torch.Tensor,
                 faces: np.ndarray | torch.Tensor, camera: Camera,
                 landmarks68: np.ndarray | None = None) -> np.ndarray:
    """Draw the fitted mesh over the photo.

    Args:
        image: (H, W, 3) uint8 RGB, the image the camera belongs to (or a resized copy).
        verts_view: (V, 3) fitted head in the view frame; faces: (F, 3).
        camera: pinhole camera of the fit.
        landmarks68: (68, 2) pixel positions in the camera's image, or None.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    cam = camera.for_photo(image)
    H, W = image.shape[:2]
    s = W / camera.width
    verts = (verts_view.detach().cpu().numpy() if isinstance(verts_view, torch.Tensor)
             else np.asarray(verts_view)).astype(np.float32)
    faces_np = (faces.detach().cpu().numpy() if isinstance(faces, torch.Tensor)
                else np.asarray(faces)).astype(np.int64)
    shade, mask = _shade(verts, faces_np, cam)
    out = image.astype(np.float64) / 255.0
    out[mask] = (1.0 - MESH_ALPHA) * out[mask] + MESH_ALPHA * shade[mask]
    out8 = np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
    out8[_outline(mask)] = OUTLINE_RGB
    if landmarks68 is not None:
        pil = Image.fromarray(out8)
        draw = ImageDraw.Draw(pil)
        r = max(1.5, 0.004 * max(H, W))
        for x, y in np.asarray(landmarks68, np.float64)[:, :2] * s:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=LANDMARK_RGB)
        out8 = np.asarray(pil).copy()
    return out8
