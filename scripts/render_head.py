"""Render an imported head from the photo's camera, in the background, beside the photo.

Usage::

    python scripts/render_head.py BUNDLE [-o OUT.png] [--photo PHOTO] [--engine WORKBENCH|CYCLES|EEVEE]
                                  [--height 384] [--samples 16] [--preset JAW_OPEN ...]
                                  [--preset-mode ADD|REPLACE] [--no-crop]
                                  [--capture CAPTURE.json ...] [--only-captures] [--columns N]
                                  [--denoise] [--keep-renders DIR] [--frame head|eyes|mouth]

Runs Blender as a Python module (bpy): the extension is registered straight from this
checkout, the bundle is imported with ``headrecon.import_bundle`` and rendered through the
fitted pinhole camera (``result.json`` camera, root rotation and translation; see
docs/ARCHITECTURE.md "Coordinates and camera"), so the render lines up with the photo.
The PNG shows the photo, the render, the render laid over the photo (the photo is found
with ``--photo``, else by its file name in the bundle folder; without one only the renders
are written), then one render per ``--preset``: the expression preset added to the captured
face (``--preset-mode REPLACE``: on a neutral face) with the extension's own operators,
then one render per ``--capture``: a ``headrecon capture PHOTO --bundle BUNDLE -o X.json``
result (Expression from Photo) keyed on the neutral head as the add-on keys it (ARKit keys,
jaw and eyes; the head keeps the bundle's pose, so only the expression changes).
``--only-captures`` leaves out the photo and the as-captured render, ``--columns N`` wraps the
panels into rows of N. Every panel shows the same square region of the
photo around the head (``--frame eyes``: around both eyeballs, a close-up of the irises;
``--frame mouth``: around the lips, a close-up of teeth and tongue; ``--no-crop``: the whole
photo), ``--height`` pixels high.
Workbench (textured, studio light), or Cycles on the CPU or EEVEE (both: the same sky light
and key light; EEVEE runs headless here through Blender's EGL context, on a software OpenGL
driver when there is no GPU, so its first render compiles shaders for tens of seconds).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
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
CROP_MARGIN = 0.15  # of the head's projected size, on every side
EYES_MARGIN = 0.05  # --frame eyes: of the two eyeballs' projected size
MOUTH_MARGIN = 0.3  # --frame mouth: of the outer lip rings' projected size


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


def project(points: np.ndarray, root_pose: np.ndarray, translation: np.ndarray,
            root_joint: np.ndarray, camera: dict, rig: object) -> np.ndarray:
    """Pixel coordinates of FLAME-frame points posed by the root rotation and translation.

    Args:
        points: (N, 3) FLAME frame, root rotation not applied (as the imported head).
        camera: result.json ``camera`` (focal_px, principal_px).
    Returns:
        (N, 2) ``(u, v)``, origin top-left (docs/ARCHITECTURE.md projection).
    """
    rot = rig.axis_angle_to_matrix(root_pose)
    q = (points - root_joint) @ rot.T + root_joint + translation
    f, (cx, cy) = float(camera["focal_px"]), camera["principal_px"]
    return np.stack([cx + f * q[:, 0] / -q[:, 2], cy - f * q[:, 1] / -q[:, 2]], axis=1)


def crop_box(uv: np.ndarray, width: float, height: float,
             margin: float = CROP_MARGIN) -> tuple[float, float, float, float]:
    """Square region (x0, y0, x1, y1) of the image around projected points, padded by
    ``margin`` of their larger extent, moved (then clipped) to lie inside the image."""
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    side = min((1.0 + 2.0 * margin) * float((hi - lo).max()), width, height)
    centre = (lo + hi) / 2.0
    x0 = float(np.clip(centre[0] - side / 2.0, 0.0, width - side))
    y0 = float(np.clip(centre[1] - side / 2.0, 0.0, height - side))
    return x0, y0, x0 + side, y0 + side


def setup_scene(bpy: object, arm: object, mesh_obj: object, result: dict, height: int,
                engine: str, samples: int, crop: bool,
                denoise: bool = False, frame: str = "head") -> tuple[float, float, float, float]:
    """Camera with the bundle's intrinsics, the render region, the chosen engine
    (``denoise``: Cycles' OpenImageDenoise; ``frame``: "head", "eyes" for a square around
    FLAME's two eyeballs or "mouth" around the lips, as posed by the captured expression).

    Returns:
        The rendered region (x0, y0, x1, y1) in photo pixels.
    """
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
    root_pose, translation = np.array(arm[naming.ROOT_POSE_PROP]), np.array(arm[naming.TRANSLATION_PROP])
    camera.matrix_world = mathutils.Matrix(
        camera_matrix(root_pose, translation, root_joint, rig).tolist())
    scene.camera = camera
    box = (0.0, 0.0, width_px, height_px)
    if crop:
        verts = mesh_obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data.vertices
        co = np.empty(len(verts) * 3)
        verts.foreach_get("co", co)
        points = co.reshape(-1, 3) @ rig.FLAME_TO_BLENDER  # Blender -> FLAME (orthogonal map)
        margin = CROP_MARGIN
        if frame == "eyes" and len(points) == naming.FLAME_VERTEX_COUNT:
            (start, _), (_, stop) = naming.EYEBALL_VERTEX_RANGES
            points, margin = points[start:stop], EYES_MARGIN
        elif frame == "mouth" and len(points) == naming.FLAME_VERTEX_COUNT:
            from backend.model.mouth import LIP_RINGS  # numpy only; this script runs in the venv

            points = points[list(LIP_RINGS["outer_upper"] + LIP_RINGS["outer_lower"])]
            margin = MOUTH_MARGIN
        box = crop_box(project(points, root_pose, translation, root_joint, cam, rig),
                       width_px, height_px, margin)
    scale = height / (box[3] - box[1])  # output pixels per photo pixel
    render = scene.render
    render.resolution_x = max(1, round(width_px * scale))
    render.resolution_y = max(1, round(height_px * scale))
    render.resolution_percentage = 100
    render.use_border = render.use_crop_to_border = crop
    px = [round(v * scale) for v in box]
    render.border_min_x, render.border_max_x = px[0] / render.resolution_x, px[2] / render.resolution_x
    render.border_min_y = 1.0 - px[3] / render.resolution_y
    render.border_max_y = 1.0 - px[1] / render.resolution_y
    render.film_transparent = True
    render.image_settings.file_format = 'PNG'
    render.image_settings.color_mode = 'RGBA'
    scene.view_settings.view_transform = 'Standard'
    arm.hide_render = True
    if engine in ("CYCLES", "EEVEE"):
        if engine == "CYCLES":
            render.engine = 'CYCLES'
            scene.cycles.device = 'CPU'
            scene.cycles.samples = samples
            scene.cycles.use_denoising = denoise
            scene.cycles.denoiser = 'OPENIMAGEDENOISE'
        else:
            render.engine = 'BLENDER_EEVEE'
            scene.eevee.taa_render_samples = samples
            # Mesa's software OpenGL (no GPU here) filters textures anisotropically with dark
            # specks over the cheeks (measured: 8x the cheeks' high-frequency energy of the same
            # render with plain trilinear filtering); trilinear looks like Cycles.
            bpy.context.preferences.system.anisotropic_filter = 'FILTER_0'
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
        sun.data.use_shadow = True
        tilt = mathutils.Matrix.Rotation(np.radians(KEY_LIGHT_TILT_DEG), 4, 'X')
        sun.matrix_world = camera.matrix_world @ tilt
        scene.collection.objects.link(sun)
    else:
        render.engine = 'BLENDER_WORKBENCH'
        shading = scene.display.shading
        shading.light = 'STUDIO'
        shading.color_type = 'TEXTURE'
        scene.display.render_aa = '8'
    return tuple(v / scale for v in px)


def find_photo(bundle: Path, result: dict, explicit: Path | None) -> Path | None:
    """The photo: --photo, else the input photo's file name inside the bundle folder."""
    if explicit is not None:
        return explicit
    name = result.get("input", {}).get("photo")
    candidate = bundle / name if isinstance(name, str) and name else None
    return candidate if candidate is not None and candidate.is_file() else None


def compose(renders: list[Path], photo: Path | None, box: tuple[float, float, float, float],
            out: Path, columns: int = 0) -> tuple[int, int]:
    """Photo | first render | first render over the photo at ``OVERLAY_OPACITY`` | the other
    renders, on a dark background (without a photo: the renders only).

    Args:
        box: the rendered region (x0, y0, x1, y1) in photo pixels.
        columns: panels per row (0: one row).

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
        picture = Image.open(photo).convert("RGBA").resize(size, Image.LANCZOS, box=box)
        faded = np.asarray(images[0]).copy()
        faded[..., 3] = np.rint(faded[..., 3] * OVERLAY_OPACITY).astype(np.uint8)
        over = picture.copy()
        over.alpha_composite(Image.fromarray(faded, "RGBA"))
        panels = [picture, panels[0], over] + panels[1:]
    w, h = size
    cols = min(columns, len(panels)) if columns > 0 else len(panels)
    rows = -(-len(panels) // cols)
    sheet = Image.new("RGB", (cols * w + (cols - 1) * GAP, rows * h + (rows - 1) * GAP), BACKGROUND)
    for k, panel in enumerate(panels):
        sheet.paste(panel.convert("RGB"), ((k % cols) * (w + GAP), (k // cols) * (h + GAP)))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)
    return sheet.size


def render_head(bundle: Path, out: Path, photo: Path | None = None, engine: str = "WORKBENCH",
                height: int = 384, samples: int = 16, presets: tuple[str, ...] = (),
                crop: bool = True, preset_mode: str = "ADD", captures: tuple[Path, ...] = (),
                only_captures: bool = False, columns: int = 0, denoise: bool = False,
                keep_renders: Path | None = None, frame: str = "head") -> tuple[int, int]:
    """Import ``bundle`` into an empty scene, render it (as captured, then once per preset
    applied in ``preset_mode`` to the captured face, then once per capture JSON keyed on the
    neutral head) and write the composed PNG ``out``. ``keep_renders``: a folder that gets
    every panel's render as rendered (RGBA, transparent background): render_0.png, ...

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
    mesh_obj = next(c for c in arm.children if c.type == 'MESH')
    box = setup_scene(bpy, arm, mesh_obj, result, height, engine, samples, crop, denoise, frame)
    with tempfile.TemporaryDirectory(prefix="headrecon-render-") as tmp:
        renders = []
        for k, preset in enumerate((None,) + tuple(presets)):
            if preset is not None:
                bpy.ops.headrecon.reset_expression(target='CAPTURED')
                bpy.ops.headrecon.apply_preset(preset=preset, mode=preset_mode)
            renders.append(Path(tmp) / f"render_{k}.png")
            bpy.context.scene.render.filepath = str(renders[-1])
            bpy.ops.render.render(write_still=True)
        key_capture = sys.modules[f"{PACKAGE}.operators.capture_photo"].key_capture
        scene = bpy.context.scene
        for k, path in enumerate(captures):
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
            for fr in doc["frames"]:  # the expression only: the head keeps the bundle's pose
                fr["rotations"]["root"] = fr["rotations"]["neck"] = [0.0, 0.0, 0.0]
            bpy.ops.headrecon.reset_expression(target='NEUTRAL', head_pose=False)
            key_capture(arm, mesh_obj, doc, scene.frame_current)
            scene.frame_set(scene.frame_current)
            renders.append(Path(tmp) / f"capture_{k}.png")
            scene.render.filepath = str(renders[-1])
            bpy.ops.render.render(write_still=True)
        if keep_renders is not None:
            keep_renders.mkdir(parents=True, exist_ok=True)
            for path in renders:
                shutil.copyfile(path, keep_renders / path.name)
        if only_captures and captures:
            renders, photo = renders[-len(captures):], None
        return compose(renders, photo, box, out, columns)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="bundle folder (with result.json)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="PNG to write (default: BUNDLE/render.png)")
    parser.add_argument("--photo", type=Path, default=None, help="the photo (default: found in the bundle)")
    parser.add_argument("--engine", choices=("WORKBENCH", "CYCLES", "EEVEE"), default="WORKBENCH")
    parser.add_argument("--height", type=int, default=384, help="panel height in pixels")
    parser.add_argument("--samples", type=int, default=16, help="Cycles / EEVEE samples")
    parser.add_argument("--denoise", action="store_true", help="Cycles: OpenImageDenoise")
    parser.add_argument("--keep-renders", type=Path, default=None,
                        help="also write every render (RGBA) into this folder")
    parser.add_argument("--preset", action="append", default=[],
                        help="also render this expression preset (e.g. JAW_OPEN, BLINK, SMILE); repeatable")
    parser.add_argument("--preset-mode", choices=("ADD", "REPLACE"), default="ADD",
                        help="add the presets to the captured face (default) or replace it")
    parser.add_argument("--crop", action=argparse.BooleanOptionalAction, default=True,
                        help="render a square region around the head (default) or the whole photo")
    parser.add_argument("--capture", action="append", default=[], type=Path,
                        help="also render this `headrecon capture` JSON (Expression from Photo) "
                             "on the neutral head; repeatable")
    parser.add_argument("--only-captures", action="store_true",
                        help="show only the --capture renders (no photo, no as-captured render)")
    parser.add_argument("--columns", type=int, default=0, help="panels per row (0: one row)")
    parser.add_argument("--frame", choices=("head", "eyes", "mouth"), default="head",
                        help="what the square region shows: the head (default), both eyes or the mouth")
    args = parser.parse_args(argv)
    out = args.output or args.bundle / "render.png"
    size = render_head(args.bundle, out, args.photo, args.engine, args.height, args.samples,
                       tuple(args.preset), args.crop, args.preset_mode, tuple(args.capture),
                       args.only_captures, args.columns, args.denoise, args.keep_renders,
                       args.frame)
    print(f"render_head: wrote {out} ({size[0]}x{size[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
