"""The modal-operator loop shared by Reconstruct and the capture operators.

A long job (a backend reconstruction, a capture process) never blocks the UI: invoked from
the UI the operator is modal and a window-manager timer advances the job; Esc asks it to
stop; Blender ending the operator (file loaded, window closed) stops it. Called from a
script (``execute``) the same steps run in a loop until the job ends.

Subclasses implement the hooks :meth:`ModalTaskOperator.begin`, :meth:`~ModalTaskOperator.advance`,
:meth:`~ModalTaskOperator.show`, :meth:`~ModalTaskOperator.on_escape`,
:meth:`~ModalTaskOperator.abort` and :meth:`~ModalTaskOperator.finish`; the timer, the
progress bar, the status bar clean-up and the event routing live here once.
"""

from __future__ import annotations

import time
from typing import Any

import bpy


def photo_property(description: str) -> Any:
    """The operator's ``photo`` property (empty: the panel's photo)."""
    return bpy.props.StringProperty(name="Photo", subtype='FILE_PATH', options={'SKIP_SAVE'},
                                    description=description)


class ModalTaskOperator:
    """Mixin for a ``bpy.types.Operator`` that runs one task modally (or blocking from scripts)."""

    bl_options = {'REGISTER', 'UNDO'}
    step_interval_s = 0.1
    use_progress_bar = False  # the window manager's cursor progress (progress_begin/end)
    _task: Any = None
    _timer: bpy.types.Timer | None = None

    # -- hooks -------------------------------------------------------------------------
    def begin(self, context: bpy.types.Context) -> Any | None:
        """Start the task; None (after reporting why) when it cannot start."""
        raise NotImplementedError

    def advance(self, context: bpy.types.Context, task: Any) -> bool:
        """Move the task on one step; True when it has ended."""
        raise NotImplementedError

    def show(self, context: bpy.types.Context, task: Any) -> None:
        """Show the task's progress (panel, status bar)."""

    def on_escape(self, context: bpy.types.Context, task: Any) -> set[str] | None:
        """Esc was pressed: a result ends the operator now, None keeps it running."""
        return None

    def abort(self, context: bpy.types.Context, task: Any) -> None:
        """Blender ends the operator while the task runs: stop it."""

    def finish(self, context: bpy.types.Context, task: Any, cancelled: bool) -> set[str]:
        """The task ended (timer and progress are already gone): report, return the result."""
        raise NotImplementedError

    # -- the loop ----------------------------------------------------------------------
    def _end(self, context: bpy.types.Context, task: Any, cancelled: bool) -> set[str]:
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        if self.use_progress_bar:
            wm.progress_end()
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        self._task = None
        return self.finish(context, task, cancelled)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        task = self.begin(context)
        if task is None:
            return {'CANCELLED'}
        self._task = task
        wm = context.window_manager
        self._timer = wm.event_timer_add(self.step_interval_s, window=context.window)
        if self.use_progress_bar:
            wm.progress_begin(0, 100)
        wm.modal_handler_add(self)
        self.show(context, task)
        return {'RUNNING_MODAL'}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        task = self._task
        assert task is not None
        if event.type == 'ESC' and event.value == 'PRESS':
            if self.on_escape(context, task) is not None:
                return self._end(context, task, cancelled=True)
            return {'RUNNING_MODAL'}
        if event.type != 'TIMER' or event.timer != self._timer:
            return {'PASS_THROUGH'}  # the rest of Blender stays usable
        if self.advance(context, task):
            return self._end(context, task, cancelled=False)
        self.show(context, task)
        return {'PASS_THROUGH'}

    def cancel(self, context: bpy.types.Context) -> None:
        """Blender ends the modal operator (file loaded, window closed): stop the task."""
        task = self._task
        if task is not None:
            self.abort(context, task)
            self._end(context, task, cancelled=True)

    def execute(self, context: bpy.types.Context) -> set[str]:
        """Scripts: run to the end (blocking), same steps as the modal run."""
        task = self.begin(context)
        if task is None:
            return {'CANCELLED'}
        if self.use_progress_bar:
            context.window_manager.progress_begin(0, 100)
        while not self.advance(context, task):
            self.show(context, task)
            time.sleep(self.step_interval_s / 2)
        return self._end(context, task, cancelled=False)
