"""Reconstruct: the photo goes to the backend, the result is imported as a rigged head.

The UI never waits: invoked from the panel the operator is modal, a window-manager timer
calls :meth:`ReconstructTask.step` (which polls the client queue), progress goes to the
panel's bar, the cursor progress and the status bar, and Esc cancels. Called from a script
(``bpy.ops.headrecon.reconstruct(photo=..., quality=...)``) the same steps run in a loop
until the job ends. On any failure the scene is left as it was and one sentence is shown.

Bundles are kept in ``results_dir()/<job id>/`` (beside the saved .blend, a folder set in the
preferences, or Blender's user data folder; never in the extension's folders, which an
uninstall deletes): the imported head refers to its texture files there.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bpy

from ..builder import build_head
from ..headrecon_addon.bundle import BundleError, load_bundle
from ..headrecon_addon.client import Backend, BackendError, ClientJob
from .backend_start import redraw_sidebars, start_backend
from .modal_task import ModalTaskOperator, photo_property

ROOT_PACKAGE = __package__.rpartition(".")[0]
STEP_INTERVAL_S = 0.1
QUALITIES = (
    ('fast', "Fast", "Landmark fit and a short photometric refinement"),
    ('default', "Default", "Balanced quality and time"),
    ('best', "Best", "Longest fitting, most detail"),
)
STAGE_LABELS = {
    "load": "Loading the photo", "landmarks": "Finding the face", "fit_landmarks": "Fitting the shape",
    "fit_photometric": "Fitting skin and light", "texture": "Sampling the texture",
    "detail": "Recovering detail", "bundle": "Writing the result",
}


@dataclass
class PanelState:
    """What the panel shows about the current or last reconstruction."""

    running: bool = False
    fraction: float = 0.0
    text: str = ""
    is_error: bool = False


STATE = PanelState()


def results_dir(context: bpy.types.Context | None = None) -> Path:
    """Where finished bundles (and so the imported heads' texture files) are kept.

    Never inside the extension or its user folder (Blender deletes both when the extension
    is uninstalled, and the saved .blend files would lose their maps): the folder set in the
    preferences; else, for a saved .blend, ``<blend folder>/<blend name>_headrecon/`` beside
    the user's work; else Blender's user data folder (``datafiles/headrecon/results``, kept
    across uninstalls and upgrades).
    """
    from ..preferences import get_preferences

    context = context or bpy.context
    try:
        chosen = get_preferences(context).results_folder.strip()
    except (KeyError, AttributeError):  # preferences not registered (legacy add-on install)
        chosen = ""
    if chosen:
        return Path(bpy.path.abspath(chosen))
    if bpy.data.filepath:
        blend = Path(bpy.data.filepath)
        return blend.parent / f"{blend.stem}_headrecon"
    data = bpy.utils.user_resource('DATAFILES', path="headrecon/results", create=True)
    return Path(data) if data else Path(tempfile.gettempdir()) / "headrecon-results"


class ReconstructTask:
    """One photo to an imported head, advanced by :meth:`step`.

    States: ``waiting`` (backend starting) -> ``running`` -> ``done`` | ``failed`` | ``cancelled``.
    """

    def __init__(self, backend: Backend, photo: str, quality: str):
        self.backend = backend
        self.photo = photo
        self.quality = quality
        self.job: ClientJob | None = None
        self.state = "waiting"
        self.message = "Starting the backend..."
        self.head: str | None = None
        self._cancel_requested = False

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    @property
    def fraction(self) -> float:
        return self.job.fraction if self.job is not None else 0.0

    def cancel(self) -> None:
        self._cancel_requested = True
        if self.job is not None:
            self.backend.cancel()

    def _end(self, state: str, message: str) -> str:
        self.state, self.message = state, message
        return state

    def step(self, context: bpy.types.Context) -> str:
        """Apply what the backend reported; submit, import or fail when due. Returns the state."""
        if self.finished:
            return self.state
        self.backend.poll()
        if self.job is None:
            if self._cancel_requested:
                return self._end("cancelled", "Reconstruction cancelled.")
            if self.backend.status == "ready":
                try:
                    self.job = self.backend.reconstruct(self.photo, {"quality": self.quality},
                                                        results_dir(context))
                except BackendError as exc:
                    return self._end("failed", str(exc))
                self.state, self.message = "running", "Sending the photo..."
            elif self.backend.status in ("error", "stopped"):
                return self._end("failed", self.backend.message or "The backend is not running.")
            return self.state
        job = self.job
        if job.state == "done":
            assert job.bundle_dir is not None
            return self._import(context, job.bundle_dir)
        if job.state == "cancelled":
            return self._end("cancelled", "Reconstruction cancelled.")
        if job.state == "failed":
            extra = " Press Start to restart the backend." if self.backend.status == "error" else ""
            return self._end("failed", job.message + extra)
        stage = STAGE_LABELS.get(job.stage, job.stage or "Working")
        self.message = f"{stage}: {job.fraction * 100:.0f}%"
        return self.state

    def _import(self, context: bpy.types.Context, bundle_dir: Path) -> str:
        if context.mode != 'OBJECT':
            return self._end("failed", f"Switch to Object Mode to import the head; the result is "
                                       f"in {bundle_dir}.")
        try:
            bundle = load_bundle(bundle_dir)
            build = build_head(context, bundle)
        except BundleError as exc:
            return self._end("failed", str(exc))
        except Exception as exc:  # noqa: BLE001 - build_head removed what it created
            return self._end("failed", f"Importing the head failed ({type(exc).__name__}: {exc}).")
        self.head = build.armature_obj.name
        warnings = f" ({len(self.job.warnings)} warning(s))" if self.job and self.job.warnings else ""
        return self._end("done", f"Imported {self.head}{warnings}.")


class HEADRECON_OT_reconstruct(ModalTaskOperator, bpy.types.Operator):
    """Reconstruct a rigged head from the photo (Esc cancels)"""

    bl_idname = "headrecon.reconstruct"
    bl_label = "Reconstruct"

    photo: photo_property("Photo of a face (default: the panel's photo)")  # type: ignore[valid-type]
    quality: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Quality", items=QUALITIES, default='default', options={'SKIP_SAVE'})

    use_progress_bar = True

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if STATE.running:
            cls.poll_message_set("A reconstruction is running")
            return False
        if context.mode != 'OBJECT':
            cls.poll_message_set("Switch to Object Mode to reconstruct a head")
            return False
        return True

    def begin(self, context: bpy.types.Context) -> ReconstructTask | None:
        wm = context.window_manager
        photo = bpy.path.abspath(self.photo or wm.headrecon_photo)
        quality = self.quality if self.properties.is_property_set("quality") else wm.headrecon_quality
        if not photo:
            return self._fail(context, "Choose a photo first.")
        if not os.path.isfile(photo):
            return self._fail(context, f"Photo not found: {photo}.")
        try:
            backend = start_backend(context)
        except BackendError as exc:
            return self._fail(context, str(exc))
        STATE.running, STATE.fraction, STATE.is_error = True, 0.0, False
        STATE.text = "Starting..."
        task = ReconstructTask(backend, photo, quality)
        if backend.restart_note:  # it had died while idle: say so, not a stale stderr line
            self.report({'WARNING'}, backend.restart_note)
            task.message = STATE.text = backend.restart_note
        return task

    def _fail(self, context: bpy.types.Context, message: str) -> None:
        STATE.running, STATE.text, STATE.is_error = False, message, True
        self.report({'ERROR'}, message)
        redraw_sidebars()
        return None

    def advance(self, context: bpy.types.Context, task: ReconstructTask) -> bool:
        task.step(context)
        return task.finished

    def show(self, context: bpy.types.Context, task: ReconstructTask) -> None:
        STATE.fraction, STATE.text = task.fraction, task.message
        context.window_manager.progress_update(int(task.fraction * 100))
        if context.workspace is not None:
            context.workspace.status_text_set(f"HeadRecon: {task.message}   (Esc to cancel)")
        redraw_sidebars()

    def on_escape(self, context: bpy.types.Context, task: ReconstructTask) -> set[str] | None:
        task.cancel()  # the backend confirms; the next steps end the task
        return None

    def abort(self, context: bpy.types.Context, task: ReconstructTask) -> None:
        if not task.finished:
            task.cancel()
            task.state = "cancelled"

    def finish(self, context: bpy.types.Context, task: ReconstructTask, cancelled: bool) -> set[str]:
        STATE.running, STATE.fraction, STATE.text = False, task.fraction, task.message
        STATE.is_error = task.state == "failed"
        redraw_sidebars()
        if task.state == "done":
            self.report({'INFO'}, task.message)
            return {'FINISHED'}
        self.report({'ERROR'} if task.state == "failed" else {'WARNING'}, task.message)
        return {'CANCELLED'}


def register() -> None:
    bpy.types.WindowManager.headrecon_photo = bpy.props.StringProperty(
        name="Photo", subtype='FILE_PATH', description="Photo of a face to reconstruct")
    bpy.types.WindowManager.headrecon_quality = bpy.props.EnumProperty(
        name="Quality", items=QUALITIES, default='default')
    bpy.utils.register_class(HEADRECON_OT_reconstruct)


def unregister() -> None:
    bpy.utils.unregister_class(HEADRECON_OT_reconstruct)
    del bpy.types.WindowManager.headrecon_quality
    del bpy.types.WindowManager.headrecon_photo
