"""Stage ``material`` (Object Mode): a Principled BSDF material with the bundle's images.

Base Color comes from the albedo map when the bundle has one, else from the photo texture.
The surface detail has exactly one source in every renderer (EEVEE, Cycles, glTF):

* with a normal map (tangent space, OpenGL convention): a Normal Map node on the head's UV
  map feeds the BSDF's Normal. The 16-bit displacement map is loaded too, feeding a
  Displacement node (the bundle's midlevel and strength) that is left unlinked, for users
  who want true displacement with subdivision in Cycles instead (link it to the output's
  Displacement and unlink the normal map).
* without a normal map: the displacement map drives the output's Displacement as bump only
  (``displacement_method = 'BUMP'``).

Never both: the normal map and a bump from the same displacement apply the detail twice,
which EEVEE shows as dark cracks and specks (issue 14). Every image is packed into the .blend,
so a saved file keeps its textures when the bundle folder moves or is deleted.
"""

from __future__ import annotations

from pathlib import Path

import bpy

from ..headrecon_addon import naming
from .state import HeadBuild

MODE = 'OBJECT'
UNLINKED_DISPLACEMENT_LABEL = "Displacement (unlinked: the normal map carries the detail)"


def load_image(build: HeadBuild, path: Path, non_color: bool) -> bpy.types.Image:
    """Load ``path`` as a new image datablock of this build, packed into the .blend."""
    image = build.track(bpy.data.images.load(str(path), check_existing=False))
    if non_color:
        image.colorspace_settings.name = 'Non-Color'
    image.pack()
    return image


def _image_node(build: HeadBuild, nodes: bpy.types.Nodes, path: Path, label: str,
                non_color: bool, location: tuple[float, float]) -> bpy.types.ShaderNodeTexImage:
    node = nodes.new('ShaderNodeTexImage')
    node.image, node.label, node.location = load_image(build, path, non_color), label, location
    return node


def run(build: HeadBuild) -> None:
    """Create the material and assign it to the head mesh."""
    images = build.bundle.images
    material = build.track(bpy.data.materials.new(build.names["material"]))
    if material.node_tree is None:  # Blender < 5.0 creates the node tree on request
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    bsdf = next(n for n in nodes if n.bl_idname == 'ShaderNodeBsdfPrincipled')
    output = next(n for n in nodes if n.bl_idname == 'ShaderNodeOutputMaterial')
    bsdf.inputs["Roughness"].default_value = 0.5
    color_path = images.get("albedo") or images.get("texture")
    if color_path is not None:
        label = "Albedo" if "albedo" in images else "Texture"
        color = _image_node(build, nodes, color_path, label, False, (-500.0, 300.0))
        links.new(color.outputs["Color"], bsdf.inputs["Base Color"])
    if "normal" in images:
        tex = _image_node(build, nodes, images["normal"], "Normal", True, (-700.0, -100.0))
        normal_map = nodes.new('ShaderNodeNormalMap')
        normal_map.space, normal_map.uv_map, normal_map.location = 'TANGENT', naming.UV_MAP, (-300.0, -100.0)
        links.new(tex.outputs["Color"], normal_map.inputs["Color"])
        links.new(normal_map.outputs["Normal"], bsdf.inputs["Normal"])
    if "displacement" in images:
        tex = _image_node(build, nodes, images["displacement"], "Displacement", True, (-500.0, -450.0))
        disp = nodes.new('ShaderNodeDisplacement')
        disp.location = (-200.0, -450.0)
        disp.inputs["Midlevel"].default_value = build.bundle.displacement_midlevel
        disp.inputs["Scale"].default_value = build.bundle.displacement_strength
        links.new(tex.outputs["Color"], disp.inputs["Height"])
        if "normal" in images:
            disp.label = UNLINKED_DISPLACEMENT_LABEL
        else:
            links.new(disp.outputs["Displacement"], output.inputs["Displacement"])
        material.displacement_method = 'BUMP'
    build.mesh_obj.data.materials.append(material)
