"""Prints ms per rasterize + interpolate (forward) and per backward pass for the dev FLAME mesh,
and seconds per fit_photometric call (each quality) on a synthetic 640 x 480 photo.

Usage: python benchmarks/bench_render.py [--assets DIR] [--device cpu|cuda] [--repeat N] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.model.assets import DEV_MODEL_RELPATH, asset_path, assets_dir  # noqa: E402
from backend.fit.photometric import fit_photometric  # noqa: E402
from backend.model.flame import FLAME, load_eyelid_deltas, load_flame  # noqa: E402
from backend.model.params import Camera, FitParams  # noqa: E402
from backend.fit.render import interpolate, interpolate_face_varying, rasterize, sh_shading, vertex_normals  # noqa: E402
from backend.model.uv import load_uv_layout  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(verts: torch.Tensor, faces: torch.Tensor, size: int, repeat: int) -> dict[str, float]:
    """Median ms of forward (rasterize + normals + interpolate + SH shading) and backward."""
    device = verts.device
    focal = 2.2 * size  # the head fills about 70 % of the image height at 0.6 m
    sh = torch.zeros(1, 9, 3, device=device)
    sh[:, 0] = 1.0 / 0.886227
    sh[:, 2] = 0.4
    fwd, bwd, ras = [], [], []
    for it in range(repeat + 2):
        v = verts.clone().requires_grad_(True)
        _sync(device)
        t0 = time.perf_counter()
        frags = rasterize(v, faces, focal, size / 2, size / 2, size, size)
        _sync(device)
        t1 = time.perf_counter()
        normals = torch.nn.functional.normalize(interpolate(vertex_normals(v, faces), faces, frags), dim=-1)
        img = sh_shading(normals, sh) * frags.mask[..., None]
        loss = img.square().mean()
        _sync(device)
        t2 = time.perf_counter()
        loss.backward()
        _sync(device)
        t3 = time.perf_counter()
        if it >= 2:  # the first calls load kernels and build the BVH
            ras.append(t1 - t0)
            fwd.append(t2 - t0)
            bwd.append(t3 - t2)
    ms = lambda xs: 1e3 * statistics.median(xs)  # noqa: E731
    return {"rasterize": ms(ras), "forward": ms(fwd), "backward": ms(bwd),
            "coverage": float(frags.mask.float().mean())}


def bench_photometric(assets: str | None, device: torch.device) -> None:
    """Time fit_photometric per quality on a render of the template under SH light (mean-texture
    albedo), starting from white ambient light, with a vertex-reprojection landmark anchor."""
    from PIL import Image

    adir = assets_dir(assets)
    flame = FLAME(load_flame(adir / DEV_MODEL_RELPATH), load_eyelid_deltas(adir)).to(device)
    layout = load_uv_layout(adir)
    cam = Camera(focal=900.0, cx=320.0, cy=240.0, width=640, height=480)
    p = FitParams.zeros(flame.n_shape, flame.n_expr, flame.n_joints, cam, device=device)
    p.translation = torch.tensor([[0.0, 0.02, -0.55]], device=device)
    p.sh[0, 1:4] = torch.tensor([0.2, 0.3, -0.3], device=device)[:, None]
    tex = torch.from_numpy(np.asarray(Image.open(adir / "uv" / "mean_texture.jpg").convert("RGB"),
                                      np.float32) / 255.0).permute(2, 0, 1).to(device)
    with torch.no_grad():
        v = flame(p.shape, p.expression, p.pose, p.translation, eyelids=p.eyelids).vertices
        frags = rasterize(v, flame.faces, cam.focal, cam.cx, cam.cy, cam.height, cam.width)
        uv = interpolate_face_varying(torch.from_numpy(layout.face_uvs()).to(device), frags)[0]
        n = torch.nn.functional.normalize(interpolate(vertex_normals(v, flame.faces), flame.faces, frags)[0], dim=-1)
        grid = torch.stack([uv[..., 0] * 2 - 1, 1 - uv[..., 1] * 2], -1)[None]
        albedo = torch.nn.functional.grid_sample(tex[None], grid, align_corners=False)[0].permute(1, 2, 0)
        photo = (albedo * sh_shading(n[None], p.sh)[0] * frags.mask[0][..., None]).clamp(0, 1)
    vids = torch.arange(0, v.shape[1], 17, device=device)
    target = v[0, vids, :2] / -v[0, vids, 2:]

    def landmark_loss(q: FitParams) -> torch.Tensor:
        w = flame(q.shape, q.expression, q.pose, q.translation, eyelids=q.eyelids).vertices[0, vids]
        return 0.5 * ((w[:, :2] / -w[:, 2:] - target) * cam.focal / 200.0).square().sum(-1).mean()

    start = p.detached()
    start.sh = FitParams.zeros(1, 1, 1, cam, device=device).sh
    fit_photometric(flame, start, photo, layout, landmark_loss, "fast", adir)  # warm-up
    for quality in ("fast", "default", "best"):
        _sync(device)
        t0 = time.perf_counter()
        res = fit_photometric(flame, start, photo, layout, landmark_loss, quality, adir)
        _sync(device)
        print(f"fit_photometric {quality}: {time.perf_counter() - t0:.2f} s {res.timings}, "
              f"photometric error {res.photo_error[0]:.4f} -> {res.photo_error[1]:.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--assets", default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = np.load(asset_path(DEV_MODEL_RELPATH, args.assets))
    verts = torch.tensor(data["v_template"], dtype=torch.float32, device=device)[None]
    verts = verts + torch.tensor([0.0, 0.0, -0.6], device=device)
    faces = torch.tensor(data["f"], dtype=torch.long, device=device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, "
          f"mesh {verts.shape[1]} vertices / {faces.shape[0]} faces")
    for size in (256, 512):
        r = bench(verts, faces, size, args.repeat)
        print(f"{size}x{size}: rasterize {r['rasterize']:.1f} ms, forward (rasterize + normals + "
              f"interpolate + SH) {r['forward']:.1f} ms, backward {r['backward']:.1f} ms, "
              f"coverage {100 * r['coverage']:.0f} %")
    bench_photometric(args.assets, device)


if __name__ == "__main__":
    main()
