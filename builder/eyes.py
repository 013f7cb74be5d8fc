"""Stage ``eyes`` (Object Mode): FLAME's eyeballs get their own material.

With the bundle's eye texture (``files.eye``, ``eye.png``: a CC0 iris texture tinted to the
photo's iris colour by the backend) the eye UV map (``naming.EYE_UV_MAP``) holds texture
coordinates from ``headrecon_addon.eye_layout.eye_texture_uv``: each eyeball's front pole
(its fitted sphere's forward axis, FLAME +Z / Blender -Y) on its disc's pupil, the texture's
limbus where the eyeball's sphere is 11.7 mm across (about 26.5 degrees from the front), the
subject's left eye on the texture's +X disc. The image is packed into the .blend.

Without one (older bundles, a missing or damaged eye.png) the eye UV map projects each eyeball
by direction from its fitted centre: the angle from the forward axis over 180 degrees is the
radius from (0.5, 0.5), so the front pole is the centre and the back pole the rim, and a colour
ramp on that radius draws the pupil (black), the iris (``result.json``'s ``iris_color``, sRGB,
else a mid brown, darker towards its limbal ring; the same angles as the texture's) and a white
sclera.

Both are glossy (roughness 0.08) with a clear coat (roughness 0.02) for the wet cornea. The
eyeball vertices keep their eye-bone skin weights, so the eyes follow the eye bones. Heads that
are not FLAME topology (vertex count) are left with the skin material only.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ..headrecon_addon import eye_layout, naming
from .material import load_image
from .state import HeadBuild

MODE = 'OBJECT'
ROUGHNESS, COAT_ROUGHNESS = 0.08, 0.02


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def iris_srgb(result: dict) -> tuple[float, float, float]:
    """The bundle's iris colour (sRGB 0..1) or the default."""
    value = result.get("iris_color")
    if (isinstance(value, list) and len(value) == 3
            and all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in value)):
        return tuple(float(v) for v in value)
    return naming.DEFAULT_IRIS_SRGB


def _iris_deg(v_neutral: np.ndarray) -> float:
    """Mean limbus angle (degrees) of FLAME's two eyeballs: iris 11.7 mm across."""
    angles = []
    for start, stop in naming.EYEBALL_VERTEX_RANGES:
        radius = max(eye_layout.fit_sphere(v_neutral[start:stop])[1], eye_layout.IRIS_DIAMETER_M)
        angles.append(np.degrees(np.arcsin(0.5 * eye_layout.IRIS_DIAMETER_M / radius)))
    return float(np.mean(angles))


def _eye_uv(v_neutral: np.ndarray) -> np.ndarray:
    """(V, 2) azimuthal eye UVs of the procedural material (0.5, 0.5 outside the eyeballs).

    Args:
        v_neutral: (V, 3) rest mesh in the FLAME frame (+Z forward).
    """
    uv = np.full((v_neutral.shape[0], 2), 0.5, np.float32)
    for start, stop in naming.EYEBALL_VERTEX_RANGES:
        centre, _ = eye_layout.fit_sphere(v_neutral[start:stop])
        d = v_neutral[start:stop] - centre
        d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-12
        angle = np.arccos(np.clip(d[:, 2], -1.0, 1.0))  # from FLAME +Z (Blender -Y, forward)
        side = np.stack([d[:, 0], d[:, 1]], axis=1)  # Blender (x, z)
        side /= np.linalg.norm(side, axis=1, keepdims=True) + 1e-12
        uv[start:stop] = 0.5 + 0.5 * (angle / np.pi)[:, None] * side
    return uv


def _new_material(build: HeadBuild) -> tuple[bpy.types.Material, bpy.types.ShaderNode]:
    """The eye material with its glossy, clear-coated Principled BSDF."""
    material = build.track(bpy.data.materials.new(build.names["eye_material"]))
    if material.node_tree is None:
        material.use_nodes = True
    bsdf = next(n for n in material.node_tree.nodes if n.bl_idname == 'ShaderNodeBsdfPrincipled')
    bsdf.inputs["Roughness"].default_value = ROUGHNESS
    bsdf.inputs["Coat Weight"].default_value = 1.0
    bsdf.inputs["Coat Roughness"].default_value = COAT_ROUGHNESS
    return material, bsdf


def _texture_material(build: HeadBuild, path: Path) -> bpy.types.Material:
    """Eye material reading the bundle's eye texture through the eye UV map."""
    material, bsdf = _new_material(build)
    nodes, links = material.node_tree.nodes, material.node_tree.links
    uv = nodes.new('ShaderNodeUVMap')
    uv.uv_map, uv.location = naming.EYE_UV_MAP, (-700.0, 0.0)
    tex = nodes.new('ShaderNodeTexImage')
    tex.image, tex.label, tex.location = load_image(build, path, False), "Iris", (-450.0, 0.0)
    tex.extension = 'EXTEND'
    links.new(uv.outputs["UV"], tex.inputs["Vector"])
    links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    return material


def _procedural_material(build: HeadBuild, iris_deg: float) -> bpy.types.Material:
    """Eye material drawing pupil, iris and sclera with a colour ramp on the eye UV radius."""
    material, bsdf = _new_material(build)
    nodes, links = material.node_tree.nodes, material.node_tree.links
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
    pupil_deg = iris_deg * eye_layout.PUPIL_RADIUS / eye_layout.IRIS_RADIUS
    r_pupil, r_iris = 0.5 * pupil_deg / 180.0, 0.5 * iris_deg / 180.0
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
    """Eye UV map, eye material (texture, else procedural), material index 1 on the eyeballs."""
    mesh = build.mesh_obj.data
    if len(mesh.vertices) != naming.FLAME_VERTEX_COUNT:
        return
    faces = build.bundle.faces
    v_neutral = np.asarray(build.bundle.v_neutral, np.float64)
    eye_png = build.bundle.images.get("eye")
    uv_layer = mesh.uv_layers.new(name=naming.EYE_UV_MAP)
    if eye_png is not None:
        corner_uv, _ = eye_layout.eye_texture_uv(v_neutral, faces, naming.EYEBALL_VERTEX_RANGES)
        uv_layer.data.foreach_set("uv", corner_uv.ravel())
        material = _texture_material(build, eye_png)
    else:
        uv_layer.data.foreach_set("uv", _eye_uv(v_neutral)[faces.ravel()].ravel())
        material = _procedural_material(build, _iris_deg(v_neutral))
    mesh.uv_layers.active = mesh.uv_layers[naming.UV_MAP]
    for layer in mesh.uv_layers:
        layer.active_render = layer.name == naming.UV_MAP
    is_eye = np.zeros(len(mesh.vertices), bool)
    for start, stop in naming.EYEBALL_VERTEX_RANGES:
        is_eye[start:stop] = True
    mesh.materials.append(material)
    index = is_eye[faces].all(axis=1).astype(np.int32)
    mesh.polygons.foreach_set("material_index", index)
    mesh.update()
