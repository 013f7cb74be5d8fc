"""Synthetic photos of known heads, for benchmarks and recovery tests.

A random FLAME head (identity, expression, jaw, neck, root pose) is rendered with the mean
UV texture of the assets, second-order SH lighting and a plain noisy background, through the
same camera model the fitter uses. The truth is returned so a fit can be scored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .landmark_fit import default_camera
from ..model.flame import FLAME, load_eyelid_deltas
from ..model.params import Camera
from .render import interpolate, interpolate_face_varying, rasterize, sh_shading, vertex_normals
from ..model.uv import UVLayout


def random_head_params(n_shape: int, n_expr: int, n_joints: int, rng: np.random.Generator,
                       jaw_open: float | None = None) -> dict[str, np.ndarray]:
    """Random but plausible parameters (unit-variance components, moderate pose).

    Returns:
        shape (S,), expression (E,), pose (J, 3) axis-angle, eyelids (2,).
    """
    shape = np.zeros(n_shape, np.float32)
    k = min(n_shape, 20)
    shape[:k] = rng.normal(0.0, 1.0, k).clip(-2.0, 2.0)
    expr = np.zeros(n_expr, np.float32)
    k = min(n_expr, 10)
    expr[:k] = rng.normal(0.0, 0.8, k).clip(-2.0, 2.0)
    pose = np.zeros((n_joints, 3), np.float32)
    pose[0] = [rng.uniform(-0.15, 0.15), rng.uniform(-0.35, 0.35), rng.uniform(-0.1, 0.1)]
    pose[1] = rng.normal(0.0, 0.05, 3)
    pose[2, 0] = rng.uniform(0.0, 0.25) if jaw_open is None else jaw_open
    return {"shape": shape, "expression": expr, "pose": pose,
            "eyelids": np.zeros(2, np.float32)}


def random_sh(rng: np.random.Generator) -> np.ndarray:
    """(9, 3) SH lighting: bright ambient plus a random directional part, slightly tinted."""
    sh = np.zeros((9, 3), np.float32)
    sh[0] = rng.uniform(0.8, 1.1) * np.array([1.0, rng.uniform(0.93, 1.0), rng.uniform(0.85, 1.0)])
    sh[1:4] = rng.normal(0.0, 0.25, (3, 1))
    sh[4:] = rng.normal(0.0, 0.05, (5, 1))
    return sh


def render_head(flame: FLAME, layout: UVLayout, albedo_uv: np.ndarray, params: dict[str, np.ndarray],
                sh: np.ndarray, camera: Camera, background: np.ndarray,
                translation: np.ndarray) -> np.ndarray:
    """Render one head to an image.

    Args:
        albedo_uv: (Ht, Wt, 3) float in [0, 1], row 0 = top (v = 1).
        params: shape (S,), expression (E,), pose (J, 3), eyelids (2,).
        sh: (9, 3); background: (H, W, 3) float in [0, 1]; translation: (3,).
    Returns:
        (H, W, 3) uint8 image.
    """
    dev = next(flame.buffers()).device
    t = lambda a: torch.as_tensor(np.asarray(a, np.float32), device=dev)[None]  # noqa: E731
    with torch.no_grad():
        out = flame(t(params["shape"]), t(params["expression"]), t(params["pose"]),
                    t(translation), eyelids=t(params["eyelids"]))
        verts = out.vertices
        faces = flame.faces.to(dev)
        frags = rasterize(verts, faces, camera.focal, camera.cx, camera.cy, camera.height, camera.width)
        normals = interpolate(vertex_normals(verts, faces), faces, frags)
        normals = torch.nn.functional.normalize(normals, dim=-1)
        uv = interpolate_face_varying(torch.as_tensor(layout.face_uvs(), device=dev), frags)
        tex = torch.as_tensor(albedo_uv, dtype=torch.float32, device=dev).permute(2, 0, 1)[None]
        grid = torch.stack([uv[..., 0] * 2 - 1, 1 - uv[..., 1] * 2], dim=-1)
        albedo = torch.nn.functional.grid_sample(tex, grid, align_corners=False).permute(0, 2, 3, 1)
        shading = sh_shading(normals, t(sh))
        color = (albedo * shading).clamp(0, 1)[0].cpu().numpy()
        mask = frags.mask[0].cpu().numpy()[..., None]
    img = np.where(mask, color, background)
    return (img * 255 + 0.5).clip(0, 255).astype(np.uint8)


def render_synthetic_head(engine: Any, path: str | os.PathLike[str], rng: np.random.Generator,
                          size: tuple[int, int] = (512, 512)) -> dict[str, np.ndarray]:
    """Render a random head with ``engine``'s model and write it to ``path`` (PNG).

    Returns:
        The truth: shape, expression, pose, eyelids, sh, translation, v_neutral (V, 3).
    """
    flame: FLAME = engine.flame
    params = random_head_params(flame.n_shape, flame.n_expr, flame.n_joints, rng)
    sh = random_sh(rng)
    camera = default_camera(*size)
    # Distance such that the face spans roughly half the image height.
    dist = 0.24 * camera.focal / (0.5 * size[1])
    translation = np.array([rng.uniform(-0.01, 0.01), rng.uniform(-0.01, 0.01) + 0.02, -dist],
                           np.float32)
    tex_path = Path(engine.assets) / "uv" / "mean_texture.jpg"
    albedo = np.asarray(Image.open(tex_path).convert("RGB"), np.float32) / 255.0
    bg = np.full((size[1], size[0], 3), rng.uniform(0.2, 0.7, 3), np.float32)
    bg += rng.normal(0.0, 0.02, bg.shape).astype(np.float32)
    img = render_head(flame, engine.uv, albedo, params, sh, camera, bg.clip(0, 1), translation)
    Image.fromarray(img).save(path)
    model = engine.model
    v_neutral = model.v_template + np.einsum("vcs,s->vc", model.shapedirs, params["shape"])
    return {**params, "sh": sh, "translation": translation, "v_neutral": v_neutral.astype(np.float32)}


def render_arkit_sequence(engine: Any, arkit: FLAME, weights: np.ndarray, pose: np.ndarray,
                          size: tuple[int, int] = (384, 384), noise: float = 2.0,
                          seed: int = 0, shape: np.ndarray | None = None) -> list[np.ndarray]:
    """Frames of a head driven by known ARKit weights (a synthetic performance).

    The head is ``arkit`` (a FLAME whose expression components are ARKit shapes, e.g.
    ``CaptureModel(engine, identity).flame``) under a fixed light, in front of a grey
    background, through :func:`default_camera` of ``size``; every frame gets its own sensor
    noise, so even a steady head gives slightly different pixels per frame.

    Args:
        engine: warm ``Engine`` (UV layout, assets' mean texture).
        arkit: FLAME with A ARKit expression components (no eyelid shapes needed).
        weights: (N, A) ARKit weights per frame.
        pose: (N, J, 3) or (J, 3) axis-angle per joint (one pose for every frame).
        size: (width, height) of the frames.
        noise: standard deviation of the per-frame Gaussian pixel noise (0..255 scale).
        seed: noise seed.
        shape: (S,) identity coefficients, the identity ``arkit``'s deltas were adapted to
            (default zeros: the mean head).
    Returns:
        N frames, (H, W, 3) uint8 RGB.
    """
    weights = np.asarray(weights, np.float32)
    n = len(weights)
    pose = np.broadcast_to(np.asarray(pose, np.float32), (n, arkit.n_joints, 3))
    rng = np.random.default_rng(seed)
    camera = default_camera(*size)
    dist = 0.24 * camera.focal / (0.55 * size[1])
    translation = np.array([0.0, 0.02, -dist], np.float32)
    tex_path = Path(engine.assets) / "uv" / "mean_texture.jpg"
    albedo = np.asarray(Image.open(tex_path).convert("RGB"), np.float32) / 255.0
    sh = np.zeros((9, 3), np.float32)
    sh[0], sh[1], sh[2] = 1.0, 0.15, 0.1
    bg = np.full((size[1], size[0], 3), 0.45, np.float32)
    lids = getattr(engine.flame, "eyelid_deltas", None)
    lids = load_eyelid_deltas(engine.assets) if lids is None else lids.cpu().numpy()
    lit = FLAME(arkit.data, eyelid_deltas=lids).to(arkit.v_template.device)  # lids stay open
    frames = []
    for k in range(n):
        params = {"shape": np.zeros(lit.n_shape, np.float32) if shape is None else shape,
                  "expression": weights[k], "pose": pose[k], "eyelids": np.zeros(2, np.float32)}
        img = render_head(lit, engine.uv, albedo, params, sh, camera, bg, translation)
        img = img.astype(np.float32) + rng.normal(0.0, noise, img.shape)
        frames.append(img.clip(0, 255).round().astype(np.uint8))
    return frames
