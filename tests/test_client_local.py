"""``headrecon_addon.client.LocalBackend`` against real backend processes: start failures,
crashes, stop, and no orphaned process when the parent exits or is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from headrecon_addon.client import (BackendConfig, BackendError, LocalBackend, RemoteBackend,
                                     backend_argv, make_backend)
from tests.service_support import REPO, alive, wait_gone

PY = sys.executable


def poll_until(backend: LocalBackend, pred, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timeout; status={backend.status} {backend.message}"
        backend.poll()
        time.sleep(0.05)


def test_no_command_configured() -> None:
    b = LocalBackend(BackendConfig(command=""))
    with pytest.raises(BackendError, match="preferences"):
        b.start()
    assert b.status == "error" and "preferences" in b.message


def test_command_not_found(tmp_path: Path) -> None:
    b = LocalBackend(BackendConfig(command=str(tmp_path / "no" / "python3")))
    with pytest.raises(BackendError, match="not found"):
        b.start()
    assert b.status == "error"


def test_backend_missing_in_that_python(assets_dir: Path) -> None:
    """A Python without the backend package: the process exits and the reason is shown."""
    b = LocalBackend(BackendConfig(command=f"{PY} -m headrecon_backend_not_installed",
                                   assets=str(assets_dir)))
    b.start()
    pid = b.proc.pid
    poll_until(b, lambda: b.status == "error", 60)
    assert "No module named headrecon_backend_not_installed" in b.message
    assert "exited with code 1" in b.message
    assert not alive(pid)
    with pytest.raises(BackendError, match="Start"):
        b.reconstruct(str(REPO / "README.md"), {}, REPO)


def test_python_argv_uses_the_checkout(tmp_path: Path) -> None:
    argv, cwd = backend_argv(BackendConfig(command=str(REPO / ".venv" / "bin" / "python"),
                                           assets="/a", flame="/f.pkl", device="cpu"))
    assert argv[1:] == ["-m", "backend", "serve", "--stdio", "--device", "cpu",
                        "--assets", "/a", "--flame", "/f.pkl"]
    assert cwd == str(REPO)
    assert isinstance(make_backend(BackendConfig(command=PY, remote_url="http://127.0.0.1:1")),
                      RemoteBackend)
    assert isinstance(make_backend(BackendConfig(command=PY)), LocalBackend)


def test_killed_while_starting_then_restart(assets_dir: Path) -> None:
    b = LocalBackend(BackendConfig(command=PY, assets=str(assets_dir)))
    b.start()
    assert b.status == "starting"
    first = b.proc.pid
    jobs_dir = Path(b.proc.args[b.proc.args.index("--jobs-dir") + 1])
    assert jobs_dir.is_dir()
    os.kill(first, signal.SIGKILL)
    poll_until(b, lambda: b.status == "error", 60)
    assert "killed (signal 9)" in b.message
    assert not jobs_dir.exists()  # the client removes the jobs folder the service could not
    b.start()
    assert b.status == "starting" and b.proc.pid != first
    second = b.proc.pid
    b.stop()
    assert b.status == "stopped"
    assert not alive(second)


def test_stop_leaves_no_process(assets_dir: Path) -> None:
    b = LocalBackend(BackendConfig(command=PY, assets=str(assets_dir)))
    b.start()
    pid = b.proc.pid
    time.sleep(0.5)
    b.stop()
    assert not alive(pid)
    assert b.status == "stopped"
    time.sleep(0.3)
    b.poll()
    assert b.status == "stopped"  # the exit it caused is not reported as an error


SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {repo!r})
    from headrecon_addon.client import BackendConfig, LocalBackend
    b = LocalBackend(BackendConfig(command={py!r}, assets={assets!r}))
    b.start()
    print(b.proc.pid, flush=True)
    if sys.argv[1] == "hang":
        time.sleep(600)
""")


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_no_orphan_when_the_parent_ends(tmp_path: Path, assets_dir: Path, how: str) -> None:
    """Normal exit: atexit stops the backend. SIGKILL of the parent: the backend sees the end
    of its stdin and stops itself."""
    script = tmp_path / "parent.py"
    script.write_text(SCRIPT.format(repo=str(REPO), py=PY, assets=str(assets_dir)))
    parent = subprocess.Popen([PY, str(script), "hang" if how == "sigkill" else "exit"],
                              stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert alive(child)
    if how == "sigkill":
        parent.kill()
    parent.wait(60)
    assert wait_gone(child, 30), f"backend {child} outlived its parent"


def test_exit_message_quotes_causes_not_warnings() -> None:
    """The stderr lines a real backend prints during a job (torch, Warp) are not a cause."""
    from collections import deque

    from headrecon_addon.client import exit_message

    chatter = deque([
        "Warp CUDA warning: Could not find or load the NVIDIA CUDA driver. GPU execution will not be available.",
        "/work/main/backend/appearance/detail.py:536: UserWarning: The given NumPy array is not "
        "writable, and PyTorch does not support non-writable tensors.",
        "  image = torch.from_numpy(rgb).to(verts.device, torch.float32) / 255.0",
    ])
    assert exit_message(-9, chatter) == "The backend was killed (signal 9)."
    chatter += ["Traceback (most recent call last):", '  File "x.py", line 1, in <module>',
                "MemoryError: cannot allocate"]
    assert exit_message(1, chatter) == "The backend exited with code 1: MemoryError: cannot allocate"
    assert exit_message(3, deque(["headrecon: error: FLAME file refused."])) == \
        "The backend exited with code 3: FLAME file refused."


def test_killed_while_idle_is_reported_and_restarted(assets_dir: Path) -> None:
    """Item 13: the process is killed while idle, and the next Reconstruct's start says the
    backend stopped and restarts it, without quoting a stale stderr line (before: the client
    stayed 'ready', the job went to the dead process and failed quoting the last stderr line,
    a torch warning). tests/test_cli.py checks that a job prints no such warning any more."""
    b = LocalBackend(BackendConfig(command=PY, assets=str(assets_dir), device="cpu"))
    b.start()
    poll_until(b, lambda: b.status == "ready", 120)
    b.stderr_tail.append("/x/torch/nn/modules/module.py:1: UserWarning: something unrelated")
    first = b.proc.pid
    os.kill(first, signal.SIGKILL)
    assert wait_gone(first)
    assert b.status == "ready"  # nothing polled the client since: it still thinks so
    note = b.ensure_running()
    assert note == "The backend was killed (signal 9); restarting it.", note
    assert b.status == "starting" and b.proc.pid != first
    poll_until(b, lambda: b.status == "ready", 120)
    assert b.ensure_running() is None  # running: nothing to say, nothing restarted
    assert b.proc.poll() is None
    b.stop()
