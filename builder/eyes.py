"""Stage ``eyes`` (Object Mode): FLAME's eyeballs get their own material.

A second UV map (``naming.EYE_UV_MAP``) projects each eyeball by direction from its centre:
the angle from the eyeball's forward axis (FLAME +Z, Blender -Y) over 180 degrees is the
radius from (0.5, 0.5), so the front pole is the centre and the back pole the rim. The
material reads that radius: pupil (black) below 12 degrees, iris (``result.json``'s
``iris_color``, sRGB, else a mid brown, darker towards its dark limbal ring) to 36 degrees,
white sclera beyond; glossy with a clear coat for the wet cornea. The eyeball vertices keep
their eye-bone skin weights, so the eyes follow the eye bones. Heads that are not FLAME
topology (vertex count) are left with the skin material only.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..headrecon_addon import naming
from .state import HeadBuild

MODE = 'OBJECT'
PUPIL_DEG, IRIS_DEG = 12.0, 36.0


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def iris_srgb(result: dict) -> tuple[float, float, float]:
    """The bundle's iris colour (sRGB 0..1) or the default."""
    value = result.get("iris_color")
    if (isinstance(value, list) and len(value) == 3
            and all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in value)):
        return tuple(float(v) for v in value)
    return naming.DEFAULT_IRIS_SRGB


def _eye_uv(basis: np.ndarray) -> np.ndarray:
    """(V, 2) eye UVs (0.5, 0.5 outside the eyeballs)."""
    uv = np.full((basis.shape[0], 2), 0.5, np.float32)
    for start, stop in naming.EYEBALL_VERTEX_RANGES:
        d = basis[start:stop] - basis[start:stop].mean(axis=0)
        d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-12
        angle = np.arccos(np.clip(-d[:, 1], -1.0, 1.0))  # from Blender -Y (forward)
        side = np.stack([d[:, 0], d[:, 2]], axis=1)
        side /= np.linalg.norm(side, axis=1, keepdims=True) + 1e-12
        uv[start:stop] = 0.5 + 0.5 * (angle / np.pi)[:, None] * side
    return uv


def _material(build: HeadBuild) -> bpy.types.Material:
    material = build.track(bpy.data.materials.new(build.names["eye_material"]))
    if material.node_tree is None:
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    bsdf = next(n for n in nodes if n.bl_idname == 'ShaderNodeBsdfPrincipled')
    bsdf.inputs["Roughness"].default_value = 0.08
    bsdf.inputs["Coat Weight"].default_value = 1.0
    bsdf.inputs["Coat Roughness"].default_value = 0.02
    uv = nodes.new('ShaderNodeUVMap')
    uv.uv_map, uv.location = naming.EYE_UV_MAP, (-900.0, 0.0)
    dist = nodes.new('ShaderNodeVectorMath')
    dist.operation, dist.location = 'DISTANCE', (-700.0, 0.0)
    dist.inputs[1].default_value = (0.5, 0.5, 0.0)
    links.new(uv.outputs["UV"], dist.inputs[0])
    ramp = nodes.new('ShaderNodeValToRGB')
    ramp.location, ramp.label = (-450.0, 0.0), "Pupil / Iris / Sclera"
    iris = np.append(_srgb_to_linear(np.array(iris_srgb(build.bundle.result))), 1.0)
    elements = ramp.color_ramp.elements
    elements[0].position, elements[0].color = 0.0, (0.005, 0.005, 0.005, 1.0)
    elements[1].position, elements[1].color = 0.5, (0.8, 0.78, 0.75, 1.0)
    r_pupil, r_iris = 0.5 * PUPIL_DEG / 180.0, 0.5 * IRIS_DEG / 180.0
    for pos, col in ((r_pupil, iris * 1.15), (0.5 * (r_pupil + r_iris), iris),
                     (r_iris * 0.97, iris * 0.45), (r_iris * 1.08, (0.8, 0.78, 0.75, 1.0))):
        e = elements.new(pos)
        e.color = tuple(min(1.0, float(v)) for v in col[:3]) + (1.0,)
    elements[1].position = r_pupil * 0.99
    elements[1].color = (0.005, 0.005, 0.005, 1.0)
    links.new(dist.outputs["Value"], ramp.inputs["Fac"])
    links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    return material


def run(build: HeadBuild) -> None:
    """Eye UV map, eye material, material index 1 on the eyeball faces."""
    mesh = build.mesh_obj.data
    if len(mesh.vertices) != naming.FLAME_VERTEX_COUNT:
        return
    faces = build.bundle.faces
    uv_layer = mesh.uv_layers.new(name=naming.EYE_UV_MAP)
    uv_layer.data.foreach_set("uv", _eye_uv(build.basis)[faces.ravel()].ravel())
    mesh.uv_layers.active = mesh.uv_layers[naming.UV_MAP]
    for layer in mesh.uv_layers:
        layer.active_render = layer.name == naming.UV_MAP
    is_eye = np.zeros(len(mesh.vertices), bool)
    for start, stop in naming.EYEBALL_VERTEX_RANGES:
        is_eye[start:stop] = True
    mesh.materials.append(_material(build))
    index = is_eye[faces].all(axis=1).astype(np.int32)
    mesh.polygons.foreach_set("material_index", index)
    mesh.update()
