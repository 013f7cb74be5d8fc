"""Helpers for the service tests: a real ``python -m backend serve`` process and /proc scans.

Imported by tests/test_service_*.py and tests/test_client_*.py as ``tests.service_support``.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


class ServiceProcess:
    """``python -m backend serve`` with stdio (and optionally HTTP); every stdout line is
    checked to be one JSON object (stdout must carry protocol lines only)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "backend", "serve", *args], cwd=REPO,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})})
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr: list[str] = []
        self.bad_stdout: list[bytes] = []
        self._url: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                msg = json.loads(raw)
                assert isinstance(msg, dict)
            except (ValueError, AssertionError):
                self.bad_stdout.append(raw)
                continue
            self.lines.put(msg)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            self.stderr.append(line)
            m = re.search(r"HTTP listening on (http://\S+)", line)
            if m:
                self._url.put(m.group(1))

    def http_url(self, timeout: float = 60.0) -> str:
        return self._url.get(timeout=timeout)

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, msg: dict[str, Any]) -> None:
        self.send_raw(json.dumps(msg).encode() + b"\n")

    def next(self, timeout: float = 60.0, pred: Any = None) -> dict[str, Any]:
        """The next stdout message matching ``pred`` (others are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching message within {timeout} s; stderr: {self.stderr[-5:]}")
            try:
                msg = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if pred is None or pred(msg):
                return msg

    def reply(self, timeout: float = 60.0) -> dict[str, Any]:
        """The next reply to a request (it has an ``id`` key; events do not)."""
        return self.next(timeout, lambda m: "id" in m)

    def request(self, msg: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        self.send(msg)
        return self.reply(timeout)

    def wait_loaded(self, timeout: float = 300.0) -> dict[str, Any]:
        """Block until the engine is ready or failed; returns the ``ready``/``error`` event."""
        return self.next(timeout, lambda m: "id" not in m and m.get("job") is None
                         and m.get("type") in ("ready", "error"))

    def close(self) -> int:
        if self.proc.poll() is None:
            try:
                self.send({"type": "shutdown"})
                self.proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


def backend_processes() -> list[int]:
    """Pids of live ``backend serve`` processes (any parent), from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"backend" in cmd and b"serve" in cmd and alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """(ip, port) of every listening TCP socket of ``pid`` (IPv4 and IPv6), from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    out = []
    for table, width in (("tcp", 8), ("tcp6", 32)):
        try:
            rows = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] != "0A" or cols[9] not in inodes:  # 0A = LISTEN
                continue
            hex_ip, hex_port = cols[1].split(":")
            raw = bytes.fromhex(hex_ip)
            if width == 8:
                ip = ".".join(str(b) for b in raw[::-1])
            else:
                words = [raw[i:i + 4][::-1].hex() for i in range(0, 16, 4)]
                ip = ":".join(w[j:j + 4] for w in words for j in (0, 4))
            out.append((ip, int(hex_port, 16)))
    return out
