"""Deterministic torch kernels while a reconstruction runs: the same photo gives the same head.

torch's CPU kernel for ``index_put_(accumulate=True)``, the backward of every indexed read
such as ``verts[faces]``, adds with parallel atomic float adds once the index has at least
32768 entries and more than one thread runs. The summation order, hence the last bits of
the gradient, then changes from run to run, and the photometric fit's 120 Adam steps grow
them into a different head (identity up to 0.09 std, landmarks_68 up to 0.45 px apart on
AFLW image00251). torch's deterministic mode makes it (and the CUDA scatter kernels) use
ordered algorithms instead.

The mode is global to the process, so it is switched on only while at least one
``deterministic()`` block runs (jobs of a service thread included) and restored after the
last one. ``warn_only``: kernels without a deterministic version warn instead of failing.
On CPU the pipeline uses none. On CUDA (not measured yet): the bilinear ``interpolate``
backward of the detail stage adds atomically (the displacement, normal and albedo maps may
differ in the last bits; the fitted head does not depend on them); ``grid_sample`` backward
is flagged for its input gradient, which is not computed here; ``median`` is flagged for
its indices, of which only the values are used.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import torch

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` inside the block (nestable,
    also usable as a decorator); a setting the caller made before is kept as it was."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = torch.are_deterministic_algorithms_enabled()
            if not _was_enabled:
                torch.use_deterministic_algorithms(True, warn_only=True)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and not _was_enabled:
                torch.use_deterministic_algorithms(False)
