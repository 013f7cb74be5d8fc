"""Connection from the Blender extension to the reconstruction backend (stdlib only, no bpy).

Two transports with one interface (:class:`Backend`):

* :class:`LocalBackend` spawns ``<python> -m backend serve`` (or a ``headrecon`` command)
  and talks JSON lines over its stdin/stdout (docs/SERVICE.md).
* :class:`RemoteBackend` talks to ``headrecon serve --http`` on another machine with a
  bearer token and downloads the result files.

Nothing here blocks for long: background threads read the process or the network and put
events on a queue; the caller (a Blender timer or modal operator) calls :meth:`Backend.poll`
which applies them to ``status`` and the current :class:`ClientJob`. Every backend process
is stopped by :meth:`Backend.stop` and, as a last resort, at interpreter exit.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATUSES = ("stopped", "starting", "ready", "busy", "error")
STOP_GRACE_S = 3.0
CANCEL_GRACE_S = 10.0
REMOTE_POLL_S = 0.3
HTTP_TIMEOUT_S = 30.0


@dataclass
class BackendConfig:
    """What the add-on preferences hold.

    command: a Python executable (runs ``python -m backend``) or a command line such as
        ``headrecon`` or ``/opt/headrecon/bin/headrecon``; empty when remote.
    remote_url: ``http://host:port`` of ``headrecon serve --http``; when set, ``command``
        is not used.
    """

    command: str = ""
    assets: str = ""
    flame: str = ""
    device: str = "auto"  # auto | cpu | cuda
    remote_url: str = ""
    token: str = ""
    start_timeout_s: float = 180.0
    job_timeout_s: float = 900.0


@dataclass
class ClientJob:
    """One reconstruction as the client sees it; updated by :meth:`Backend.poll`."""

    photo: str
    dest: Path  # the bundle is copied/downloaded to dest / <job id>
    request_id: str
    id: str | None = None  # the service's job id once accepted
    state: str = "submitted"  # submitted | running | done | failed | cancelled
    stage: str = ""
    fraction: float = 0.0
    message: str = ""
    bundle_dir: Path | None = None
    error_code: str | None = None
    warnings: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    cancel_requested_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")


class BackendError(Exception):
    """The backend cannot be started or reached; the message is one sentence for the user."""


# What a server may name: its own job ids (16 hex digits, ``secrets.token_hex(8)``) and plain
# bundle file names. Anything else is refused before a local path is built from it.
JOB_ID_RE = re.compile(r"[0-9a-f]{16}")
FILE_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
MAX_FILES = 64
MAX_FILE_BYTES = 512 << 20
MAX_BUNDLE_BYTES = 1 << 30
MAX_STATUS_BYTES = 8 << 20
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def checked_job_id(value: Any) -> str:
    """The server's job id when it has the server's format; else BackendError."""
    if not isinstance(value, str) or not JOB_ID_RE.fullmatch(value):
        raise BackendError("The backend sent an invalid job id; the result was not saved.")
    return value


def contained_path(folder: Path, name: str) -> Path:
    """``folder / name`` after checking ``name`` is a plain bundle file name that stays inside
    ``folder`` once resolved (no separators, no dot files, no links out)."""
    if not isinstance(name, str) or not FILE_NAME_RE.fullmatch(name) or ".." in name:
        raise BackendError(f"The backend sent an invalid file name ({str(name)[:40]!r}); the "
                           "result was not saved.")
    path = (folder / name).resolve()
    if path.parent != folder.resolve():
        raise BackendError(f"The backend's file {name} would land outside {folder}; refused.")
    return path


def cleartext_warning(url: str) -> str | None:
    """A warning when the bearer token would travel unencrypted to another machine."""
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme == "http" and (parsed.hostname or "") not in LOOPBACK_HOSTS:
        return (f"The token travels in clear text over http:// to {parsed.hostname}; use an SSH "
                "tunnel (ssh -L 8765:localhost:8765 host) or an HTTPS proxy (docs/SERVICE.md).")
    return None


_LIVE: "weakref.WeakSet[Backend]" = weakref.WeakSet()


@atexit.register
def stop_all() -> None:
    """Stop every backend this interpreter started (called at exit and on add-on disable)."""
    for backend in list(_LIVE):
        backend.stop()


class Backend:
    """Common state machine: ``status`` in STATUSES, ``message`` for the user, one job at a time."""

    def __init__(self, config: BackendConfig):
        self.config = config
        self.status = "stopped"
        self.message = ""
        self.warning: str | None = None  # e.g. the token travels in clear text
        self.restart_note: str | None = None  # set by the add-on: it had stopped, was restarted
        self.device: str | None = None
        self.model: str | None = None
        self.job: ClientJob | None = None
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._started_at = 0.0
        self._next_request = 0
        self._exited = False  # the backend ended on its own (crash, kill) since the last start
        _LIVE.add(self)

    # -------------------------------------------------------------- interface
    def start(self) -> None:
        """Start (non-blocking): status becomes ``starting``, then ``ready`` or ``error``."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the backend (cancels a running job); status becomes ``stopped``."""
        raise NotImplementedError

    def reconstruct(self, photo: str, options: dict[str, Any], dest: str | os.PathLike[str]) -> ClientJob:
        """Submit a photo; the bundle arrives in ``dest/<job id>``. BackendError if not ready."""
        if self.status not in ("ready",):
            raise BackendError(self._not_ready_reason())
        photo_path = Path(photo).expanduser()
        if not photo_path.is_file():
            raise BackendError(f"Photo not found: {photo}.")
        self._next_request += 1
        job = ClientJob(photo=str(photo_path.resolve()), dest=Path(dest), request_id=f"r{self._next_request}")
        self.job = job
        self.status = "busy"
        self._submit(job, options)
        return job

    def alive(self) -> bool:
        """False when the backend is known to have ended on its own (a local process that
        exited); a remote server is judged by its requests."""
        return True

    def ensure_running(self) -> str | None:
        """Start the backend unless it runs; one that stopped on its own is restarted.

        A local process that died while idle is noticed here even before its exit event
        arrives, so a Reconstruct never goes to a dead process.

        Returns:
            A sentence for the user when the backend had stopped and is being restarted, else None.
        """
        self.poll()
        note = None
        if self.status in ("ready", "busy", "starting") and not self.alive():
            self.status, self.message = "error", self._death_message()
            self._fail(self.job, "backend_exited", self.message)
        if self.status == "error" and self._exited:
            note = f"{self.message.rstrip('.')}; restarting it."
        if self.status in ("stopped", "error"):
            self.start()
        return note

    def _death_message(self) -> str:
        return "The backend stopped."

    def cancel(self) -> None:
        """Ask the backend to stop the current job (it ends as ``cancelled``)."""
        job = self.job
        if job is None or job.finished or job.cancel_requested_at is not None:
            return
        job.cancel_requested_at = time.monotonic()
        job.message = "Cancelling..."
        if job.id is not None:
            self._send_cancel(job.id)

    def poll(self) -> list[dict[str, Any]]:
        """Apply every pending event and check timeouts; returns the events applied."""
        applied = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            self._apply(event)
            applied.append(event)
        self._check_timeouts()
        return applied

    @property
    def status_text(self) -> str:
        """One line for the panel: 'Ready on CUDA (cuda:0)', 'Error: ...', ..."""
        if self.status == "ready":
            dev = self.device or "?"
            return f"Ready on {'CUDA' if dev.startswith('cuda') else 'CPU'} ({dev})"
        if self.status == "busy":
            return "Busy"
        if self.status == "starting":
            return "Starting..."
        if self.status == "error":
            return f"Error: {self.message}"
        return "Stopped"

    # -------------------------------------------------------------- transport hooks
    def _submit(self, job: ClientJob, options: dict[str, Any]) -> None:
        raise NotImplementedError

    def _send_cancel(self, job_id: str) -> None:
        raise NotImplementedError

    def _kill(self) -> None:
        """Stop the transport hard (timeouts)."""
        self.stop()

    # -------------------------------------------------------------- event handling
    def _not_ready_reason(self) -> str:
        if self.status == "busy":
            return "The backend is busy with another reconstruction."
        if self.status == "starting":
            return "The backend is still starting."
        if self.status == "error":
            return f"The backend is not running ({self.message}); press Start to restart it."
        return "The backend is not running; press Start."

    def _fail(self, job: ClientJob | None, code: str, message: str) -> None:
        if job is None or job.finished:
            return
        if job.error_code == "timeout" and code == "cancelled":
            code = "timeout"
            message = f"The reconstruction timed out after {self.config.job_timeout_s:.0f} s."
        job.state = "cancelled" if code == "cancelled" else "failed"
        job.error_code = code
        job.message = message

    def _apply(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        job = self.job
        if kind in ("ready", "health"):
            self.device = ev.get("device")
            self.model = (ev.get("model") or {}).get("name")
            if self.status == "starting" and ev.get("state") in ("ready", "busy"):
                self.status = "ready"
                self.message = ""
        elif kind == "accepted" and job is not None and ev.get("id") == job.request_id:
            job.id = ev.get("job")
            job.state = "running"
            if job.cancel_requested_at is not None and job.id:
                self._send_cancel(job.id)
        elif kind == "progress" and job is not None and ev.get("job") == job.id:
            job.stage = str(ev.get("stage", ""))
            job.fraction = float(ev.get("fraction", 0.0))
            if job.cancel_requested_at is None:
                job.message = str(ev.get("message") or job.stage)
        elif kind == "result" and job is not None and ev.get("job") == job.id:
            job.state = "done"
            job.fraction = 1.0
            job.bundle_dir = Path(ev["local_dir"])
            job.warnings = [str(w) for w in ev.get("warnings", [])]
            job.message = "Done"
            self.status = "ready"
        elif kind == "error":
            code, message = str(ev.get("code", "internal")), str(ev.get("message", "Unknown error."))
            is_job = job is not None and ((ev.get("job") is not None and ev.get("job") == job.id)
                                          or ev.get("id") == job.request_id)
            if is_job:
                self._fail(job, code, message)
                if self.status == "busy":
                    self.status = "ready"
            elif "id" not in ev and "job" not in ev:
                # service-level: the engine could not load (missing model file, ...)
                self._fail(job, code, message)
                self.message = message
                self._kill()
                self.status = "error"
        elif kind == "exited" and self.status != "stopped":
            self.message = str(ev.get("message"))
            self._exited = True
            self._fail(job, "backend_exited", self.message)
            self._kill()
            self.status = "error"

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        if self.status == "starting" and now - self._started_at > self.config.start_timeout_s:
            self.message = (f"The backend did not start within {self.config.start_timeout_s:.0f} s; "
                            f"it was stopped.")
            self._kill()
            self.status = "error"
        job = self.job
        if job is None or job.finished:
            return
        if job.cancel_requested_at is None and now - job.started > self.config.job_timeout_s:
            self.cancel()
            job.message = f"Timed out after {self.config.job_timeout_s:.0f} s, cancelling..."
            job.error_code = "timeout"
        elif job.cancel_requested_at is not None and now - job.cancel_requested_at > CANCEL_GRACE_S:
            timed_out = job.error_code == "timeout"
            message = (f"The reconstruction timed out after {self.config.job_timeout_s:.0f} s"
                       if timed_out else "The backend did not respond to cancel")
            message += "; the backend was stopped. Press Start to restart it."
            job.error_code = None
            self._fail(job, "timeout" if timed_out else "cancelled", message)
            self._kill()
            self.message = message
            self.status = "error"


# ====================================================================== local process
def backend_argv(config: BackendConfig) -> tuple[list[str], str | None]:
    """The command line that starts ``serve`` over stdio, and the working folder for it.

    Raises:
        BackendError: no command configured, or the executable does not exist.
    """
    text = config.command.strip()
    if not text:
        raise BackendError("No backend set: choose the backend Python or command in the add-on preferences.")
    if os.path.isfile(os.path.expanduser(text)):
        parts = [os.path.expanduser(text)]
    else:
        try:
            parts = shlex.split(text, posix=os.name != "nt")
        except ValueError as exc:
            raise BackendError(f"Cannot parse the backend command ({exc}).") from None
    exe = parts[0]
    found = exe if os.path.isfile(exe) else shutil.which(exe)
    if not found:
        raise BackendError(f"Backend command not found: {exe}.")
    parts[0] = found
    cwd = None
    if len(parts) == 1 and Path(found).name.lower().startswith("python"):
        parts += ["-m", "backend"]
        cwd = _checkout_of(Path(found))
    argv = parts + ["serve", "--stdio", "--device", config.device or "auto"]
    if config.assets:
        argv += ["--assets", os.path.expanduser(config.assets)]
    if config.flame:
        argv += ["--flame", os.path.expanduser(config.flame)]
    return argv, cwd


def _checkout_of(python: Path) -> str | None:
    """A source checkout holding ``backend/`` above this Python (``<checkout>/.venv/bin/python``)."""
    for parent in list(python.absolute().parents)[:4]:
        if (parent / "backend" / "__init__.py").is_file():
            return str(parent)
    return None


# Lines of a backend's stderr that say why it ended: its own error sentence, an exception's
# last line, the interpreter's fatal error. Warnings and library chatter (torch, Warp, TFLite)
# are not causes and are never quoted.
_CAUSE_RE = re.compile(r"headrecon: error: |Fatal Python error|No module named|[Ee]rror\b|Exception\b|Interrupt\b")
_NOT_CAUSE_RE = re.compile(r"Warning\b|warning:|warnings\.warn")


def exit_message(returncode: int, stderr_tail: deque[str]) -> str:
    """One sentence for a backend process that ended: how, and its last error line if any."""
    last = next((ln for ln in reversed(stderr_tail)
                 if not ln.startswith((" ", "\t", "Traceback")) and _CAUSE_RE.search(ln)
                 and not _NOT_CAUSE_RE.search(ln)), "")
    if last.startswith("headrecon: error: "):
        last = last[len("headrecon: error: "):]
    how = f"was killed (signal {-returncode})" if returncode < 0 else f"exited with code {returncode}"
    return f"The backend {how}" + (f": {last[:300]}" if last else ".")


class LocalBackend(Backend):
    """The backend as a child process speaking JSON lines over stdio."""

    def __init__(self, config: BackendConfig):
        super().__init__(config)
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self._write_lock = threading.Lock()

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self._events = queue.Queue()
        self.job = None
        try:
            argv, cwd = backend_argv(self.config)
        except BackendError as exc:
            self.status, self.message = "error", str(exc)
            raise
        jobs_dir = tempfile.mkdtemp(prefix="headrecon-jobs-")  # removed when the process ends
        argv += ["--jobs-dir", jobs_dir]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("PYTHONHOME", None)
        kwargs: dict[str, Any] = {}
        if os.name == "nt":
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            kwargs["start_new_session"] = True  # Ctrl-C in Blender's terminal is not ours
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, cwd=cwd, env=env, **kwargs)
        except OSError as exc:
            shutil.rmtree(jobs_dir, ignore_errors=True)
            self.status, self.message = "error", f"Cannot start the backend ({exc.strerror or exc})."
            raise BackendError(self.message) from None
        self.stderr_tail = deque(maxlen=40)
        self.status, self.message = "starting", ""
        self._exited = False
        self._started_at = time.monotonic()
        threading.Thread(target=self._read_stdout, daemon=True, name="headrecon-client-stdout",
                         args=(self.proc, self._events, self.stderr_tail, jobs_dir)).start()
        threading.Thread(target=self._read_stderr, args=(self.proc, self.stderr_tail), daemon=True,
                         name="headrecon-client-stderr").start()

    def alive(self) -> bool:
        return self.proc is None or self.proc.poll() is None

    def _death_message(self) -> str:
        rc = self.proc.returncode if self.proc is not None else 0
        self._exited = True
        return exit_message(rc, self.stderr_tail)

    def stop(self) -> None:
        self.status = "stopped"
        self._events = queue.Queue()  # drop what the old process still reports
        proc, self.proc = self.proc, None
        self._fail(self.job, "cancelled", "The backend was stopped.")
        if proc is not None:
            self._end_process(proc)

    def _kill(self) -> None:
        """Like stop, without waiting: the process is ended from a background thread."""
        proc, self.proc = self.proc, None
        if proc is not None:
            threading.Thread(target=self._end_process, args=(proc,), daemon=True,
                             name="headrecon-client-stop").start()

    def _end_process(self, proc: subprocess.Popen[bytes]) -> None:
        """Ask for shutdown, then SIGTERM after STOP_GRACE_S, then SIGKILL; waits for the end."""
        if proc.poll() is None:
            self._write(proc, {"type": "shutdown"})
            with self._write_lock:
                try:
                    assert proc.stdin is not None
                    proc.stdin.close()
                except OSError:
                    pass
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(2.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
        proc.wait()

    def _submit(self, job: ClientJob, options: dict[str, Any]) -> None:
        assert self.proc is not None
        self._write(self.proc, {"type": "reconstruct", "id": job.request_id, "photo": job.photo,
                                "options": options})

    def _send_cancel(self, job_id: str) -> None:
        if self.proc is not None:
            self._write(self.proc, {"type": "cancel", "id": "cancel", "job": job_id})

    def _write(self, proc: subprocess.Popen[bytes], message: dict[str, Any]) -> None:
        line = json.dumps(message).encode() + b"\n"
        with self._write_lock:
            try:
                assert proc.stdin is not None
                proc.stdin.write(line)
                proc.stdin.flush()
            except (OSError, ValueError):
                pass  # the process is gone; the stdout reader reports it

    def _read_stdout(self, proc: subprocess.Popen[bytes], events: queue.Queue[dict[str, Any]],
                     tail: deque[str], jobs_dir: str) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if event.get("type") == "result":
                event = self._fetch_local(proc, event)
            events.put(event)
        proc.stdout.close()
        rc = proc.wait()
        shutil.rmtree(jobs_dir, ignore_errors=True)  # also after a crash or SIGKILL
        time.sleep(0.1)  # let the stderr reader catch the last lines
        events.put({"type": "exited", "returncode": rc, "message": exit_message(rc, tail)})

    @staticmethod
    def _read_stderr(proc: subprocess.Popen[bytes], tail: deque[str]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                tail.append(line)
        proc.stderr.close()

    def _fetch_local(self, proc: subprocess.Popen[bytes], event: dict[str, Any]) -> dict[str, Any]:
        """Copy the bundle out of the service's job folder, then let the service delete it."""
        job = self.job
        if job is None or event.get("job") != job.id:
            return event
        try:
            target = job.dest / checked_job_id(event["job"])
        except BackendError as exc:
            return {"type": "error", "job": event.get("job"), "code": "internal", "message": str(exc)}
        try:
            job.dest.mkdir(parents=True, exist_ok=True)
            shutil.copytree(event["bundle_dir"], target, dirs_exist_ok=True)
        except OSError as exc:
            return {"type": "error", "job": event["job"], "code": "internal",
                    "message": f"Cannot copy the result to {job.dest} ({exc.strerror or exc})."}
        self._write(proc, {"type": "release", "id": "release", "job": event["job"]})
        return {**event, "local_dir": str(target)}


# ====================================================================== remote HTTP
class RemoteBackend(Backend):
    """``headrecon serve --http`` on another machine (or this one), polled over HTTP."""

    def __init__(self, config: BackendConfig):
        super().__init__(config)
        self._alive = threading.Event()

    def start(self) -> None:
        url = self.config.remote_url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            self.status, self.message = "error", "The remote URL must start with http:// or https://."
            raise BackendError(self.message)
        self.warning = cleartext_warning(url)
        self._events = queue.Queue()
        self.job = None
        self._alive = threading.Event()
        self._alive.set()
        self.status, self.message = "starting", ""
        self._exited = False
        self._started_at = time.monotonic()
        threading.Thread(target=self._wait_ready, args=(self._alive, self._events), daemon=True,
                         name="headrecon-client-health").start()

    def stop(self) -> None:
        self.status = "stopped"
        self._events = queue.Queue()
        job = self.job
        if job is not None and job.id is not None and not job.finished:
            self._send_cancel(job.id)
        self._fail(job, "cancelled", "The backend was disconnected.")
        self._alive.clear()

    def _kill(self) -> None:
        self._alive.clear()

    def _request(self, method: str, path: str, data: bytes | None = None,
                 timeout: float = HTTP_TIMEOUT_S, max_bytes: int = MAX_STATUS_BYTES) -> bytes:
        url = self.config.remote_url.strip().rstrip("/") + path
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self.config.token}",
            "Content-Type": "application/octet-stream"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                body = resp.read(max_bytes + 1)
                if len(body) > max_bytes:
                    raise _RemoteError("internal", f"The backend's answer to {path.split('?')[0]} is "
                                                   f"larger than {max_bytes >> 20} MiB; refused.")
                return body
        except urllib.error.HTTPError as exc:
            try:
                body = json.loads(exc.read())
                message, code = body["message"], body["code"]
            except (ValueError, KeyError, TypeError, OSError):
                message, code = f"HTTP {exc.code}", "internal"
            if exc.code == 401:
                message, code = "The remote backend rejected the token.", "unauthorized"
            raise _RemoteError(code, message) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _RemoteError("unreachable", f"Cannot reach the backend at {url} ({reason}).") from None

    def _wait_ready(self, alive: threading.Event, events: queue.Queue[dict[str, Any]]) -> None:
        while alive.is_set():
            try:
                health = json.loads(self._request("GET", "/v1/health", timeout=10.0))
            except _RemoteError as exc:
                events.put({"type": "error", "code": exc.code, "message": exc.message})
                return
            if health.get("state") in ("ready", "busy"):
                events.put(health)
                return
            if health.get("state") == "error":
                events.put({"type": "error", "code": "model_file", "message": health.get("error")})
                return
            time.sleep(1.0)

    def _submit(self, job: ClientJob, options: dict[str, Any]) -> None:
        threading.Thread(target=self._run_job, args=(job, options, self._alive, self._events),
                         daemon=True, name="headrecon-client-job").start()

    def _send_cancel(self, job_id: str) -> None:
        def send() -> None:
            try:
                self._request("POST", f"/v1/jobs/{job_id}/cancel", b"", timeout=10.0)
            except _RemoteError:
                pass  # finished meanwhile or unreachable; polling reports the outcome

        threading.Thread(target=send, daemon=True, name="headrecon-client-cancel").start()

    def _run_job(self, job: ClientJob, options: dict[str, Any], alive: threading.Event,
                 events: queue.Queue[dict[str, Any]]) -> None:
        try:
            data = Path(job.photo).read_bytes()
            query = urllib.parse.urlencode({"options": json.dumps(options),
                                            "name": Path(job.photo).name})
            accepted = json.loads(self._request("POST", f"/v1/jobs?{query}", data))
            try:
                job_id = checked_job_id(accepted["job"])
            except BackendError as exc:
                raise _RemoteError("internal", str(exc)) from None
            events.put({"type": "accepted", "id": job.request_id, "job": job_id})
            since = 0
            while alive.is_set():
                status = json.loads(self._request("GET", f"/v1/jobs/{job_id}?since={since}"))
                for event in status["events"]:
                    since = max(since, int(event["seq"]))
                    if event.get("type") == "result":
                        event = self._download(job, event)
                    events.put(event)
                if status["state"] in ("done", "error", "cancelled"):
                    return
                time.sleep(REMOTE_POLL_S)
        except _RemoteError as exc:
            events.put({"type": "error", "id": job.request_id, "code": exc.code,
                              "message": exc.message})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            events.put({"type": "error", "id": job.request_id, "code": "internal",
                              "message": f"Bad answer from the remote backend ({type(exc).__name__})."})

    def _download(self, job: ClientJob, event: dict[str, Any]) -> dict[str, Any]:
        try:
            job_id = checked_job_id(event.get("job"))
            names = event.get("files", [])
            if not isinstance(names, list) or len(names) > MAX_FILES:
                raise BackendError("The backend sent an invalid file list; the result was not saved.")
            target = job.dest / job_id
            paths = [contained_path(target, name) for name in names]
        except BackendError as exc:
            return {"type": "error", "job": event.get("job"), "code": "internal", "message": str(exc)}
        target.mkdir(parents=True, exist_ok=True)
        total = 0
        for name, path in zip(names, paths):
            data = self._request("GET", f"/v1/jobs/{job_id}/files/{name}", max_bytes=MAX_FILE_BYTES)
            total += len(data)
            if total > MAX_BUNDLE_BYTES:
                shutil.rmtree(target, ignore_errors=True)
                return {"type": "error", "job": job_id, "code": "internal",
                        "message": f"The backend's result is larger than {MAX_BUNDLE_BYTES >> 20} MiB; "
                                   "not saved."}
            path.write_bytes(data)
        try:
            self._request("DELETE", f"/v1/jobs/{job_id}")
        except _RemoteError:
            pass  # the service prunes old jobs itself
        return {**event, "local_dir": str(target)}


class _RemoteError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def make_backend(config: BackendConfig) -> Backend:
    """A remote backend when a URL is set, else a local process."""
    return RemoteBackend(config) if config.remote_url.strip() else LocalBackend(config)


_SHARED: Backend | None = None


def shared_backend(config: BackendConfig) -> Backend:
    """The add-on's one backend for these settings. When the settings changed and the old
    backend is not busy, it is stopped and replaced (a busy one is kept until its job ends)."""
    global _SHARED
    if _SHARED is not None and _SHARED.config != config and _SHARED.status != "busy":
        _SHARED.stop()
        _SHARED = None
    if _SHARED is None:
        _SHARED = make_backend(config)
    return _SHARED


def current_backend() -> Backend | None:
    """The add-on's backend if one was made, without creating one."""
    return _SHARED


def stop_shared() -> None:
    """Stop and forget the add-on's backend (add-on disabled)."""
    global _SHARED
    if _SHARED is not None:
        _SHARED.stop()
        _SHARED = None

