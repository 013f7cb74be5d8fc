"""``headrecon serve``: start the job service on stdio (JSON lines), HTTP, or both."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO

from ..options import ReconstructOptions
from .jobs import EngineLike, LineWriter, Service, serve_stdio

log = logging.getLogger("headrecon.service")


def _protocol_stdout() -> BinaryIO:
    """Keep the real stdout for protocol lines; send everything else written to fd 1 to stderr."""
    sys.stdout.flush()
    proto = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return proto


def serve_main(args: argparse.Namespace) -> int:
    """Run the service until stdin ends, a shutdown request, SIGTERM or Ctrl-C."""
    use_http = args.http is not None
    use_stdio = args.stdio or not use_http
    try:
        base = ReconstructOptions.from_dict(
            ReconstructOptions(device=args.device, flame=args.flame, assets=args.assets).to_dict())
    except ValueError as exc:
        print(f"headrecon: error: {exc}.", file=sys.stderr)
        return 2
    server = None
    if use_http:
        from .http_transport import make_http_server

        token = os.environ.get("HEADRECON_TOKEN") or args.token
        if not token:
            token = secrets.token_urlsafe(24)
            print(f"headrecon: HTTP token (none given): {token}", file=sys.stderr, flush=True)
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("HTTP bound to %s: reachable from the network (token required).", args.host)
        try:
            server = make_http_server(args.host, args.http, token, args.request_timeout)
        except OSError as exc:
            print(f"headrecon: error: cannot listen on {args.host}:{args.http} ({exc.strerror}).",
                  file=sys.stderr)
            return 1
        host, port = server.server_address[:2]
        print(f"headrecon: HTTP listening on http://{host}:{port}", file=sys.stderr, flush=True)

    writer = LineWriter(_protocol_stdout()) if use_stdio else None
    own_jobs_dir = args.jobs_dir is None
    jobs_dir = Path(tempfile.mkdtemp(prefix="headrecon-jobs-")) if own_jobs_dir else Path(args.jobs_dir)

    def factory() -> EngineLike:
        from ..pipeline import Engine

        return Engine(base)

    service = Service(factory, base, jobs_dir, sink=writer, max_upload=args.max_upload_mb << 20,
                      keep_jobs=args.keep_jobs)
    service.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set() if use_stdio else _raise_interrupt())
    try:
        if server is not None:
            server.service = service
        if use_stdio:
            assert writer is not None
            if server is not None:
                threading.Thread(target=server.serve_forever, name="headrecon-http", daemon=True).start()
            # A private reader on a duplicate of fd 0: the daemon thread stays blocked in it
            # after SIGTERM, and interpreter shutdown, which locks sys.stdin's own buffer,
            # then aborted with "Fatal Python error: _enter_buffered_busy" (issue 12 item 8).
            stdin = open(os.dup(sys.stdin.fileno()), "rb", buffering=1 << 16)  # noqa: SIM115
            reader = threading.Thread(target=serve_stdio, args=(service, stdin, writer),
                                      name="headrecon-stdin", daemon=True)
            reader.start()
            while reader.is_alive() and not stop.is_set():
                reader.join(0.2)
        elif server is not None:
            server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.server_close()
        service.stop()
        if own_jobs_dir:
            shutil.rmtree(jobs_dir, ignore_errors=True)
    return 0


def _raise_interrupt() -> None:
    raise KeyboardInterrupt
