"""Reconstruct from inside Blender (real bpy 5.0.1, the built extension, a real backend
process): a real photo becomes a rigged head in the scene; every failure (no backend, bad
image, no face, missing model file, backend killed mid-job, cancel) leaves the scene as it
was with one message; the backend can be restarted; disabling the add-on ends the process.

Modal timers do not fire in bpy-as-a-module, so the modal path's step function
(``ReconstructTask.step``) is driven directly; ``bpy.ops.headrecon.reconstruct()`` runs the
same steps in its execute loop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="headrecon-blender-user-"))

import bpy  # noqa: E402
import addon_utils  # noqa: E402  (Blender's module, importable once bpy is)

from tests.service_support import alive, wait_gone  # noqa: E402

pytestmark = [pytest.mark.blender, pytest.mark.slow]

REPO_MODULE = "headrecon_service_tests"
EXT_MODULE = f"bl_ext.{REPO_MODULE}.headrecon"
PHOTO = "IMG_0392_inputs.jpg"
DATA = ("objects", "meshes", "materials", "images", "collections", "armatures", "actions",
        "node_groups", "textures", "shape_keys")


def _raise(exc: Exception) -> None:
    raise exc


def snapshot() -> dict[str, list[str]]:
    """Names of every datablock kind a head import creates, plus the scene's collections."""
    snap = {kind: sorted(b.name for b in getattr(bpy.data, kind)) for kind in DATA}
    snap["scene"] = sorted(c.name for c in bpy.context.scene.collection.children)
    return snap


@pytest.fixture(scope="module")
def ext(tmp_path_factory: pytest.TempPathFactory, repo_root: Path, assets_dir: Path):
    """The extension zip built, installed into a temporary repository and enabled, with the
    backend preferences pointing at this checkout's Python; disabled at the end."""
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "build.py", "--output-dir", str(out)], cwd=repo_root,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    directory = tmp_path_factory.mktemp("extensions")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.extensions.repos.new(
        name="HeadRecon service tests", module=REPO_MODULE, custom_directory=str(directory),
        source='USER')
    assert bpy.ops.extensions.package_install_files(
        filepath=proc.stdout.strip(), repo=REPO_MODULE, enable_on_install=False) == {'FINISHED'}
    assert addon_utils.enable(EXT_MODULE, default_set=True, handle_error=_raise) is not None
    prefs = bpy.context.preferences.addons[EXT_MODULE].preferences
    prefs.backend_command = sys.executable
    prefs.assets_dir = str(assets_dir)
    yield sys.modules[EXT_MODULE]
    # disabling the add-on ends a running backend process
    assert bpy.ops.headrecon.backend_start() == {'FINISHED'}
    pid = sys.modules[f"{EXT_MODULE}.headrecon_addon.client"].current_backend().proc.pid
    assert alive(pid)
    addon_utils.disable(EXT_MODULE, default_set=True, handle_error=_raise)
    assert wait_gone(pid, 15), "disabling the add-on left the backend running"
    bpy.ops.wm.read_factory_settings(use_empty=True)


def recon_module():
    return sys.modules[f"{EXT_MODULE}.operators.reconstruct"]


def backend():
    return sys.modules[f"{EXT_MODULE}.headrecon_addon.client"].current_backend()


def run_operator(photo: Path | str, quality: str = "fast") -> tuple[set[str], str]:
    """Run the operator as a script does. An ERROR report reaches a script as RuntimeError
    ("Error: <message>"), which is returned here as {'CANCELLED'}."""
    wm = bpy.context.window_manager
    wm.headrecon_photo = str(photo)
    wm.headrecon_quality = quality
    state = recon_module().STATE
    try:
        result = bpy.ops.headrecon.reconstruct()
    except RuntimeError as exc:
        assert str(exc).strip() == f"Error: {state.text}"
        result = {'CANCELLED'}
    assert not state.running
    return result, state.text


def test_reconstruct_a_real_photo(ext, eval_dir: Path) -> None:
    before = snapshot()
    result, text = run_operator(eval_dir / "photos" / PHOTO)
    assert result == {'FINISHED'}, text
    assert text.startswith("Imported")
    naming = sys.modules[f"{EXT_MODULE}.headrecon_addon.naming"]
    heads = [o for o in bpy.data.objects if o.get(naming.HEAD_PROP) and o.type == 'ARMATURE']
    assert len(heads) == 1
    arm = heads[0]
    meshes = [c for c in arm.children if c.type == 'MESH' and c.get("headrecon_head")]
    assert len(meshes) == 1 and len(meshes[0].data.vertices) == 5023
    assert meshes[0].data.shape_keys is not None
    assert arm.users_collection[0].name == Path(PHOTO).stem  # named after the photo
    mouth = {c.name for c in arm.children if c.type == 'MESH' and c is not meshes[0]}
    assert len(mouth) == 4  # teeth (2), tongue, cavity
    assert set(snapshot()["objects"]) == set(before["objects"]) | {arm.name, meshes[0].name} | mouth
    bundle = Path(arm[naming.BUNDLE_PROP])
    assert (bundle / "result.json").is_file()
    assert bundle.parent == recon_module().results_dir()  # kept in the extension's user folder
    assert backend().status == "ready"


def _failure(photo: Path | str, expected: str) -> str:
    before = snapshot()
    result, text = run_operator(photo)
    assert result == {'CANCELLED'}
    assert expected in text.lower(), text
    assert recon_module().STATE.is_error
    assert snapshot() == before  # scene untouched
    assert "\n" not in text
    return text


def test_no_photo_chosen(ext) -> None:
    _failure("", "choose a photo")


def test_photo_missing(ext, tmp_path: Path) -> None:
    _failure(tmp_path / "gone.jpg", "photo not found")


def test_bad_image(ext, tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("this is a text file\n")
    _failure(tmp_path / "notes.jpg", "not a supported image")
    assert backend().status == "ready"


def test_no_face(ext, tmp_path: Path) -> None:
    y, x = np.mgrid[0:300, 0:300]
    Image.fromarray(np.stack([x % 256, y % 256, (x * y) % 256], -1).astype(np.uint8)).save(
        tmp_path / "wall.png")
    _failure(tmp_path / "wall.png", "face")
    assert backend().status == "ready"


def _task(photo: Path):
    mod = recon_module()
    start = sys.modules[f"{EXT_MODULE}.operators.backend_start"]
    task = mod.ReconstructTask(start.start_backend(bpy.context), str(photo), "fast")
    return task


def _step_until(task, pred, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, task.message
        task.step(bpy.context)
        time.sleep(0.05)


def test_cancel_leaves_the_scene_alone(ext, eval_dir: Path) -> None:
    before = snapshot()
    task = _task(eval_dir / "photos" / "expression_2.jpg")
    _step_until(task, lambda: task.job is not None and task.job.fraction > 0.05)
    task.cancel()
    _step_until(task, lambda: task.finished, 60)
    assert task.state == "cancelled" and "cancelled" in task.message.lower()
    assert snapshot() == before
    assert backend().status == "ready"


def test_backend_killed_mid_job_then_restart(ext, eval_dir: Path) -> None:
    before = snapshot()
    task = _task(eval_dir / "photos" / "expression_2.jpg")
    _step_until(task, lambda: task.job is not None and task.job.fraction > 0.05)
    pid = backend().proc.pid
    os.kill(pid, signal.SIGKILL)
    _step_until(task, lambda: task.finished, 60)
    assert task.state == "failed"
    assert "killed" in task.message and "Start" in task.message, task.message
    assert snapshot() == before
    assert backend().status == "error" and not alive(pid)
    # the panel's Start button restarts it, and the next reconstruction works
    assert bpy.ops.headrecon.backend_start() == {'FINISHED'}
    assert backend().proc.pid != pid
    result, text = run_operator(eval_dir / "photos" / PHOTO)
    assert result == {'FINISHED'}, text


def test_missing_model_file_then_fixed(ext, tmp_path: Path, eval_dir: Path) -> None:
    prefs = bpy.context.preferences.addons[EXT_MODULE].preferences
    prefs.flame_model = str(tmp_path / "flame2023_Open.pkl")
    try:
        text = _failure(eval_dir / "photos" / PHOTO, "flame model file not found")
        assert "flame2023_Open.pkl" in text
        assert backend().status == "error"
    finally:
        prefs.flame_model = ""
    assert bpy.ops.headrecon.backend_start() == {'FINISHED'}
    assert backend().status in ("starting", "ready")


def test_backend_command_missing(ext, tmp_path: Path, eval_dir: Path) -> None:
    prefs = bpy.context.preferences.addons[EXT_MODULE].preferences
    command = prefs.backend_command
    prefs.backend_command = str(tmp_path / "venv" / "bin" / "python3")
    try:
        _failure(eval_dir / "photos" / PHOTO, "backend command not found")
        with pytest.raises(RuntimeError, match="Backend command not found"):
            bpy.ops.headrecon.backend_start()
        prefs.backend_command = ""
        _failure(eval_dir / "photos" / PHOTO, "preferences")
    finally:
        prefs.backend_command = command


def test_stop_operator_ends_the_process(ext) -> None:
    assert bpy.ops.headrecon.backend_start() == {'FINISHED'}
    pid = backend().proc.pid
    assert bpy.ops.headrecon.backend_stop() == {'FINISHED'}
    assert not alive(pid) and backend().status == "stopped"
