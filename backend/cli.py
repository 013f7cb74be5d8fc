"""Command line: ``headrecon reconstruct|batch|serve|capture|setup-weights`` (also ``python -m backend``).

Exit codes: 0 success, 2 bad input (not an image, unreadable, no face, unusable output
folder), 3 missing or invalid model file, 64 usage error (bad arguments), 130 cancelled
(Ctrl-C), 143 terminated (SIGTERM; temporary folders removed), 1 anything else. Errors are
one sentence on stderr.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import time
from typing import NoReturn

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


EXIT_USAGE = 64  # BSD sysexits EX_USAGE; 2 means a bad photo here


class _Parser(argparse.ArgumentParser):
    """argparse with exit code 64 for usage errors (its own 2 would read as "bad photo")."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class Terminated(BaseException):
    """SIGTERM arrived: unwind (``finally`` blocks remove temporary folders), exit 143."""


def _number(low: float, high: float, low_open: bool = False) -> "callable":
    """argparse type: a finite float in [low, high] (or (low, high] with ``low_open``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
            lo = "(" if low_open else "["
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number in {lo}{low:g}, {high:g}]")
        return value

    return parse


def _count(low: int, high: int) -> "callable":
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not in {low}..{high}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="headrecon", description="HeadRecon reconstruction backend")
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
    s.add_argument("--keep-jobs", type=_count(0, 10000), default=8, help="finished job folders kept (default 8)")
    s.add_argument("--max-upload-mb", type=_count(1, 4096), default=32, help="photo size limit in MiB (default 32)")
    s.add_argument("--request-timeout", type=_number(0, 3600, low_open=True), default=30.0,
                   help="HTTP: seconds a client has to send a whole request, plus its photo's "
                        "size at 256 KiB/s; slower clients are dropped (default 30)")
    s.add_argument("--device", default="auto")
    s.add_argument("--flame", default=None)
    s.add_argument("--assets", default=None)

    c = sub.add_parser("capture", help="ARKit weights + head/eye rotations of a photo, video or "
                       "image folder for a reconstructed head; Live Link Face CSV and/or JSON")
    c.add_argument("input", help="photo, video file or folder of images (natural order)")
    c.add_argument("--bundle", required=True, help="result bundle of the head (its identity)")
    c.add_argument("-o", "--output", required=True, action="append",
                   help="OUT.csv (Live Link Face) or OUT.json; may be given twice")
    c.add_argument("--fps", type=_number(0, 1000, low_open=True), default=None, help="frame rate (default: the video's, else 30)")
    c.add_argument("--smooth", type=_number(0, 100), default=1.0, help="Gaussian sigma in frames (0: off)")
    c.add_argument("--stop-file", default=None, help="stop when this file appears and write the "
                   "frames captured so far")
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
    if not args.verbose:
        from .native_log import filter_native_stderr

        filter_native_stderr()  # MediaPipe/TFLite/Warp start-up lines only with -v
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="headrecon: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    def on_term(signum: int, frame: object) -> None:
        raise Terminated

    if args.command != "serve":  # the service handles SIGTERM itself
        signal.signal(signal.SIGTERM, on_term)
    try:
        if args.command == "reconstruct":
            from .files.output import check_output_dir

            check_output_dir(args.output)  # before the model loads: refuse a folder of files
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
    except Terminated:
        print("headrecon: error: terminated.", file=sys.stderr)
        return 143
    return 1
