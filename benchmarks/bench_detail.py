"""Detail benchmark: does the displacement map explain the photo better than the coarse head?

    .venv/bin/python benchmarks/bench_detail.py [--photos N | --only NAME ...]
        [--quality default] [--picture PHOTO_NAME OUT.jpg] [--threads N]

For every photo of ``../shared/eval/photos`` the coarse fit runs (landmarks, landmark fit,
photometric fit), then the detail stage's parts. Printed per photo:

* photometric error: mean absolute colour difference (0..255 units) between the photo and
  the re-rendered head over the visible pixels of the detail region (FLAME UV ``face``
  without eyes and mouth interior), ``albedo * sh_shading(normal)`` with the fitted SH,
  coarse normals versus normals tilted by the displacement map, with the same albedo:
    (a) ``lowpass``: the detail stage's low-pass albedo (photo / coarse shading, median
        filtered), the albedo the displacement was fitted against;
    (b) ``photometric``: the photometric stage's albedo (mean texture x gain x smooth
        correction), independent of the detail stage;
* displacement rms over the region (mm);
* seconds per stage (wall): landmarks, fit_landmarks, fit_photometric (context), then the
  detail stage's displacement fit, map writing and albedo completion; the summary adds the
  CPU seconds of the detail stage (use --threads 1 on a shared machine: wall time there
  depends on the other jobs, CPU time much less).

``--picture`` also writes one image: photo | coarse grey shading | detailed grey shading |
albedo.png x detailed shading, cropped to the face.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from backend.appearance.albedo import complete_albedo  # noqa: E402
from backend.model.assets import assets_dir  # noqa: E402
from backend.appearance.detail import (QUALITY_CONFIGS, camera_for, detailed_normals, recover_displacement,  # noqa: E402
                            render_pixels, visible_pixels, write_detail_maps)
from backend.fit.landmark_fit import fit_landmarks  # noqa: E402
from backend.fit.photometric import fit_photometric  # noqa: E402
from backend.files.photo import load_image  # noqa: E402
from backend.options import ReconstructOptions  # noqa: E402
from backend.pipeline import Engine  # noqa: E402

EVAL = REPO.parent / "shared" / "eval" / "photos"


def grey_and_albedo_picture(engine: Engine, params, rgb: np.ndarray, res, albedo_png: Path,
                            out: Path) -> None:
    """photo | coarse grey | detailed grey | albedo x detailed shading, cropped to the head."""
    cam = camera_for(params.camera, rgb)
    with torch.no_grad():
        verts = engine.flame(params.shape, params.expression, params.pose, params.translation,
                             eyelids=params.eyelids).vertices[0]
    faces = torch.from_numpy(engine.model.faces)
    image = torch.from_numpy(rgb).float() / 255.0
    pix = visible_pixels(verts, faces, engine.uv, cam, image)
    coarse = res.frames.normal
    fine = detailed_normals(res.frames, res.displacement)
    grey = torch.full((4, 4, 3), 0.75)
    albedo = torch.from_numpy(np.asarray(Image.open(albedo_png), np.float32) / 255.0)
    sh = params.sh.cpu().float()
    panels = []
    for alb, nrm in ((None, None), (grey, coarse), (grey, fine), (albedo, fine)):
        img = image.clone() if alb is None else torch.full_like(image, 0.15)
        if alb is not None:
            img[pix.rows, pix.cols] = render_pixels(pix, alb, nrm, sh).clamp(0.0, 1.0)
        panels.append(img)
    r0, r1 = int(pix.rows.min()), int(pix.rows.max()) + 1
    c0, c1 = int(pix.cols.min()), int(pix.cols.max()) + 1
    row = torch.cat([p[r0:r1, c0:c1] for p in panels], dim=1)
    pic = Image.fromarray((row.numpy() * 255).round().astype(np.uint8))
    scale = 320 / pic.height
    pic = pic.resize((round(pic.width * scale), 320), Image.LANCZOS)
    out.parent.mkdir(parents=True, exist_ok=True)
    pic.save(out, quality=88)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=int, default=0, help="first N photos only (0 = all)")
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME", help="these photos only")
    ap.add_argument("--quality", default="default", choices=sorted(QUALITY_CONFIGS))
    ap.add_argument("--picture", nargs=2, metavar=("PHOTO", "OUT"), default=None)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    engine = Engine(ReconstructOptions(device="cpu"))
    cfg = QUALITY_CONFIGS[args.quality]
    photos = sorted(p for p in EVAL.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    if args.only:
        photos = [p for p in photos if p.name in args.only]
    if args.photos:
        photos = photos[:args.photos]
    if args.picture and not any(p.name == Path(args.picture[0]).name for p in photos):
        photos.append(EVAL / args.picture[0])
    print(f"assets {assets_dir()}  quality {args.quality}  displacement {cfg.size}^2, "
          f"{cfg.iters} iterations  threads {torch.get_num_threads()}")
    head = (f"{'photo':44s} {'lowpass c':>9s} {'detail':>7s} {'photom c':>9s} {'detail':>7s} "
            f"{'rms mm':>6s} | {'lmk':>5s} {'fitL':>5s} {'fitP':>5s} {'disp':>5s} {'write':>5s} "
            f"{'albedo':>6s}")
    print(head)
    rows = []
    for photo in photos:
        t: dict[str, float] = {}  # wall seconds
        cpu: dict[str, float] = {}  # CPU seconds of this process (all its threads)
        t0 = time.perf_counter()
        img = load_image(photo, max_side=1024)
        face, _ = engine.detector.detect_face(img.rgb)
        t["lmk"] = time.perf_counter() - t0
        h, w = img.rgb.shape[:2]
        t0 = time.perf_counter()
        fit = fit_landmarks(engine.flame, engine.embedding, face.points, image_size=(w, h),
                            quality=args.quality)
        t["fitL"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        image = torch.from_numpy(img.rgb).float() / 255.0
        photo_res = fit_photometric(engine.flame, fit.params, image, engine.uv,
                                    fit.landmark_loss, args.quality, engine.assets)
        params = photo_res.params
        t["fitP"] = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            verts = engine.flame(params.shape, params.expression, params.pose,
                                 params.translation, eyelids=params.eyelids).vertices[0]
        faces = torch.from_numpy(engine.model.faces)
        res = recover_displacement(verts, faces, engine.model.v_template, engine.uv,
                                   engine.assets, camera_for(params.camera, img.rgb), image,
                                   params.sh, cfg)
        t["disp"], cpu["disp"] = time.perf_counter() - t0, time.process_time() - c0
        with tempfile.TemporaryDirectory() as tmp:
            t0, c0 = time.perf_counter(), time.process_time()
            write_detail_maps(Path(tmp), res.displacement, res.frames)
            t["write"], cpu["write"] = time.perf_counter() - t0, time.process_time() - c0
            t0, c0 = time.perf_counter(), time.process_time()
            complete_albedo(engine, params, img.rgb, tmp, displacement=res.displacement)
            t["albedo"], cpu["albedo"] = time.perf_counter() - t0, time.process_time() - c0
            if args.picture and photo.name == Path(args.picture[0]).name:
                grey_and_albedo_picture(engine, params, img.rgb, res, Path(tmp) / "albedo.png",
                                        Path(args.picture[1]))
        alb_p = torch.from_numpy(np.ascontiguousarray(photo_res.albedo_uv)).float()
        sh = params.sh.float()
        with torch.no_grad():
            pc = render_pixels(res.pixels, alb_p, res.frames.normal, sh)
            pd = render_pixels(res.pixels, alb_p, detailed_normals(res.frames, res.displacement), sh)
        ep_c = float((pc - res.pixels.color).abs().mean()) * 255
        ep_d = float((pd - res.pixels.color).abs().mean()) * 255
        d = res.displacement
        rms = float(d[d != 0].pow(2).mean().sqrt()) * 1000 if bool((d != 0).any()) else 0.0
        row = (res.error_coarse * 255, res.error_detail * 255, ep_c, ep_d, rms, t, cpu)
        rows.append(row)
        print(f"{photo.name[:44]:44s} {row[0]:9.2f} {row[1]:7.2f} {row[2]:9.2f} {row[3]:7.2f} "
              f"{rms:6.3f} | {t['lmk']:5.2f} {t['fitL']:5.2f} {t['fitP']:5.2f} {t['disp']:5.2f} "
              f"{t['write']:5.2f} {t['albedo']:6.2f}", flush=True)
    if not rows:
        return
    arr = np.array([r[:5] for r in rows])
    mean_t = {k: float(np.mean([r[5][k] for r in rows])) for k in rows[0][5]}
    print(f"{'mean':44s} {arr[:, 0].mean():9.2f} {arr[:, 1].mean():7.2f} {arr[:, 2].mean():9.2f} "
          f"{arr[:, 3].mean():7.2f} {arr[:, 4].mean():6.3f} | "
          + " ".join(f"{mean_t[k]:5.2f}" for k in ("lmk", "fitL", "fitP", "disp", "write"))
          + f" {mean_t['albedo']:6.2f}")
    print(f"detail lowered the error on {int((arr[:, 1] < arr[:, 0]).sum())}/{len(rows)} photos "
          f"(low-pass albedo) and {int((arr[:, 3] < arr[:, 2]).sum())}/{len(rows)} "
          "(photometric-stage albedo)")
    mean_c = {k: float(np.mean([r[6][k] for r in rows])) for k in rows[0][6]}
    first = sum(rows[0][5][k] for k in ("disp", "write", "albedo"))
    print(f"detail stage (displacement + write + albedo), mean seconds: wall "
          f"{mean_t['disp'] + mean_t['write'] + mean_t['albedo']:.2f}, CPU "
          f"{mean_c['disp'] + mean_c['write'] + mean_c['albedo']:.2f} "
          f"(displacement {mean_c['disp']:.2f}, write {mean_c['write']:.2f}, albedo "
          f"{mean_c['albedo']:.2f}); first photo (cold caches) wall {first:.2f}")
    print(f"machine load average during the run: {os.getloadavg()[0]:.1f} "
          f"({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
