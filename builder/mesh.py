"""Stage ``mesh`` (Object Mode): FLAME-topology geometry, its UV map and smooth shading."""

from __future__ import annotations

import numpy as np

from ..headrecon_addon import naming
from .state import HeadBuild

MODE = 'OBJECT'


def run(build: HeadBuild) -> None:
    """Fill the empty mesh with the neutral identity (Blender coordinates), triangles and UVs."""
    mesh = build.mesh_obj.data
    faces = build.bundle.faces
    n_v, n_f = build.basis.shape[0], faces.shape[0]
    mesh.vertices.add(n_v)
    mesh.vertices.foreach_set("co", build.basis.ravel())
    mesh.loops.add(3 * n_f)
    mesh.loops.foreach_set("vertex_index", faces.ravel())
    mesh.polygons.add(n_f)
    mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * n_f, 3, dtype=np.int32))
    mesh.polygons.foreach_set("loop_total", np.full(n_f, 3, dtype=np.int32))
    uv_layer = mesh.uv_layers.new(name=naming.UV_MAP)
    loop_uv = build.bundle.uv[build.bundle.uv_faces.ravel()]
    uv_layer.data.foreach_set("uv", np.ascontiguousarray(loop_uv, dtype=np.float32).ravel())
    mesh.update()
    mesh.shade_smooth()
