"""Segmentation benchmark: does hair colour stay off the forehead and cheeks? (issue 14 part 1)

    .venv/bin/python benchmarks/bench_segmentation.py [--only NAME ...] [--quality default]
        [--keep DIR] [--threads N]

For every photo (default: the ``../shared/eval/photos`` portraits with bangs or long hair) the
whole pipeline runs twice with one warm engine: without segmentation ("before": the photo is
used whole) and with the engine's segmenter ("after": face parser, else hair model). Printed
per photo, in 0..255 sRGB units (Euclidean RGB distance):

* ``skin``: the subject's skin colour, the median photo colour of the pixels the face parser
  labels skin (eroded by 2 px), whatever model the "after" run used;
* ``tex fh`` / ``tex ck``: mean distance of texture.png's seen texels (alpha 255) to that skin
  colour over the forehead (UV region ``forehead``) and the cheeks (``face`` without forehead,
  eye region, nose and lips), before -> after (nan: no seen texel; the mean line skips those);
* ``alb fh`` / ``alb ck``: the same over every texel of albedo.png (completed everywhere), to the
  subject's de-lit skin colour: the median of the "after" albedo over the texels the "after"
  texture saw (skin pixels only), the same reference for both runs;
* ``hairy``: share of the forehead+cheek texels of albedo.png farther than 60 units from that
  reference, before -> after;
* ``ms``: the segmentation stage's time in the "after" run (model + mask), milliseconds.

``--keep DIR`` keeps the bundles (DIR/NAME/before, DIR/NAME/after) to look at.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from backend.appearance.segmentation import Segmentation, load_segmenter  # noqa: E402
from backend.appearance.uvmaps import region_mask  # noqa: E402
from backend.options import ReconstructOptions  # noqa: E402
from backend.pipeline import Engine  # noqa: E402

EVAL = REPO.parent / "shared" / "eval" / "photos"
# Portraits with bangs or long hair over the forehead, temples or cheeks (looked at).
LONG_HAIR = ("alfw1.png", "expression_1.jpg", "expression_2.jpg", "expression_5.jpg",
             "expression_6.jpg", "expression_8.jpg", "id04657-PPHljWCZ53c-000565_inputs_inputs.jpg",
             "id06692-Hlahj5abifM-002721_inputs_inputs.jpg", "image02673.png")
HAIRY_DISTANCE = 60.0


def regions(assets: Path, size: int) -> dict[str, np.ndarray]:
    """(size, size) bool UV masks: forehead and cheeks (face without forehead/eyes/nose/lips)."""
    fh = region_mask(assets, ("forehead",), size)
    ck = region_mask(assets, ("face",), size) & ~fh \
        & ~region_mask(assets, ("eye_region", "nose", "lips", "lip_inside"), size)
    return {"fh": fh, "ck": ck}


def distance(img: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(H, W) Euclidean distance of (H, W, 3) colours to ref (3,), 0..255 units."""
    return np.linalg.norm(img[..., :3].astype(np.float64) - ref[None, None], axis=-1)


def photo_skin(rgb: np.ndarray, engine: Engine, seg_parser: object | None) -> np.ndarray:
    """(3,) median colour of the parser's skin pixels (label 1, eroded)."""
    face, _ = engine.detector.detect_face(rgb)
    seg = seg_parser.segment(rgb, face.points[:, :2])  # type: ignore[attr-defined]
    skin = Segmentation(np.where(seg.labels == 1, 1, 0).astype(np.uint8), "face_parser")
    mask = np.isin(skin.labels, (1,))
    from scipy import ndimage

    mask = ndimage.binary_erosion(mask, iterations=2)
    return np.median(rgb[mask].reshape(-1, 3), axis=0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", default=None, help="photo names in the eval folder")
    ap.add_argument("--quality", default="default")
    ap.add_argument("--keep", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    engine = Engine(ReconstructOptions(quality=args.quality))
    segmenter = engine.segmenter
    if segmenter is None:
        print("no segmentation model: run ./setup.sh")
        return 1
    parser, _ = load_segmenter()
    if parser is None or parser.model != "face_parser":
        print("the skin reference needs the face parser (weights/segmentation)")
        return 1
    names = args.only or list(LONG_HAIR)
    work = Path(tempfile.mkdtemp(prefix="bench_seg_"))
    rows = []
    print(f"model: {segmenter.model}; quality {args.quality}")
    print(f"{'photo':<34} {'skin':>13}  {'tex fh':>11} {'tex ck':>11}  {'alb fh':>11} "
          f"{'alb ck':>11}  {'hairy':>11} {'ms':>5}")
    try:
        for name in names:
            photo = EVAL / name
            rgb = np.asarray(Image.open(photo).convert("RGB"))
            skin = photo_skin(rgb, engine, parser)
            out: dict[str, dict] = {}
            for run in ("before", "after"):
                engine.segmenter = None if run == "before" else segmenter
                dest = (args.keep / Path(name).stem / run) if args.keep else work / f"{Path(name).stem}_{run}"
                if dest.exists():
                    shutil.rmtree(dest)
                res = engine.reconstruct(photo, dest, ReconstructOptions(quality=args.quality))
                out[run] = {"tex": np.asarray(Image.open(dest / "texture.png")),
                            "alb": np.asarray(Image.open(dest / "albedo.png").convert("RGB")),
                            "ms": 1000.0 * res["timings"].get("segmentation", 0.0)}
            engine.segmenter = segmenter
            size = out["after"]["tex"].shape[0]
            reg = regions(engine.assets, size)
            both = reg["fh"] | reg["ck"]
            seen_after = out["after"]["tex"][..., 3] > 127
            ref_alb = np.median(out["after"]["alb"][seen_after & both].reshape(-1, 3), axis=0)
            cells = {}
            for run in ("before", "after"):
                tex, alb = out[run]["tex"], out[run]["alb"]
                seen = tex[..., 3] > 127
                dt, da = distance(tex, skin), distance(alb, ref_alb)
                for k in ("fh", "ck"):
                    m = seen & reg[k]
                    cells[("tex", k, run)] = float(dt[m].mean()) if m.any() else float("nan")
                    cells[("alb", k, run)] = float(da[reg[k]].mean())
                cells[("hairy", run)] = float((da[both] > HAIRY_DISTANCE).mean())
            rows.append((name, cells, out["after"]["ms"]))

            def pair(key: tuple) -> str:
                b, a = cells[key + ("before",)], cells[key + ("after",)]
                return f"{b:5.1f}->{a:4.1f}"
            print(f"{name[:34]:<34} {'%3.0f,%3.0f,%3.0f' % tuple(skin):>13}  {pair(('tex', 'fh')):>11} "
                  f"{pair(('tex', 'ck')):>11}  {pair(('alb', 'fh')):>11} {pair(('alb', 'ck')):>11}  "
                  f"{cells[('hairy', 'before')]:5.2f}->{cells[('hairy', 'after')]:4.2f} "
                  f"{out['after']['ms']:5.0f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if rows:
        def mean(key: tuple) -> float:
            """Mean over the photos where both runs have a value (a forehead wholly under
            bangs has no seen texel after)."""
            pair = key[:-1]
            vals = [c[key] for _, c, _ in rows
                    if np.isfinite(c[pair + ("before",)]) and np.isfinite(c[pair + ("after",)])]
            return float(np.mean(vals)) if vals else float("nan")
        print("mean: " + "  ".join(
            f"{a} {k} {mean((a, k, 'before')):.1f}->{mean((a, k, 'after')):.1f}"
            for a in ("tex", "alb") for k in ("fh", "ck"))
              + f"  hairy {mean(('hairy', 'before')):.2f}->{mean(('hairy', 'after')):.2f}"
              + f"  segmentation {np.mean([ms for _, _, ms in rows]):.0f} ms/photo")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
