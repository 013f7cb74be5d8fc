"""Render an imported head from the photo's camera, in the background, beside the photo.

Usage::

    python scripts/render_head.py BUNDLE [-o OUT.png] [--photo PHOTO] [--engine WORKBENCH|CYCLES]
                                  [--height 384] [--samples 16] [--preset JAW_OPEN ...]

Runs Blender as a Python module (bpy): the extension is registered straight from this
checkout, the bundle is imported with ``headrecon.import_bundle`` and rendered through the
fitted pinhole camera (``result.json`` camera, root rotation and translation; see
docs/ARCHITECTURE.md "Coordinates and camera"), so the render lines up with the photo.
The PNG shows the photo, the render, the render laid over the photo (the photo is found
with ``--photo``, else by its file name in the bundle folder; without one only the renders
are written), then one render per ``--preset``: the expression preset added to the captured
face with the extension's own operators. Workbench (textured, studio light) or Cycles on
the CPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "headrecon"
BACKGROUND = (46, 46, 46)
GAP = 8  # pixels between the panels
OVERLAY_OPACITY = 0.6  # of the render laid over the photo
KEY_LIGHT_TILT_DEG = -30.0  # Cycles key light: the camera's direction, tilted to come from above


def load_extension() -> object:
    """Import this checkout's extension as the ``headrecon`` package and register it."""
    spec = importlib.util.spec_from_file_location(PACKAGE, REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    spec.loader.exec_module(module)
    module.register()
    return module


def camera_matrix(root_pose: np.ndarray, translation: np.ndarray, root_joint: np.ndarray,
                  rig: object) -> np.ndarray:
    """4x4 Blender world matrix of the photo's camera for a head left in FLAME's rest frame.

    The fitted head is ``q = R (p - J0) + J0 + t`` in the view frame (camera at the origin,
    looking down -Z, +Y up). Keeping the head still and moving the camera instead, the camera
    sits at ``c = J0 - R^T (J0 + t)`` with axes ``R^T`` in the FLAME frame; Blender's camera
    also looks down its local -Z with +Y up.

    Args:
        root_pose: (3,) fitted root axis-angle; translation: (3,) fitted translation;
        root_joint: (3,) J0, all in the FLAME frame.
    """
    rot = rig.axis_angle_to_matrix(root_pose)
    centre = root_joint - rot.T @ (root_joint + translation)
    out = np.eye(4)
    out[:3, :3] = rig.FLAME_TO_BLENDER @ rot.T
    out[:3, 3] = rig.flame_to_blender(centre)
    return out


def setup_scene(bpy: object, arm: object, result: dict, height: int, engine: str,
                samples: int) -> None:
    """Camera with the bundle's intrinsics, render settings of the chosen engine."""
    import mathutils

    rig = sys.modules[f"{PACKAGE}.headrecon_addon.rig"]
    naming = sys.modules[f"{PACKAGE}.headrecon_addon.naming"]
    cam = result["camera"]
    width_px, height_px = float(cam["width"]), float(cam["height"])
    cx, cy = (float(v) for v in cam["principal_px"])
    scene = bpy.context.scene
    data = bpy.data.cameras.new("photo_camera")
    data.sensor_fit = 'HORIZONTAL'
    data.lens = float(cam["focal_px"]) * data.sensor_width / width_px
    data.shift_x = (width_px / 2.0 - cx) / width_px  # shifts are in units of the width here
    data.shift_y = (cy - height_px / 2.0) / width_px
    data.clip_start, data.clip_end = 0.01, 10.0
    camera = bpy.data.objects.new("photo_camera", data)
    scene.collection.objects.link(camera)
    root_joint = rig.FLAME_TO_BLENDER.T @ np.array(arm.data.bones[naming.ROOT_BONE].head_local)
    camera.matrix_world = mathutils.Matrix(camera_matrix(
        np.array(arm[naming.ROOT_POSE_PROP]), np.array(arm[naming.TRANSLATION_PROP]),
        root_joint, rig).tolist())
    scene.camera = camera
    render = scene.render
    render.resolution_y = height
    render.resolution_x = max(1, round(height * width_px / height_px))
    render.resolution_percentage = 100
    render.film_transparent = True
    render.image_settings.file_format = 'PNG'
    render.image_settings.color_mode = 'RGBA'
    scene.view_settings.view_transform = 'Standard'
    arm.hide_render = True
    if engine == "CYCLES":
        render.engine = 'CYCLES'
        scene.cycles.device = 'CPU'
        scene.cycles.samples = samples
        scene.cycles.use_denoising = False
        world = bpy.data.worlds.new("photo_world")
        if world.node_tree is None:  # Blender < 5.0 creates the node tree on request
            world.use_nodes = True
        background = next(n for n in world.node_tree.nodes if n.bl_idname == 'ShaderNodeBackground')
        background.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
        background.inputs["Strength"].default_value = 0.6
        scene.world = world
        sun = bpy.data.objects.new("key_light", bpy.data.lights.new("key_light", 'SUN'))
        sun.data.energy = 2.5
        sun.data.angle = 0.3
        tilt = mathutils.Matrix.Rotation(np.radians(KEY_LIGHT_TILT_DEG), 4, 'X')
        sun.matrix_world = camera.matrix_world @ tilt
        scene.collection.objects.link(sun)
    else:
        render.engine = 'BLENDER_WORKBENCH'
        shading = scene.display.shading
        shading.light = 'STUDIO'
        shading.color_type = 'TEXTURE'
        scene.display.render_aa = '8'


def find_photo(bundle: Path, result: dict, explicit: Path | None) -> Path | None:
    """The photo: --photo, else the input photo's file name inside the bundle folder."""
    if explicit is not None:
        return explicit
    name = result.get("input", {}).get("photo")
    candidate = bundle / name if isinstance(name, str) and name else None
    return candidate if candidate is not None and candidate.is_file() else None


def compose(renders: list[Path], photo: Path | None, out: Path) -> tuple[int, int]:
    """Photo | first render | first render over the photo at ``OVERLAY_OPACITY`` | the other
    renders, on a dark background (without a photo: the renders only).

    Returns:
        (width, height) of the written PNG.
    """
    images = [Image.open(path).convert("RGBA") for path in renders]
    size = images[0].size
    panels = []
    for image in images:
        panel = Image.new("RGBA", size, BACKGROUND + (255,))
        panel.alpha_composite(image)
        panels.append(panel)
    if photo is not None:
        picture = Image.open(photo).convert("RGBA").resize(size, Image.LANCZOS)
        faded = np.asarray(images[0]).copy()
        faded[..., 3] = np.rint(faded[..., 3] * OVERLAY_OPACITY).astype(np.uint8)
        over = picture.copy()
        over.alpha_composite(Image.fromarray(faded, "RGBA"))
        panels = [picture, panels[0], over] + panels[1:]
    w, h = size
    sheet = Image.new("RGB", (len(panels) * w + (len(panels) - 1) * GAP, h), BACKGROUND)
    for k, panel in enumerate(panels):
        sheet.paste(panel.convert("RGB"), (k * (w + GAP), 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)
    return sheet.size


def render_head(bundle: Path, out: Path, photo: Path | None = None, engine: str = "WORKBENCH",
                height: int = 384, samples: int = 16,
                presets: tuple[str, ...] = ()) -> tuple[int, int]:
    """Import ``bundle`` into an empty scene, render it (as captured, then once per preset
    added to the captured face) and write the composed PNG ``out``.

    Returns:
        (width, height) of the written PNG.
    """
    import bpy

    result_path = bundle / "result.json"
    if not result_path.is_file():
        raise SystemExit(f"render_head: {bundle} has no result.json.")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    photo = find_photo(bundle, result, photo)
    if photo is not None and not photo.is_file():
        raise SystemExit(f"render_head: photo {photo} does not exist.")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    load_extension()
    bpy.ops.headrecon.import_bundle(filepath=str(result_path))
    arm = bpy.context.view_layer.objects.active
    setup_scene(bpy, arm, result, height, engine, samples)
    with tempfile.TemporaryDirectory(prefix="headrecon-render-") as tmp:
        renders = []
        for k, preset in enumerate((None,) + tuple(presets)):
            if preset is not None:
                bpy.ops.headrecon.reset_expression(target='CAPTURED')
                bpy.ops.headrecon.apply_preset(preset=preset, mode='ADD')
            renders.append(Path(tmp) / f"render_{k}.png")
            bpy.context.scene.render.filepath = str(renders[-1])
            bpy.ops.render.render(write_still=True)
        return compose(renders, photo, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="bundle folder (with result.json)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="PNG to write (default: BUNDLE/render.png)")
    parser.add_argument("--photo", type=Path, default=None, help="the photo (default: found in the bundle)")
    parser.add_argument("--engine", choices=("WORKBENCH", "CYCLES"), default="WORKBENCH")
    parser.add_argument("--height", type=int, default=384, help="render height in pixels")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples")
    parser.add_argument("--preset", action="append", default=[],
                        help="also render this expression preset (e.g. JAW_OPEN, BLINK, SMILE); repeatable")
    args = parser.parse_args(argv)
    out = args.output or args.bundle / "render.png"
    size = render_head(args.bundle, out, args.photo, args.engine, args.height, args.samples,
                       tuple(args.preset))
    print(f"render_head: wrote {out} ({size[0]}x{size[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
