"""Stage ``mouth`` (Object Mode): teeth, tongue and mouth cavity from the bundle's mouth.npz.

Four mesh objects in the head's collection (``naming.object_names``: ``<stem>_teeth_upper``,
``_teeth_lower``, ``_tongue``, ``_mouth``), each parented to the armature with an Armature
modifier and vertex groups from its FLAME skin weights (``rig.bone_weights``): the upper
teeth follow the ``head`` bone, the lower teeth and the tongue the ``jaw`` bone, the cavity
blends the lips' weights at its opening with head / jaw by height. They carry
``naming.MOUTH_PROP`` = their part name (not ``HEAD_PROP``: they are not the head mesh).

The tongue has shape keys ``Basis`` and ``tongueOut``; a driver copies the value of the
head's ``tongueOut`` key (added by stage ``shape_keys``) to it, so an animator, a preset or
a Live Link take keys one thing. Materials: the teeth and tongue textures of the bundle
(a plain colour when missing), the cavity a dark red. Bundles without a mouth skip this stage.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..headrecon_addon import naming, rig
from ..headrecon_addon.bundle import MouthPart
from .material import load_image
from .state import HeadBuild

MODE = 'OBJECT'
# linear RGB base colours: used without a texture (teeth, tongue) and for the cavity
PLAIN_COLOURS: dict[str, tuple[float, float, float]] = {
    "teeth": (0.8, 0.75, 0.65), "tongue": (0.45, 0.12, 0.12), "cavity": (0.12, 0.015, 0.015)}
ROUGHNESS: dict[str, float] = {"teeth": 0.25, "tongue": 0.45, "cavity": 0.7}
# Principled "Specular IOR Level" (0.5 = the IOR's own reflectance) where MouthShade is 1,
# scaled by it with depth
SPECULAR: dict[str, float] = {"teeth": 0.5, "tongue": 0.5, "cavity": 0.5}
SHADE_ATTRIBUTE = "MouthShade"  # colour attribute (point domain): baked darkening with depth
SHADE_DEPTH_M = 0.010  # depth behind the front teeth where the shade has fallen to 1/e
SHADE_MIN = 0.1
PART_MATERIAL: dict[str, str] = {"upper_teeth": "teeth", "lower_teeth": "teeth", "tongue": "tongue",
                                 "cavity": "cavity"}


def _material(build: HeadBuild, kind: str) -> bpy.types.Material:
    """One Principled BSDF material: the bundle's texture for ``kind`` or its plain colour."""
    material = build.track(bpy.data.materials.new(build.names[f"{kind}_material"]))
    if material.node_tree is None:
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    bsdf = next(n for n in nodes if n.bl_idname == 'ShaderNodeBsdfPrincipled')
    bsdf.inputs["Roughness"].default_value = ROUGHNESS[kind]
    # the mouth is lit through the lips only: its colour times the baked shade attribute
    shade = nodes.new('ShaderNodeVertexColor')
    shade.layer_name, shade.label, shade.location = SHADE_ATTRIBUTE, "Mouth shade", (-500.0, -100.0)
    multiply = nodes.new('ShaderNodeMix')
    multiply.data_type, multiply.blend_type, multiply.location = 'RGBA', 'MULTIPLY', (-200.0, 200.0)
    multiply.inputs["Factor"].default_value = 1.0
    links.new(shade.outputs["Color"], multiply.inputs["B"])
    links.new(multiply.outputs["Result"], bsdf.inputs["Base Color"])
    # the glossy reflection of the world is occluded inside the mouth as much as the diffuse
    # light: without this the teeth's sides and tops mirror the bright world as grey sheen
    specular = nodes.new('ShaderNodeMath')
    specular.operation, specular.label, specular.location = 'MULTIPLY', "Occluded specular", (-200.0, -100.0)
    specular.inputs[1].default_value = SPECULAR[kind]
    links.new(shade.outputs["Color"], specular.inputs[0])
    links.new(specular.outputs["Value"], bsdf.inputs["Specular IOR Level"])
    texture = build.bundle.mouth.textures.get(kind)
    if texture is not None:
        node = nodes.new('ShaderNodeTexImage')
        node.image, node.label, node.location = load_image(build, texture, False), kind.title(), (-500.0, 200.0)
        links.new(node.outputs["Color"], multiply.inputs["A"])
    else:
        multiply.inputs["A"].default_value = (*PLAIN_COLOURS[kind], 1.0)
    return material


def mouth_shade(verts: np.ndarray, front_z: float) -> np.ndarray:
    """(N,) how much light reaches each point of the mouth: 1 at the front teeth, falling
    with the depth behind them (Gaussian of width ``SHADE_DEPTH_M``) to ``SHADE_MIN``. A baked
    stand-in for the lips' and cheeks' occlusion (the dark "buccal corridors" beside the front
    teeth, the dim back of the mouth), which EEVEE's world light does not have.

    Args:
        verts: (N, 3) FLAME frame (metres, +z forward); front_z: z of the teeth's front.
    """
    depth = np.clip(front_z - np.asarray(verts, np.float64)[:, 2], 0.0, None) / SHADE_DEPTH_M
    return SHADE_MIN + (1.0 - SHADE_MIN) * np.exp(-depth * depth)


def _part_object(build: HeadBuild, name: str, part: MouthPart,
                 material: bpy.types.Material, front_z: float) -> bpy.types.Object:
    """A mesh object for one part: geometry, UVs, shade attribute (``mouth_shade`` with the
    teeth's front at ``front_z``), material, skin, parent."""
    mesh = build.track(bpy.data.meshes.new(build.names[name]))
    verts = rig.flame_to_blender(part.verts)
    n_f = part.faces.shape[0]
    mesh.vertices.add(verts.shape[0])
    mesh.vertices.foreach_set("co", np.ascontiguousarray(verts, np.float32).ravel())
    mesh.loops.add(3 * n_f)
    mesh.loops.foreach_set("vertex_index", part.faces.ravel())
    mesh.polygons.add(n_f)
    mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * n_f, 3, dtype=np.int32))
    mesh.polygons.foreach_set("loop_total", np.full(n_f, 3, dtype=np.int32))
    uv_layer = mesh.uv_layers.new(name=naming.UV_MAP)
    uv_layer.data.foreach_set("uv", np.ascontiguousarray(part.uv[part.uv_faces.ravel()], np.float32).ravel())
    shade = mouth_shade(part.verts, front_z)
    colour = mesh.color_attributes.new(SHADE_ATTRIBUTE, 'FLOAT_COLOR', 'POINT')
    rgba = np.ones((len(shade), 4), np.float32)
    rgba[:, :3] = shade[:, None]
    colour.data.foreach_set("color", rgba.ravel())
    mesh.update()
    mesh.shade_smooth()
    mesh.materials.append(material)
    obj = build.track(bpy.data.objects.new(build.names[name], mesh))
    build.collection.objects.link(obj)
    obj.parent = build.armature_obj
    obj[naming.MOUTH_PROP] = name
    obj[naming.BUNDLE_PROP] = str(build.bundle.folder)
    for bone, weights in rig.bone_weights(part.weights).items():
        used = np.nonzero(weights > 0.0)[0]
        if used.size == 0:
            continue
        group = obj.vertex_groups.new(name=bone)
        for value in np.unique(weights[used]).tolist():
            group.add(used[weights[used] == value].tolist(), value, 'REPLACE')
    modifier = obj.modifiers.new(name="Armature", type='ARMATURE')
    modifier.object = build.armature_obj
    modifier.use_vertex_groups, modifier.use_bone_envelopes = True, False
    return obj


def _tongue_out(build: HeadBuild, tongue: bpy.types.Object) -> None:
    """Tongue keys Basis + tongueOut; a driver copies the head's tongueOut value."""
    basis = tongue.shape_key_add(name=naming.BASIS_KEY, from_mix=False)
    tongue.data.shape_keys.use_relative = True
    key = tongue.shape_key_add(name=naming.TONGUE_OUT_KEY, from_mix=False)
    co = rig.flame_to_blender(build.bundle.mouth.parts["tongue"].verts + build.bundle.mouth.tongue_out)
    key.data.foreach_set("co", np.ascontiguousarray(co, np.float32).ravel())
    del basis
    head_keys = build.mesh_obj.data.shape_keys
    if head_keys is None or naming.TONGUE_OUT_KEY not in head_keys.key_blocks:
        return
    fcurve = key.driver_add("value")
    while fcurve.keyframe_points:
        fcurve.keyframe_points.remove(fcurve.keyframe_points[0], fast=True)
    driver = fcurve.driver
    driver.type = 'AVERAGE'
    var = driver.variables.new()
    var.name, var.type = "head", 'SINGLE_PROP'
    target = var.targets[0]
    target.id_type = 'KEY'
    target.id = head_keys
    target.data_path = f'key_blocks["{naming.TONGUE_OUT_KEY}"].value'


def run(build: HeadBuild) -> None:
    """Build the four mouth objects (nothing for a bundle without mouth data)."""
    mouth = build.bundle.mouth
    if mouth is None:
        return
    materials = {kind: _material(build, kind) for kind in ("teeth", "tongue", "cavity")}
    front_z = float(mouth.parts["upper_teeth"].verts[:, 2].max())
    objects = {name: _part_object(build, name, mouth.parts[name], materials[PART_MATERIAL[name]], front_z)
               for name in naming.MOUTH_PARTS}
    _tongue_out(build, objects["tongue"])
    build.mouth_objs = objects
