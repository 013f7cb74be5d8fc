"""Stage ``skin`` (Object Mode): vertex groups from the skinning weights, Armature modifier."""

from __future__ import annotations

import numpy as np

from ..headrecon_addon import rig
from .state import HeadBuild

MODE = 'OBJECT'


def run(build: HeadBuild) -> None:
    """One vertex group per bone (rig.bone_weights), then a linear-blend Armature modifier."""
    obj = build.mesh_obj
    for name, weights in rig.bone_weights(build.bundle.weights).items():
        group = obj.vertex_groups.new(name=name)
        used = np.nonzero(weights > 0.0)[0]
        values, inverse = np.unique(weights[used], return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        starts = np.searchsorted(inverse[order], np.arange(len(values) + 1))
        for k, value in enumerate(values.tolist()):
            group.add(used[order[starts[k]:starts[k + 1]]].tolist(), value, 'REPLACE')
    modifier = obj.modifiers.new(name="Armature", type='ARMATURE')
    modifier.object = build.armature_obj
    modifier.use_vertex_groups = True
    modifier.use_bone_envelopes = False
    modifier.use_deform_preserve_volume = False
