"""``headrecon serve``: one warm ``Engine`` that runs reconstruction jobs for clients.

Transports (protocol in docs/SERVICE.md):

* stdio (default; used by the Blender add-on): one JSON object per line on stdin, replies
  and job events as JSON lines on stdout. stdout carries protocol lines only: everything
  else the process prints (Python or C code) is redirected to stderr. End of stdin stops
  the service, so a parent that dies never leaves it behind.
* HTTP (``--http PORT``, for a GPU machine on the network): bound to 127.0.0.1 unless
  ``--host`` says otherwise, every request needs ``Authorization: Bearer <token>``, the
  photo is the request body (size-limited), results are fetched file by file.

Jobs run one at a time in a worker thread, so health and cancel are answered while busy.
Each job works only inside its own folder ``<jobs dir>/<job id>/`` (the photo is copied or
uploaded there first, the bundle is written to ``bundle/`` inside it).
"""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import re
import secrets
import shutil
import stat
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, BinaryIO, Callable, Protocol

from .. import __version__
from ..errors import BadInputError, Cancelled, HeadReconError, ModelFileError
from ..options import ReconstructOptions

log = logging.getLogger("headrecon.service")

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 1 << 20  # one stdio request line
DEFAULT_MAX_UPLOAD_MB = 32  # photo size limit (stdio copy and HTTP body)
MAX_PATH_CHARS = 4096
MAX_QUERY_CHARS = 4096
JOB_OPTION_KEYS = frozenset({"quality", "detail", "texture", "max_side", "seed"})
SERVICE_OPTION_KEYS = frozenset({"device", "flame", "assets", "extra"})
IMAGE_FORMATS: dict[str, str] = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "TIFF": ".tif",
                                 "WEBP": ".webp"}
JOB_ID_RE = re.compile(r"[0-9a-f]{16}")
FILE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
REQUEST_TYPES = ("health", "reconstruct", "cancel", "release", "shutdown")
MAX_EVENTS_PER_JOB = 512
PROGRESS_INTERVAL_S = 0.1

Event = dict[str, Any]
Sink = Callable[[Event], None]


class EngineLike(Protocol):
    """What the service needs from ``backend.pipeline.Engine``."""

    def health(self) -> dict[str, Any]: ...

    def reconstruct(self, photo: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                    options: ReconstructOptions | None = None, progress: Any = None,
                    cancel: Any = None) -> dict[str, Any]: ...


class RequestError(Exception):
    """A request the service refuses; ``code`` is the protocol error code."""

    def __init__(self, code: str, message: str, http_status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status


def error_code(exc: BaseException) -> str:
    """Protocol error code of an exception raised by a job."""
    if isinstance(exc, Cancelled):
        return "cancelled"
    if isinstance(exc, BadInputError):
        return "bad_input"
    if isinstance(exc, ModelFileError):
        return "model_file"
    return "internal"


def error_message(exc: BaseException) -> str:
    """One sentence for the user; internal errors name the exception type."""
    if isinstance(exc, HeadReconError):
        return str(exc) or type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"Internal backend error ({type(exc).__name__}{': ' + text[:300] if text else ''})."


@dataclass
class Job:
    """One reconstruction job and everything it emitted (for HTTP polling)."""

    id: str
    folder: Path
    photo: Path
    options: ReconstructOptions
    sink: Sink | None  # stdio writer, or None for HTTP jobs (polled)
    state: str = "queued"  # queued | running | done | error | cancelled
    cancel: threading.Event = field(default_factory=threading.Event)
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS_PER_JOB))
    seq: int = 0
    finished_at: float = 0.0

    @property
    def bundle_dir(self) -> Path:
        return self.folder / "bundle"

    @property
    def finished(self) -> bool:
        return self.state in ("done", "error", "cancelled")


def check_image(data: bytes) -> str:
    """File suffix for an uploaded photo after a header check; BadInputError if not an image.

    Args:
        data: the raw file content.
    Returns:
        ".jpg", ".png", ... from the detected format (the client's name is never used).
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise BadInputError("The photo file is empty.")
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or ""
            width, height = img.size
            img.verify()
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise BadInputError("The file is not a supported image (JPEG, PNG, BMP, TIFF or WebP).") from None
    except Exception as exc:  # truncated or corrupt headers raise many exception types
        raise BadInputError(f"The image file is damaged ({type(exc).__name__}).") from None
    if fmt not in IMAGE_FORMATS:
        raise BadInputError(f"Unsupported image format {fmt or 'unknown'}; use JPEG, PNG, BMP, TIFF or WebP.")
    if width < 16 or height < 16:
        raise BadInputError(f"The image is too small ({width}x{height} pixels).")
    return IMAGE_FORMATS[fmt]


def safe_stem(name: Any) -> str:
    """A file stem made of word characters and dashes (at most 64), from an untrusted name."""
    if not isinstance(name, str):
        return "photo"
    stem = re.sub(r"[^\w-]+", "_", PurePath(name.replace("\\", "/")).stem)[:64].strip("_")
    return stem or "photo"


def job_options(raw: Any, base: ReconstructOptions) -> ReconstructOptions:
    """Validate per-job options from an untrusted request on top of the service's settings.

    Raises:
        RequestError("bad_request") with one sentence.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RequestError("bad_request", "options must be a JSON object.")
    fixed = sorted(k for k in raw if k in SERVICE_OPTION_KEYS)
    if fixed:
        raise RequestError("bad_request", f"Option(s) {', '.join(fixed)} are set when the service "
                                          f"starts, not per job.")
    unknown = sorted(str(k)[:40] for k in raw if k not in JOB_OPTION_KEYS)
    if unknown:
        raise RequestError("bad_request", f"Unknown option(s): {', '.join(unknown)}.")
    for key in ("detail", "texture"):
        if key in raw and not isinstance(raw[key], bool):
            raise RequestError("bad_request", f"Option {key} must be true or false.")
    for key, lo, hi in (("max_side", 64, 4096), ("seed", 0, 2**31 - 1)):
        val = raw.get(key, lo)
        if isinstance(val, bool) or not isinstance(val, int) or not lo <= val <= hi:
            raise RequestError("bad_request", f"Option {key} must be an integer in {lo}..{hi}.")
    if "quality" in raw and not isinstance(raw["quality"], str):
        raise RequestError("bad_request", "Option quality must be a string.")
    merged = {**base.to_dict(), **raw}
    try:
        return ReconstructOptions.from_dict(merged)
    except (ValueError, TypeError) as exc:
        raise RequestError("bad_request", f"Bad options: {exc}.") from None


class Service:
    """Job queue, worker thread and warm engine, independent of the transport.

    Args:
        engine_factory: builds the warm engine (called once, in the worker thread).
        base_options: device / flame / assets of the service; per-job options go on top.
        jobs_dir: parent folder of the per-job folders (created if missing).
        sink: where service-level events (ready, load error) go, or None.
        max_upload: photo size limit in bytes.
        keep_jobs: finished job folders kept before the oldest are deleted.
    """

    def __init__(self, engine_factory: Callable[[], EngineLike], base_options: ReconstructOptions,
                 jobs_dir: Path, sink: Sink | None = None,
                 max_upload: int = DEFAULT_MAX_UPLOAD_MB << 20, keep_jobs: int = 8):
        self._engine_factory = engine_factory
        self.base_options = base_options
        self.jobs_dir = Path(jobs_dir).resolve()
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.sink = sink
        self.max_upload = max_upload
        self.keep_jobs = max(keep_jobs, 1)
        self.state = "loading"  # loading | ready | error | stopped
        self.load_error: tuple[str, str] | None = None
        self._engine_info: dict[str, Any] = {}
        self._jobs: dict[str, Job] = {}
        self._current: Job | None = None
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="headrecon-worker", daemon=True)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel the running job, stop the worker and delete every job folder."""
        with self._lock:
            self.state = "stopped"
            for job in self._jobs.values():
                job.cancel.set()
        self._queue.put(None)
        self._worker.join(timeout)
        with self._lock:
            for job in list(self._jobs.values()):
                shutil.rmtree(job.folder, ignore_errors=True)
            self._jobs.clear()

    def _work(self) -> None:
        try:
            engine = self._engine_factory()
            _warm_up(engine)
            info = engine.health()
        except BaseException as exc:  # noqa: BLE001 - reported to the client, never fatal
            if not isinstance(exc, HeadReconError):
                traceback.print_exc(file=sys.stderr)
            with self._lock:
                self.load_error = (error_code(exc), error_message(exc))
                if self.state != "stopped":
                    self.state = "error"
            self._emit_service({"type": "error", "code": self.load_error[0],
                                "message": self.load_error[1]})
            self._fail_queued()
            return
        with self._lock:
            self._engine_info = info
            if self.state != "stopped":
                self.state = "ready"
        self._emit_service({"type": "ready", **self._health_fields()})
        while True:
            job = self._queue.get()
            if job is None:
                return
            self._run(engine, job)

    def _fail_queued(self) -> None:
        assert self.load_error is not None
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self._finish(job, "error", {"type": "error", "job": job.id,
                                            "code": self.load_error[0], "message": self.load_error[1]})

    def _run(self, engine: EngineLike, job: Job) -> None:
        if job.cancel.is_set():
            job.photo.unlink(missing_ok=True)
            self._finish(job, "cancelled", {"type": "error", "job": job.id, "code": "cancelled",
                                            "message": "Reconstruction cancelled."})
            return
        with self._lock:
            job.state = "running"
            self._current = job
        last = {"stage": "", "t": 0.0}

        def progress(stage: str, fraction: float, message: str = "") -> None:
            now = time.monotonic()
            if stage == last["stage"] and message != "done" and now - last["t"] < PROGRESS_INTERVAL_S:
                return
            last.update(stage=stage, t=now)
            frac = min(max(float(fraction), 0.0), 1.0)
            self._emit(job, {"type": "progress", "job": job.id, "stage": str(stage)[:64],
                             "fraction": round(frac, 4), "message": str(message)[:200]})

        try:
            result = engine.reconstruct(job.photo, job.bundle_dir, job.options, progress=progress,
                                        cancel=job.cancel.is_set)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes one error event
            code = error_code(exc)
            if code == "internal":
                traceback.print_exc(file=sys.stderr)
            shutil.rmtree(job.bundle_dir, ignore_errors=True)
            state = "cancelled" if code == "cancelled" else "error"
            event = {"type": "error", "job": job.id, "code": code, "message": error_message(exc)}
        else:
            state = "done"
            event = {"type": "result", "job": job.id, "bundle_dir": str(job.bundle_dir),
                     "files": sorted(p.name for p in job.bundle_dir.iterdir() if p.is_file()),
                     "warnings": [str(w) for w in result.get("warnings", [])],
                     "timings": result.get("timings", {}), "device": result.get("device")}
        job.photo.unlink(missing_ok=True)
        with self._lock:
            self._current = None
        self._finish(job, state, event)

    def _finish(self, job: Job, state: str, event: Event) -> None:
        """Mark the job finished, prune old job folders, then tell the client."""
        with self._lock:
            job.state = state
            job.finished_at = time.monotonic()
        self._prune()
        self._emit(job, event)

    def _prune(self) -> None:
        """Delete the oldest finished job folders beyond ``keep_jobs``."""
        with self._lock:
            done = sorted((j for j in self._jobs.values() if j.finished), key=lambda j: j.finished_at)
            for job in done[: max(len(done) - self.keep_jobs, 0)]:
                shutil.rmtree(job.folder, ignore_errors=True)
                del self._jobs[job.id]

    # ---------------------------------------------------------------- events
    def _emit(self, job: Job, event: Event) -> None:
        with self._lock:
            job.seq += 1
            event["seq"] = job.seq
            job.events.append(event)
        if job.sink is not None:
            job.sink(event)

    def _emit_service(self, event: Event) -> None:
        if self.sink is not None:
            self.sink(event)

    # ---------------------------------------------------------------- requests
    def _health_fields(self) -> dict[str, Any]:
        with self._lock:
            busy = self._current is not None or not self._queue.empty()
            state = "busy" if self.state == "ready" and busy else self.state
            current = self._current.id if self._current is not None else None
        info = self._engine_info
        return {"version": __version__, "protocol": PROTOCOL_VERSION, "state": state,
                "device": info.get("device"), "model": info.get("model"),
                "cuda_available": info.get("cuda_available"), "job": current,
                "error": self.load_error[1] if self.load_error else None, "pid": os.getpid()}

    def health(self) -> dict[str, Any]:
        return {"type": "health", **self._health_fields()}

    def submit(self, data: bytes, options: Any, sink: Sink | None, name: str = "photo") -> Job:
        """Create a job from the photo bytes; the caller announces it, then calls ``enqueue``.

        Args:
            data: the photo file's bytes.
            options: untrusted per-job options (JSON object or None).
            sink: where the job's events go (stdio writer) or None (HTTP, polled).
            name: the client's file name; only a sanitised stem of it is used (it names the
                result's collection in Blender), the suffix comes from the detected format.

        Raises:
            RequestError: busy, engine failed to load, bad options or not an image.
        """
        opts = job_options(options, self.base_options)
        if len(data) > self.max_upload:
            raise RequestError("bad_input", f"The photo is larger than the "
                                            f"{self.max_upload >> 20} MiB limit.", 413)
        try:
            suffix = check_image(data)
        except BadInputError as exc:
            raise RequestError("bad_input", str(exc)) from None
        with self._lock:
            if self.load_error is not None:
                raise RequestError(self.load_error[0], self.load_error[1], 503)
            if self.state == "stopped":
                raise RequestError("busy", "The service is shutting down.", 503)
            if any(not j.finished for j in self._jobs.values()):
                raise RequestError("busy", "The backend is busy with another job; wait or cancel it.", 409)
            job_id = secrets.token_hex(8)
            folder = self.jobs_dir / job_id
            folder.mkdir(mode=0o700)
            photo = folder / f"{safe_stem(name)}{suffix}"
            photo.write_bytes(data)
            job = Job(job_id, folder, photo, opts, sink)
            self._jobs[job_id] = job
        return job

    def enqueue(self, job: Job) -> None:
        self._queue.put(job)

    def job(self, job_id: Any) -> Job:
        """The job with this id; RequestError("not_found") for anything else."""
        if not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id):
            raise RequestError("bad_request", "job must be a job id as returned by reconstruct.")
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise RequestError("not_found", f"No job {job_id}.", 404)
        return job

    def job_status(self, job: Job, since: int) -> dict[str, Any]:
        """State of a job and the events after sequence number ``since`` (HTTP polling)."""
        with self._lock:
            events = [e for e in job.events if e["seq"] > since]
            return {"type": "job", "job": job.id, "state": job.state, "events": events}

    def cancel(self, job_id: Any) -> Job:
        job = self.job(job_id)
        if job.finished:
            raise RequestError("bad_request", f"Job {job.id} has already finished.", 409)
        job.cancel.set()
        return job

    def release(self, job_id: Any) -> None:
        """Delete a finished job's folder (the client has copied the bundle)."""
        job = self.job(job_id)
        if not job.finished:
            raise RequestError("busy", f"Job {job.id} is still running; cancel it first.", 409)
        with self._lock:
            self._jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)

    def bundle_file(self, job_id: Any, name: str) -> Path:
        """A file of a finished job's bundle by bare name; rejects anything else."""
        job = self.job(job_id)
        if job.state != "done":
            raise RequestError("not_found", f"Job {job.id} has no result.", 404)
        if not FILE_NAME_RE.fullmatch(name) or ".." in name:
            raise RequestError("bad_request", "Bad file name.")
        path = job.bundle_dir / name
        if path.is_symlink() or not path.is_file() or path.resolve().parent != job.bundle_dir.resolve():
            raise RequestError("not_found", f"No file {name} in job {job.id}.", 404)
        return path


def _warm_up(engine: EngineLike) -> None:
    """Create the engine's lazily loaded parts (the face detector) now, so that the first job
    is as fast as the next ones."""
    getattr(engine, "detector", None)


# -------------------------------------------------------------------- stdio transport
class LineWriter:
    """Writes protocol events as JSON lines to a binary stream, thread-safe.

    A write that fails (the client went away) sets ``broken``.
    """

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self._lock = threading.Lock()
        self.broken = threading.Event()

    def __call__(self, event: Event) -> None:
        line = json.dumps(event, ensure_ascii=True, allow_nan=False, default=str).encode() + b"\n"
        with self._lock:
            if self.broken.is_set():
                return
            try:
                self._stream.write(line)
                self._stream.flush()
            except (OSError, ValueError):
                self.broken.set()


def _client_id(msg: dict[str, Any]) -> Any:
    cid = msg.get("id")
    if cid is None or (isinstance(cid, int) and not isinstance(cid, bool) and abs(cid) < 2**53) or (
            isinstance(cid, str) and len(cid) <= 64):
        return cid
    raise RequestError("bad_request", "id must be an integer or a string of at most 64 characters.")


def _read_photo(path_value: Any, max_upload: int) -> bytes:
    """Read the photo a stdio client names (a regular file, absolute path, size-limited)."""
    if not isinstance(path_value, str) or not path_value or len(path_value) > MAX_PATH_CHARS \
            or "\x00" in path_value:
        raise RequestError("bad_request", "photo must be the absolute path of an image file.")
    path = Path(path_value)
    if not path.is_absolute():
        raise RequestError("bad_request", "photo must be an absolute path.")
    try:
        st = path.stat()
    except OSError:
        raise RequestError("bad_input", f"Photo not found: {path_value[:300]}.") from None
    if not stat.S_ISREG(st.st_mode):
        raise RequestError("bad_input", f"The photo is not a regular file: {path_value[:300]}.")
    if st.st_size > max_upload:
        raise RequestError("bad_input", f"The photo is larger than the {max_upload >> 20} MiB limit.")
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_upload + 1)
    except OSError as exc:
        raise RequestError("bad_input", f"The photo cannot be read ({exc.strerror}).") from None
    if len(data) > max_upload:
        raise RequestError("bad_input", f"The photo is larger than the {max_upload >> 20} MiB limit.")
    return data


def handle_line(service: Service, line: bytes, reply: Sink) -> bool:
    """Answer one stdio request line. Returns False when the client asked to shut down."""
    cid: Any = None
    try:
        if len(line) > MAX_LINE_BYTES:
            raise RequestError("bad_request", f"Message longer than {MAX_LINE_BYTES} bytes.")
        try:
            msg = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            raise RequestError("bad_request", "Message is not UTF-8.") from None
        except (ValueError, RecursionError):
            raise RequestError("bad_request", "Message is not valid JSON.") from None
        if not isinstance(msg, dict):
            raise RequestError("bad_request", "Message must be a JSON object.")
        cid = _client_id(msg)
        kind = msg.get("type")
        if kind == "health":
            reply({"id": cid, **service.health()})
        elif kind == "reconstruct":
            data = _read_photo(msg.get("photo"), service.max_upload)
            job = service.submit(data, msg.get("options"), reply, name=msg["photo"])
            reply({"type": "accepted", "id": cid, "job": job.id})
            service.enqueue(job)
        elif kind == "cancel":
            job = service.cancel(msg.get("job"))
            reply({"type": "cancelling", "id": cid, "job": job.id})
        elif kind == "release":
            service.release(msg.get("job"))
            reply({"type": "released", "id": cid, "job": msg["job"]})
        elif kind == "shutdown":
            reply({"type": "bye", "id": cid})
            return False
        else:
            raise RequestError("bad_request", f"type must be one of {', '.join(REQUEST_TYPES)}.")
    except RequestError as exc:
        reply({"type": "error", "id": cid, "code": exc.code, "message": exc.message})
    except Exception as exc:  # noqa: BLE001 - a request must never kill the service
        traceback.print_exc(file=sys.stderr)
        reply({"type": "error", "id": cid, "code": "internal", "message": error_message(exc)})
    return True


def serve_stdio(service: Service, stdin: BinaryIO, writer: LineWriter) -> None:
    """Read requests until end of input, a shutdown request or a broken stdout."""
    while not writer.broken.is_set():
        line = stdin.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while True:  # drop the rest of the oversized line
                rest = stdin.readline(MAX_LINE_BYTES)
                if not rest or rest.endswith(b"\n"):
                    break
        elif not line.strip():
            writer({"type": "error", "id": None, "code": "bad_request", "message": "Empty message."})
            continue
        if not handle_line(service, line, writer):
            return


# -------------------------------------------------------------------- entry point
