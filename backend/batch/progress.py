"""The batch's progress bar on stderr: done / failed / photos per minute / time left.

On a terminal one line is redrawn in place (at most twice a second); otherwise (a log file,
a test) one line is printed per finished photo. Failed photos are always named on a line of
their own.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

BAR_WIDTH = 24


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class BatchProgress:
    """Counts finished photos and draws the bar.

    Args:
        total: photos this run has to do (skipped ones not counted).
        skipped: photos already complete (``--resume``), shown once.
        stream: where to draw (stderr).
    """

    def __init__(self, total: int, skipped: int = 0, stream: TextIO | None = None):
        self.total = total
        self.skipped = skipped
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.ok = 0
        self.failed = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0
        if skipped:
            self._line(f"headrecon: batch: {skipped} photo(s) already complete, skipped")

    @property
    def finished(self) -> int:
        return self.ok + self.failed

    def rate_per_minute(self) -> float:
        """Photos finished per minute of this run so far (start-up included)."""
        elapsed = time.perf_counter() - self.start
        return self.finished / elapsed * 60.0 if elapsed > 0 else 0.0

    def text(self) -> str:
        """The bar as one line."""
        frac = self.finished / self.total if self.total else 1.0
        filled = int(round(frac * BAR_WIDTH))
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        rate = self.rate_per_minute()
        left = (self.total - self.finished) / rate * 60.0 if rate > 0 else None
        eta = _duration(left) if left is not None else "?"
        return (f"batch [{bar}] {self.finished}/{self.total} done, {self.failed} failed, "
                f"{rate:.1f} photos/min, {eta} left")

    def record(self, rec: dict[str, Any]) -> None:
        """Count a finished photo (a manifest line) and redraw."""
        if rec["status"] == "ok":
            self.ok += 1
        else:
            self.failed += 1
            self._line(f"headrecon: batch: {rec['input']}: {rec['status']}: {rec['error']}")
        self.draw(force=True)

    def draw(self, force: bool = False) -> None:
        """Redraw the bar (a terminal: in place, throttled; otherwise only when forced)."""
        now = time.perf_counter()
        if self.tty:
            if force or now - self._last_draw >= 0.5:
                self.stream.write("\r\x1b[K" + self.text())
                self.stream.flush()
                self._last_draw = now
        elif force:
            self._line(self.text())

    def _line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        if self.tty and self._last_draw:
            self.draw(force=True)

    def close(self) -> None:
        """Finish the terminal line."""
        if self.tty:
            self.stream.write("\r\x1b[K" + self.text() + "\n")
            self.stream.flush()
