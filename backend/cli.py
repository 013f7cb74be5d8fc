"""Command line: ``headrecon reconstruct|batch|serve|capture|setup-weights`` (also ``python -m backend``).

Exit codes: 0 success, 2 bad input (not an image, unreadable, no face), 3 missing or
invalid model file, 130 cancelled, 1 anything else. Errors are one sentence on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from . import __version__
from .errors import HeadReconError
from .options import QUALITIES, ReconstructOptions


def _stderr_progress() -> "callable":
    start = time.perf_counter()

    def progress(stage: str, fraction: float, message: str = "") -> None:
        elapsed = time.perf_counter() - start
        text = f"[{fraction * 100:5.1f}%] {elapsed:6.1f}s {stage}"
        if message:
            text += f": {message}"
        print(text, file=sys.stderr, flush=True)

    return progress


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="headrecon", description="HeadRecon reconstruction backend")
    p.add_argument("--version", action="version", version=f"headrecon {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("reconstruct", help="fit a FLAME head to one photo and write a bundle")
    r.add_argument("photo", help="input photo (JPEG, PNG, ...)")
    r.add_argument("-o", "--output", required=True, help="output folder for the result bundle")
    r.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    r.add_argument("--flame", default=None, help="FLAME model (.pkl official or .npz)")
    r.add_argument("--assets", default=None, help="assets folder (default ../shared/assets)")
    r.add_argument("--quality", choices=QUALITIES, default="default")
    r.add_argument("--no-detail", action="store_true", help="skip the UV displacement stage")
    r.add_argument("--no-texture", action="store_true", help="skip texture and albedo stages")

    s = sub.add_parser("serve", help="keep the model loaded and serve jobs")
    s.add_argument("--stdio", action="store_true", help="JSON lines on stdin/stdout (default)")
    s.add_argument("--http", metavar="PORT", type=int, default=None, help="serve HTTP on PORT (0: any free port); with --stdio also stdio")
    s.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default loopback)")
    s.add_argument("--token", default=None, help="bearer token for HTTP (or $HEADRECON_TOKEN)")
    s.add_argument("--jobs-dir", default=None, help="folder for per-job folders (default: a temporary one)")
    s.add_argument("--keep-jobs", type=int, default=8, help="finished job folders kept (default 8)")
    s.add_argument("--max-upload-mb", type=int, default=32, help="photo size limit in MiB (default 32)")
    s.add_argument("--device", default="auto")
    s.add_argument("--flame", default=None)
    s.add_argument("--assets", default=None)

    c = sub.add_parser("capture", help="ARKit weights + head/eye rotations of a photo, video or "
                       "image folder for a reconstructed head; Live Link Face CSV and/or JSON")
    c.add_argument("input", help="photo, video file or folder of images (natural order)")
    c.add_argument("--bundle", required=True, help="result bundle of the head (its identity)")
    c.add_argument("-o", "--output", required=True, action="append",
                   help="OUT.csv (Live Link Face) or OUT.json; may be given twice")
    c.add_argument("--fps", type=float, default=None, help="frame rate (default: the video's, else 30)")
    c.add_argument("--smooth", type=float, default=1.0, help="Gaussian sigma in frames (0: off)")
    c.add_argument("--device", default="auto")
    c.add_argument("--flame", default=None)
    c.add_argument("--assets", default=None)

    from .batch.runner import add_batch_parser

    add_batch_parser(sub, QUALITIES)

    w = sub.add_parser("setup-weights", help="extract model files into weights/")
    w.add_argument("--assets", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="headrecon: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "reconstruct":
            from .pipeline import reconstruct

            opts = ReconstructOptions(
                device=args.device, flame=args.flame, assets=args.assets, quality=args.quality,
                detail=not args.no_detail, texture=not args.no_texture,
            )
            result = reconstruct(args.photo, args.output, opts, progress=_stderr_progress())
            for w in result.get("warnings", []):
                print(f"headrecon: warning: {w}", file=sys.stderr)
            print(f"headrecon: wrote {args.output}", file=sys.stderr)
            return 0
        if args.command == "serve":
            from .service.main import serve_main

            return serve_main(args)
        if args.command == "capture":
            from .capture import capture_main

            return capture_main(args, progress=_stderr_progress())
        if args.command == "batch":
            from .batch.runner import batch_main

            return batch_main(args)
        if args.command == "setup-weights":
            from .setup_weights import setup_weights

            setup_weights(assets=args.assets)
            return 0
    except HeadReconError as exc:
        print(f"headrecon: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("headrecon: error: cancelled.", file=sys.stderr)
        return 130
    return 1
