"""Keep the start-up chatter of native libraries (MediaPipe/TFLite/absl, Warp) off stderr.

Those libraries write to file descriptor 2 from C++, past Python's logging, and no
environment variable silences all of them. :func:`filter_native_stderr` points fd 2 at a
pipe whose reader thread drops the known noise lines and passes every other line on;
Python's own ``sys.stderr`` keeps writing to the real stderr directly, so the CLI's progress
lines and error sentences are never delayed or lost. ``headrecon -v`` skips the filter.
"""

from __future__ import annotations

import os
import re
import sys
import threading

NOISE = re.compile(
    rb"^(INFO: Created TensorFlow Lite|WARNING: All log messages before absl::InitializeLog"
    rb"|[IW]\d{4} [\d:.]+\s+\d+ \S+\.(cc|h):\d+\]|Warp \d[\w.]* initialized|\s+(CUDA|Devices|"
    rb"Kernel cache|\"cpu\"|\"cuda:\d+\")\b)")


def filter_native_stderr() -> None:
    """Route fd 2 through a filter thread; Python's ``sys.stderr`` keeps the real stderr."""
    try:
        real = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:
        return
    sys.stderr.flush()
    sys.stderr = os.fdopen(os.dup(real), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                           errors="backslashreplace")
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not NOISE.match(line):
                    os.write(real, line)

    threading.Thread(target=pump, name="headrecon-native-stderr", daemon=True).start()
