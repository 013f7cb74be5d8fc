"""Issue 12 regressions on the command line: a FLAME pickle cannot run code, ``-o`` never
eats the user's files, SIGTERM leaves no temporary folder, arguments are checked up front,
usage errors exit 64, native start-up chatter stays off stderr, the stdio service exits
cleanly on SIGTERM. Real processes of the installed ``headrecon`` from a foreign folder.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.errors import ModelFileError
from backend.files.output import OutputFolderError, check_output_dir, replace_dir
from backend.model.flame import load_flame

from tests.test_cli import error_line, run_cli

HEADRECON = str(Path(sys.executable).parent / "headrecon")


class _Evil:
    """Pickles as a call of ``func(*args)``: what a hostile FLAME file does."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _evil_pickles(marker: Path) -> dict[str, bytes]:
    import builtins
    import subprocess as sp

    cmd = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').write('pwned')"
    payloads = {
        "os.system": _Evil(os.system, (cmd,)),
        "eval": _Evil(builtins.eval, (code,)),
        "exec": _Evil(builtins.exec, (code,)),
        "subprocess.Popen": _Evil(sp.Popen, (["touch", str(marker)],)),
        "getattr": _Evil(builtins.getattr, (_Evil(builtins.__import__, ("os",)), "system")),
    }
    return {name: pickle.dumps({"v_template": p}, protocol=2) for name, p in payloads.items()}


@pytest.mark.parametrize("name", ["os.system", "eval", "exec", "subprocess.Popen", "getattr"])
def test_flame_pickle_that_runs_code_is_refused(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "generic_model.pkl"
    path.write_bytes(_evil_pickles(marker)[name])
    with pytest.raises(ModelFileError, match="refused"):
        load_flame(path)
    assert not marker.exists()


def test_cli_refuses_code_in_flame_pickle_with_exit_3(tmp_path: Path, eval_dir: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "flame2023_Open.pkl"
    path.write_bytes(_evil_pickles(marker)["os.system"])
    proc = run_cli("reconstruct", str(eval_dir / "photos" / "expression_5.jpg"), "-o",
                   str(tmp_path / "out"), "--flame", str(path))
    assert proc.returncode == 3, proc.stderr
    assert "refused" in error_line(proc) and not marker.exists()
    assert not (tmp_path / "out").exists()


def test_output_folder_of_photos_is_refused(tmp_path: Path, eval_dir: Path) -> None:
    """``-o .`` in a folder of photos and ``-o ""`` (the current folder) delete nothing."""
    photo = tmp_path / "me.jpg"
    photo.write_bytes((eval_dir / "photos" / "expression_5.jpg").read_bytes())
    (tmp_path / "notes.txt").write_text("mine")
    for out in (str(tmp_path), str(tmp_path) + "/.", ""):
        t0 = time.monotonic()
        proc = run_cli("reconstruct", str(photo), "-o", out)
        assert proc.returncode == 2, proc.stderr
        assert "load" not in proc.stderr and time.monotonic() - t0 < 30  # before the model loads
        assert sorted(p.name for p in tmp_path.iterdir()) == ["me.jpg", "notes.txt"]


def test_output_problems_found_before_the_fit(tmp_path: Path, eval_dir: Path) -> None:
    photo = eval_dir / "photos" / "expression_5.jpg"
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = {"is a file": a_file, "which is a file": a_file / "sub" / "out",
             "longer than 255": tmp_path / ("n" * 300)}
    for words, out in cases.items():
        proc = run_cli("reconstruct", str(photo), "-o", str(out))
        assert proc.returncode == 2, proc.stderr
        assert words in error_line(proc) and "[" not in proc.stderr  # no stage started
    assert a_file.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_parent_is_found_before_the_fit(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    with pytest.raises(OutputFolderError, match="not writable"):
        check_output_dir(ro / "out")


def test_replacing_a_bundle_is_atomic_with_normal_permissions(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.json").write_text('{"old": 1}')
    new = tmp_path / ".out.stage"
    new.mkdir(mode=0o700)
    (new / "result.json").write_text('{"new": 1}')
    # the move of the new bundle fails: the old one is back in place, nothing lost
    real_replace = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        replace_dir(new, check_output_dir(out))
    monkeypatch.setattr(os, "replace", real_replace)
    assert json.loads((out / "result.json").read_text()) == {"old": 1}
    replace_dir(new, check_output_dir(out))
    assert json.loads((out / "result.json").read_text()) == {"new": 1}
    assert stat.S_IMODE(out.stat().st_mode) & 0o055 == 0o055 & ~os.umask(os.umask(0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # old bundle deleted


def test_sigterm_during_reconstruct_removes_the_temp_folder(tmp_path: Path, eval_dir: Path) -> None:
    parent = tmp_path / "results"
    parent.mkdir()
    proc = subprocess.Popen([HEADRECON, "reconstruct", str(eval_dir / "photos" / "expression_5.jpg"),
                             "-o", str(parent / "head"), "--quality", "fast"], cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "landmarks" in line:  # the staging folder exists by now
            break
    assert any(p.name.startswith(".head.") for p in parent.iterdir())
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 143, rest
    assert "terminated" in rest and "Traceback" not in rest
    assert list(parent.iterdir()) == []


@pytest.mark.parametrize("args", [
    ["capture", "x.jpg", "--bundle", "b", "-o", "o.csv", "--fps", "nan"],
    ["capture", "x.jpg", "--bundle", "b", "-o", "o.csv", "--fps", "inf"],
    ["capture", "x.jpg", "--bundle", "b", "-o", "o.csv", "--fps", "0"],
    ["capture", "x.jpg", "--bundle", "b", "-o", "o.csv", "--smooth", "nan"],
    ["capture", "x.jpg", "--bundle", "b", "-o", "o.csv", "--smooth", "inf"],
    ["capture", "x.jpg", "--bundle", "b", "-o", "o.csv", "--smooth", "1e9"],
    ["reconstruct", "x.jpg"],
    ["reconstruct", "x.jpg", "-o", "o", "--quality", "ultra"],
    ["frobnicate"],
    ["serve", "--keep-jobs", "-1"],
])
def test_usage_errors_exit_64(args: list[str]) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 64, proc.stderr
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_native_start_up_lines_are_silenced(tmp_path: Path) -> None:
    wall = tmp_path / "wall.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(wall)
    proc = run_cli("reconstruct", str(wall), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2
    for noise in ("TensorFlow Lite", "absl::InitializeLog", "inference_feedback_manager"):
        assert noise not in proc.stderr, proc.stderr
    error_line(proc)


def _serve(tmp_path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([HEADRECON, "serve", "--stdio"], cwd=tmp_path, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and b'"ready"' in proc.stdout.readline()
    return proc


def _terminate_keeping_stdin_open(proc: subprocess.Popen) -> bytes:
    """SIGTERM with the stdin pipe still open, as the add-on's client holds it (closing it
    first, as ``communicate`` does, let the stdin reader end and hid the abort); stderr."""
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.stderr is not None
    err = proc.stderr.read()
    if proc.stdin is not None:
        proc.stdin.close()
    return err


def test_stdio_service_exits_cleanly_on_sigterm(tmp_path: Path, eval_dir: Path) -> None:
    """Item 8: before, 8 of 8 idle services aborted (SIGABRT, "Fatal Python error:
    _enter_buffered_busy ... <stdin>"): a daemon thread blocked in sys.stdin at shutdown."""
    for _ in range(2):
        idle = _serve(tmp_path)
        err = _terminate_keeping_stdin_open(idle)
        assert idle.returncode == 0 and b"Fatal Python error" not in err, (idle.returncode, err[-2000:])
    busy = _serve(tmp_path)
    assert busy.stdin is not None and busy.stdout is not None
    busy.stdin.write((json.dumps({"id": "1", "type": "reconstruct", "photo": str(
        eval_dir / "photos" / "expression_5.jpg"), "options": {"quality": "fast"}}) + "\n").encode())
    busy.stdin.flush()
    while b'"progress"' not in busy.stdout.readline():
        pass
    err = _terminate_keeping_stdin_open(busy)
    assert busy.returncode == 0 and b"Fatal Python error" not in err, (busy.returncode, err[-2000:])
    assert b"Traceback" not in err


def test_capture_runs_from_another_folder(tmp_path: Path, eval_dir: Path,
                                          assets_dir: Path) -> None:
    """Item 6: the installed ``headrecon capture`` from a foreign working directory (no
    PYTHONPATH) writes its Live Link CSV; it used to fail after capturing with
    ``ModuleNotFoundError: headrecon_addon`` (the install lacked the add-on package)."""
    from backend.files.bundle import write_dev_bundle
    from headrecon_addon import livelink

    write_dev_bundle(tmp_path / "bundle", seed=1, assets=assets_dir)
    out_csv = tmp_path / "take.csv"
    proc = run_cli("capture", str(eval_dir / "photos" / "expression_5.jpg"), "--bundle",
                   str(tmp_path / "bundle"), "-o", str(out_csv), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    take = livelink.read_csv(out_csv, 30.0)
    assert len(take.frames) == 1 and take.frames[0].weights
