"""Stage ``shape_keys`` (Object Mode): Basis, expressions, blinks, Captured, ARKit, correctives.

With a mouth interior (mouth.npz) the head also gets ``tongueOut`` after the ARKit keys (the
lips parted; its value drives the tongue's key, stage ``mouth``), completing ARKit's 52.

Every key is relative to Basis (the neutral identity). ``Captured`` holds the photo's
expression (value 1); the blink keys get the fitted eyelid weights; corrective keys get
their values from drivers (stage ``drivers``), so their sliders span [-2, 2], the range of
an entry of ``R - I``.
"""

from __future__ import annotations

import numpy as np

from ..headrecon_addon import naming, rig
from .state import HeadBuild

MODE = 'OBJECT'

EXPRESSION_RANGE = (-5.0, 5.0)  # slider range of one expression component (model std units)
CORRECTIVE_RANGE = (-2.0, 2.0)


def _add_key(build: HeadBuild, name: str, delta_flame: np.ndarray, value: float = 0.0,
             slider: tuple[float, float] = (0.0, 1.0)) -> None:
    """Add one shape key = Basis + delta.

    Args:
        delta_flame: (V, 3) offset in the FLAME frame.
    """
    key = build.mesh_obj.shape_key_add(name=name, from_mix=False)
    co = build.basis + rig.flame_to_blender(delta_flame.astype(np.float32))
    key.data.foreach_set("co", co.ravel())
    key.slider_min, key.slider_max = slider
    key.value = value


def run(build: HeadBuild) -> None:
    """Create all shape keys in naming.shape_key_names() order."""
    b = build.bundle
    build.mesh_obj.shape_key_add(name=naming.BASIS_KEY, from_mix=False)
    build.mesh_obj.data.shape_keys.use_relative = True
    for k in range(b.n_expr):
        _add_key(build, naming.expression_key(k), b.expr_deltas[k], slider=EXPRESSION_RANGE)
    for name, delta, value in zip(naming.BLINK_KEYS, b.eyelid_deltas, b.eyelids):
        _add_key(build, name, delta, float(value))
    _add_key(build, naming.CAPTURED_KEY, np.einsum("e,evc->vc", b.expression, b.expr_deltas), 1.0)
    for name, delta in zip(b.arkit_names, b.arkit_deltas):
        _add_key(build, name, delta)
    if b.mouth is not None and naming.TONGUE_OUT_KEY not in b.arkit_names:
        _add_key(build, naming.TONGUE_OUT_KEY, b.mouth.head_tongue_out)  # drives the tongue's key
    for driver in rig.corrective_drivers(build.bones):
        _add_key(build, driver.key, b.pose_deltas[driver.feature], slider=CORRECTIVE_RANGE)
