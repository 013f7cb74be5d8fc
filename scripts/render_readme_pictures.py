"""Make the README's head pictures: two evaluation photos reconstructed, each head rendered
in EEVEE neutral, smiling and with the jaw open (scripts/render_head.py), one row per photo.

Usage::

    OMP_NUM_THREADS=1 python scripts/render_readme_pictures.py [-o docs/images/readme_heads.jpg]
        [--photos ../shared/eval/photos] [--work out/readme] [--height 256] [--samples 16]
        [--reconstruct]

Bundles are reconstructed into ``--work/<photo stem>`` with ``headrecon reconstruct`` (default
quality) when they are missing or with ``--reconstruct``; then every bundle is rendered by
``scripts/render_head.py --engine EEVEE --preset NEUTRAL --preset SMILE --preset JAW_OPEN
--preset-mode REPLACE`` in its own process and the three renders (not the photo: the
evaluation photos must not be committed) are laid side by side on a dark background. About
1 min per reconstruction and 40 s per head's renders on two CPU cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
PHOTOS = ("IMG_0392_inputs.jpg", "expression_5.jpg")  # short hair; long hair with bangs (smiling)
PRESETS = ("NEUTRAL", "SMILE", "JAW_OPEN")
BACKGROUND = (46, 46, 46)
GAP = 6


def reconstruct(photo: Path, bundle: Path) -> None:
    """``headrecon reconstruct photo -o bundle`` with this interpreter (one torch thread)."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    subprocess.run([sys.executable, "-m", "backend", "reconstruct", str(photo), "-o", str(bundle)],
                   cwd=REPO, env=env, check=True)


def render_row(bundle: Path, height: int, samples: int) -> Image.Image:
    """The bundle's head rendered with each of ``PRESETS`` (EEVEE), side by side."""
    with tempfile.TemporaryDirectory(prefix="headrecon-readme-") as tmp:
        subprocess.run([sys.executable, str(REPO / "scripts" / "render_head.py"), str(bundle),
                        "-o", str(Path(tmp) / "sheet.png"), "--engine", "EEVEE",
                        "--height", str(height), "--samples", str(samples),
                        "--preset-mode", "REPLACE", "--keep-renders", tmp]
                       + [a for p in PRESETS for a in ("--preset", p)], cwd=REPO, check=True)
        # render_0 is the head as captured, render_1.. the presets
        panels = [Image.open(Path(tmp) / f"render_{k + 1}.png").convert("RGBA") for k in range(len(PRESETS))]
    w, h = panels[0].size
    row = Image.new("RGBA", (len(panels) * w + (len(panels) - 1) * GAP, h), BACKGROUND + (255,))
    for k, panel in enumerate(panels):
        back = Image.new("RGBA", panel.size, BACKGROUND + (255,))
        back.alpha_composite(panel)
        row.paste(back, (k * (w + GAP), 0))
    return row.convert("RGB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=REPO / "docs" / "images" / "readme_heads.jpg")
    parser.add_argument("--photos", type=Path, default=REPO.parent / "shared" / "eval" / "photos")
    parser.add_argument("--work", type=Path, default=REPO / "out" / "readme", help="bundles go here")
    parser.add_argument("--height", type=int, default=256, help="panel height in pixels")
    parser.add_argument("--samples", type=int, default=16, help="EEVEE samples")
    parser.add_argument("--reconstruct", action="store_true", help="reconstruct even if a bundle exists")
    args = parser.parse_args(argv)
    rows = []
    for name in PHOTOS:
        bundle = args.work / Path(name).stem
        if args.reconstruct or not (bundle / "result.json").is_file():
            reconstruct(args.photos / name, bundle)
        rows.append(render_row(bundle, args.height, args.samples))
    width = max(r.width for r in rows)
    sheet = Image.new("RGB", (width, sum(r.height for r in rows) + GAP * (len(rows) - 1)), BACKGROUND)
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height + GAP
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.output, quality=88, optimize=True)
    print(f"render_readme_pictures: wrote {args.output} ({sheet.width}x{sheet.height}, "
          f"{args.output.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
