"""Prints ms per rasterize + interpolate (forward) and per backward pass for the dev FLAME mesh.

Usage: python benchmarks/bench_render.py [--assets DIR] [--device cpu|cuda] [--repeat N]
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

from backend.assets import DEV_MODEL_RELPATH, asset_path  # noqa: E402
from backend.render import interpolate, rasterize, sh_shading, vertex_normals  # noqa: E402


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--assets", default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args()
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


if __name__ == "__main__":
    main()
