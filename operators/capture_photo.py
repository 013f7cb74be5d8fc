"""``headrecon.capture_photo``: Expression from Photo. The backend fits ARKit weights plus
jaw, eye and head rotations of the active head's identity to a photo; the result is keyed
at the current frame.

The backend runs as its own process, ``<backend python> -m backend capture INPUT --bundle
<the head's bundle> -o <temp>.json`` (the command comes from the add-on preferences, as for
the reconstruction service; a remote backend cannot capture). The UI never waits: a modal
timer polls the process, its progress lines ("[ 42.0%] ...") go to the status bar, Esc
cancels (the process is terminated). Called from a script the same steps run to the end.

Keying (:func:`key_capture`): the ARKit weights on the head's ARKit shape keys, ``jaw``,
``eye_L``, ``eye_R`` on the jaw and eye bones, and the head rotation (the fit's root
rotation, i.e. the head relative to the camera, composed with its neck) on the ``neck``
bone, as Live Link import does. ``Captured`` and the FLAME eyelid keys are keyed to 0 at the
captured frames, so the result replaces the photo's expression (one undo step restores it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import threading
from collections import deque
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from ..headrecon_addon import livelink, naming
from ..headrecon_addon.client import BackendError, backend_argv, exit_message
from ..preferences import backend_config
from . import face_rig
from .import_livelink import key_face, key_photo_expression_off
from .insert_keyframes import _head_actions
from .modal_task import ModalTaskOperator, photo_property

STEP_INTERVAL_S = 0.2
_PROGRESS_RE = re.compile(r"^\[\s*([\d.]+)%\]\s+[\d.]+s\s+\w+(?::\s*(.*))?$")
JOINT_BONES: dict[str, str] = {"jaw": naming.JAW_BONE, "eye_L": naming.EYE_L_BONE,
                               "eye_R": naming.EYE_R_BONE}


class CaptureProcess:
    """One ``python -m backend capture`` run: start, poll, cancel, result.

    Args:
        context: for the preferences (backend command, device, assets, FLAME file).
        source: photo, video file or image folder.
        bundle: the head's bundle folder.
        extra: more CLI arguments (``--fps``, ``--smooth``).
    Raises:
        BackendError: no local backend configured (one sentence).
    """

    def __init__(self, context: bpy.types.Context, source: str, bundle: str,
                 extra: list[str] | None = None):
        config = backend_config(context)
        if config.remote_url:
            raise BackendError("Capture runs on a local backend; clear the Remote URL in the "
                               "add-on preferences and set the backend Python.")
        argv, cwd = backend_argv(config)
        base = argv[:argv.index("serve")]
        options = argv[argv.index("--stdio") + 1:]  # --device, --assets, --flame
        self._dir = tempfile.mkdtemp(prefix="headrecon-capture-")
        self.output = os.path.join(self._dir, "capture.json")
        self.stop_file = os.path.join(self._dir, "stop")
        cmd = base + ["capture", source, "--bundle", bundle, "-o", self.output,
                      "--stop-file", self.stop_file] + options + (extra or [])
        self.stopping = False
        self.fraction, self.message = 0.0, "Starting the backend..."
        self._tail: deque[str] = deque(maxlen=40)
        self._proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            line = line.rstrip()
            self._tail.append(line)
            m = _PROGRESS_RE.match(line)
            if m:
                self.fraction = float(m.group(1)) / 100.0
                self.message = m.group(2) or "Fitting"

    def stop(self) -> None:
        """Ask the backend to stop after the current frame and write the frames so far."""
        self.stopping = True
        self.message = "Stopping, keeping the frames captured so far..."
        with open(self.stop_file, "w", encoding="utf-8"):
            pass

    def poll(self) -> int | None:
        """The exit code when the process ended, else None."""
        return self._proc.poll()

    def cancel(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def result(self) -> dict[str, Any]:
        """The JSON the backend wrote. Raises BackendError with its last error line."""
        code = self._proc.wait()
        self._reader.join(timeout=2)
        try:
            if code != 0:
                raise BackendError(exit_message(code, self._tail))
            with open(self.output, encoding="utf-8") as f:
                return json.load(f)
        finally:
            self.cleanup()

    def cleanup(self) -> None:
        self.cancel()
        if os.path.isdir(self._dir):
            for name in os.listdir(self._dir):
                os.remove(os.path.join(self._dir, name))
            os.rmdir(self._dir)


def head_bundle(armature: bpy.types.Object) -> str | None:
    """The head's bundle folder (set by the importer) when it still exists, else None."""
    folder = armature.get(naming.BUNDLE_PROP, "")
    return folder if folder and (Path(folder) / "result.json").is_file() else None


def key_capture(armature: bpy.types.Object, mesh_obj: bpy.types.Object, doc: dict[str, Any],
                start: int) -> int:
    """Key every frame of a capture JSON at ``start + index``; returns the frames keyed."""
    targets = livelink.shape_key_targets(mesh_obj.data.shape_keys.key_blocks.keys())
    _head_actions(armature, mesh_obj.data.shape_keys)
    for fr in doc["frames"]:
        rot = fr["rotations"]
        head = livelink.compose_axis_angle(rot["root"], rot["neck"])
        rotations = {bone: np.array(rot[j]) for j, bone in JOINT_BONES.items()
                     if bone in armature.pose.bones}
        if naming.NECK_BONE in armature.pose.bones:
            rotations[naming.NECK_BONE] = np.array(head)
        weights = {targets[n]: float(v) for n, v in fr["weights"].items() if n in targets}
        key_face(armature, mesh_obj, start + int(fr["index"]), weights, rotations)
    if doc["frames"]:  # the capture replaces the photo's expression (Captured, fitted eyelids)
        key_photo_expression_off(mesh_obj, [start + int(doc["frames"][0]["index"]),
                                            start + int(doc["frames"][-1]["index"])])
    return len(doc["frames"])


class CaptureOperatorBase(ModalTaskOperator):
    """Modal run of a :class:`CaptureProcess` for the active head, then keying (shared by the
    photo and video operators; subclasses set ``source_prop`` and ``extra_args``)."""

    source_prop = "photo"  # operator property; empty: the WindowManager's ``headrecon_capture_<prop>``
    what = "Photo"
    keep_on_escape = False  # Esc stops the backend and keys the frames captured so far
    step_interval_s = STEP_INTERVAL_S

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if context.mode != 'OBJECT':
            cls.poll_message_set("Switch to Object Mode to capture")
            return False
        if face_rig.head_or_none(context) is None:
            cls.poll_message_set("Select a HeadRecon head")
            return False
        return True

    def extra_args(self, context: bpy.types.Context) -> list[str]:
        return []

    def begin(self, context: bpy.types.Context) -> CaptureProcess | None:
        armature, _ = face_rig.head_or_none(context)
        source = bpy.path.abspath(getattr(self, self.source_prop) or getattr(
            context.window_manager, f"headrecon_capture_{self.source_prop}", ""))
        bundle = head_bundle(armature)
        if not source or not os.path.exists(source):
            self.report({'ERROR'}, f"{self.what} not found: {source or '(none chosen)'}.")
            return None
        if bundle is None:
            self.report({'ERROR'}, f"The bundle {armature.name} was imported from is gone, so "
                                   "its identity is unknown; import the head again.")
            return None
        try:
            task = CaptureProcess(context, source, bundle, self.extra_args(context))
        except (BackendError, OSError) as exc:
            self.report({'ERROR'}, str(exc))
            return None
        self._start_frame = context.scene.frame_current
        return task

    def advance(self, context: bpy.types.Context, task: CaptureProcess) -> bool:
        return task.poll() is not None

    def show(self, context: bpy.types.Context, task: CaptureProcess) -> None:
        if context.workspace is not None:
            context.workspace.status_text_set(
                f"HeadRecon capture: {task.message} {task.fraction * 100:.0f}%   (Esc to cancel)")

    def on_escape(self, context: bpy.types.Context, task: CaptureProcess) -> set[str] | None:
        if self.keep_on_escape:
            if not task.stopping:
                task.stop()  # the process writes what it has and exits; advance() sees it
                self.show(context, task)
                return None
        return {'CANCELLED'}  # end now; finish() terminates the process

    def finish(self, context: bpy.types.Context, task: CaptureProcess, cancelled: bool) -> set[str]:
        if cancelled:
            task.cleanup()
            self.report({'WARNING'}, "Capture cancelled.")
            return {'CANCELLED'}
        try:
            doc = task.result()
        except (BackendError, OSError, ValueError) as exc:
            self.report({'ERROR'}, str(exc))
            return {'CANCELLED'}
        head = face_rig.head_or_none(context)
        if head is None:
            self.report({'ERROR'}, "The head is no longer selected; nothing was keyed.")
            return {'CANCELLED'}
        n = key_capture(head[0], head[1], doc, self._start_frame)
        context.scene.frame_set(self._start_frame)
        stopped = " (stopped early: the frames captured so far)" if doc.get("stopped") else ""
        self.report({'INFO'}, f"Keyed {n} frame(s) from {self.what.lower()} {doc.get('input', '')} "
                              f"at frame {self._start_frame}{stopped}")
        return {'FINISHED'}


class HEADRECON_OT_capture_photo(CaptureOperatorBase, bpy.types.Operator):
    """Fit the expression of a photo to the head (ARKit keys, jaw, eyes, head) and key it at the current frame (Esc cancels)"""

    bl_idname = "headrecon.capture_photo"
    bl_label = "Expression from Photo"

    photo: photo_property("Photo of the face (default: the panel's photo)")  # type: ignore[valid-type]


def register() -> None:
    bpy.types.WindowManager.headrecon_capture_photo = bpy.props.StringProperty(
        name="Photo", subtype='FILE_PATH', description="Photo whose expression the head takes")
    bpy.utils.register_class(HEADRECON_OT_capture_photo)


def unregister() -> None:
    bpy.utils.unregister_class(HEADRECON_OT_capture_photo)
    del bpy.types.WindowManager.headrecon_capture_photo
