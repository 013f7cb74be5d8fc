"""The extension in real Blender (bpy 5.0.1): build the zip, install, enable, import, check.

Isolation: ``BLENDER_USER_RESOURCES`` points at a temporary folder when this module is the
first to import bpy, and the zip is installed into a dedicated extensions repository in a
temporary folder in any case. Every test starts from factory settings and ends with the
extension disabled and factory settings again.

Numeric tolerances: the evaluated Blender mesh (float32, Armature modifier + driven
corrective keys) matches the numpy FLAME forward within 2e-5 m (eye correctives, which
the rig leaves out, are below 1e-6 m); driver values match FLAME's pose feature within 1e-5.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

if "BLENDER_USER_RESOURCES" not in os.environ:
    _USER_DIR = tempfile.mkdtemp(prefix="headrecon-blender-user-")
    atexit.register(shutil.rmtree, _USER_DIR, True)
    os.environ["BLENDER_USER_RESOURCES"] = _USER_DIR

import bpy  # noqa: E402
import addon_utils  # noqa: E402  (Blender's module, importable once bpy is)
import mathutils  # noqa: E402

from backend.files.bundle import flame_forward_np  # noqa: E402
from backend.files.obj import read_obj  # noqa: E402
from backend.model.flame import load_eyelid_deltas, load_flame  # noqa: E402
from headrecon_addon import eye_layout, naming, rig  # noqa: E402
from headrecon_addon.bundle import load_bundle  # noqa: E402

pytestmark = pytest.mark.blender

REPO_MODULE = "headrecon_tests"
EXT_MODULE = f"bl_ext.{REPO_MODULE}.headrecon"
MESH_TOL = 2e-5
DRIVER_TOL = 1e-5


# ----------------------------------------------------------------------------- fixtures


def _factory_reset() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def _ensure_repo(directory: Path) -> None:
    repos = bpy.context.preferences.extensions.repos
    if not any(r.module == REPO_MODULE for r in repos):
        repos.new(name="HeadRecon tests", module=REPO_MODULE, custom_directory=str(directory),
                  source='USER')


def _raise(exc: Exception) -> None:
    raise exc


@pytest.fixture(scope="module")
def ext_zip(tmp_path_factory, repo_root) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "build.py", "--output-dir", str(out)], cwd=repo_root,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip())


@pytest.fixture(scope="module")
def dev_bundle(tmp_path_factory, repo_root) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "dev"
    subprocess.run([sys.executable, "-m", "backend.files.bundle", "--dev", str(out), "--seed", "7"],
                   cwd=repo_root, check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def ext_repo(ext_zip, tmp_path_factory) -> Path:
    """The zip installed (not enabled) into a temporary extensions repository."""
    directory = tmp_path_factory.mktemp("extensions")
    _factory_reset()
    _ensure_repo(directory)
    assert bpy.ops.extensions.package_install_files(
        filepath=str(ext_zip), repo=REPO_MODULE, enable_on_install=False) == {'FINISHED'}
    assert (directory / "headrecon" / "blender_manifest.toml").is_file()
    yield directory
    _factory_reset()


@pytest.fixture
def ext(ext_repo):
    """The extension enabled in a fresh factory-settings session; disabled afterwards."""
    _factory_reset()
    _ensure_repo(ext_repo)
    module = addon_utils.enable(EXT_MODULE, default_set=True, handle_error=_raise)
    assert module is not None
    yield module
    addon_utils.disable(EXT_MODULE, default_set=True, handle_error=_raise)
    _factory_reset()


def _import(bundle: Path) -> tuple[bpy.types.Object, bpy.types.Object]:
    assert bpy.ops.headrecon.import_bundle(filepath=str(bundle / "result.json")) == {'FINISHED'}
    arm = bpy.context.view_layer.objects.active
    assert arm.type == 'ARMATURE'
    meshes = [c for c in arm.children if c.type == 'MESH' and c.get("headrecon_head")]
    assert len(meshes) == 1
    return arm, meshes[0]


def _evaluated(obj: bpy.types.Object) -> np.ndarray:
    """(V, 3) world coordinates of the evaluated mesh (modifiers, drivers, shape keys)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    depsgraph.update()
    ev = obj.evaluated_get(depsgraph)
    co = np.empty(len(ev.data.vertices) * 3, np.float32)
    ev.data.vertices.foreach_get("co", co)
    mat = np.array(ev.matrix_world)
    return co.reshape(-1, 3) @ mat[:3, :3].T + mat[:3, 3]


def _set_pose(arm: bpy.types.Object, pose: np.ndarray) -> None:
    """Pose every FLAME joint's bone from a (5, 3) FLAME axis-angle pose (XYZ Euler bones)."""
    bones = {b.name: b for b in rig.bone_layout(*_rest(arm))}
    for name, rot in rig.pose_rotations(pose, list(bones.values())).items():
        arm.pose.bones[name].rotation_euler = mathutils.Matrix(rot.tolist()).to_euler('XYZ')



def _rest(arm: bpy.types.Object) -> tuple:
    bundle = load_bundle(arm[naming.BUNDLE_PROP])
    return bundle.joints, bundle.v_neutral, bundle.weights


def _registered_names() -> set[str]:
    return {n for n in dir(bpy.types) if "HEADRECON" in n.upper()}


# ----------------------------------------------------------------------------- zip + registration


def test_zip_is_a_valid_extension_without_backend(ext_zip):
    import tomllib
    import zipfile

    with zipfile.ZipFile(ext_zip) as zf:
        names = zf.namelist()
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode())
    assert "__init__.py" in names and "builder/armature.py" in names
    assert "headrecon_addon/rig.py" in names and "operators/import_bundle.py" in names
    assert not [n for n in names if n.split("/")[0] in ("backend", "tests", "weights", "benchmarks")]
    assert not [n for n in names if n.endswith((".pyc", ".npz", ".pkl"))]
    assert manifest["schema_version"] == "1.0.0" and manifest["id"] == "headrecon"
    assert manifest["blender_version_min"] == "4.2.0"
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    assert manifest["permissions"] and all(len(r) > 10 for r in manifest["permissions"].values())


def test_enable_and_disable_leave_nothing_behind(ext_repo):
    _factory_reset()
    _ensure_repo(ext_repo)
    menu = bpy.types.TOPBAR_MT_file_import
    handlers = {n: len(getattr(bpy.app.handlers, n)) for n in dir(bpy.app.handlers)
                if isinstance(getattr(bpy.app.handlers, n), list)}
    before_types, before_menu = _registered_names(), list(menu._dyn_ui_initialize())
    assert bpy.ops.preferences.addon_enable(module=EXT_MODULE) == {'FINISHED'}
    try:
        assert EXT_MODULE in bpy.context.preferences.addons
        prefs = bpy.context.preferences.addons[EXT_MODULE].preferences
        assert prefs is not None and type(prefs).bl_idname == EXT_MODULE
        assert hasattr(bpy.types, "HEADRECON_OT_import_bundle")
        assert bpy.types.VIEW3D_PT_headrecon.bl_category == "HeadRecon"
        assert len(menu._dyn_ui_initialize()) == len(before_menu) + 1
        assert sys.modules[EXT_MODULE].__file__.startswith(str(ext_repo))
    finally:
        assert bpy.ops.preferences.addon_disable(module=EXT_MODULE) == {'FINISHED'}
    assert EXT_MODULE not in bpy.context.preferences.addons
    assert _registered_names() == before_types
    assert not hasattr(bpy.types, "VIEW3D_PT_headrecon")
    assert list(menu._dyn_ui_initialize()) == before_menu
    assert handlers == {n: len(getattr(bpy.app.handlers, n)) for n in handlers}
    _factory_reset()


# ----------------------------------------------------------------------------- import


def test_import_builds_the_head(ext, dev_bundle):
    bundle = load_bundle(dev_bundle)
    arm, mesh_obj = _import(dev_bundle)
    mesh = mesh_obj.data
    # collection named after the photo, holding both objects
    coll = bpy.data.collections["dev_seed7"]
    mouth = {c for c in arm.children if c.type == 'MESH' and c is not mesh_obj}
    assert len(mouth) == 4  # teeth (2), tongue, cavity
    assert set(coll.objects) == {arm, mesh_obj} | mouth and coll.name in bpy.context.scene.collection.children
    assert arm.get(naming.HEAD_PROP) == 1 and mesh_obj.get(naming.HEAD_PROP) == 1
    np.testing.assert_allclose(arm[naming.ROOT_POSE_PROP], bundle.pose[0], atol=1e-6)
    # mesh: FLAME topology, UVs, smooth, the neutral identity as Basis
    assert len(mesh.vertices) == 5023 and len(mesh.polygons) == 9976
    assert all(p.loop_total == 3 for p in mesh.polygons)
    assert not mesh.validate(verbose=False)  # nothing to fix
    loops = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", loops)
    np.testing.assert_array_equal(loops.reshape(-1, 3), bundle.faces)
    uv = np.empty(len(mesh.loops) * 2, np.float32)
    mesh.uv_layers[naming.UV_MAP].data.foreach_get("uv", uv)
    np.testing.assert_allclose(uv.reshape(-1, 2), bundle.uv[bundle.uv_faces.ravel()], atol=1e-7)
    assert all(p.use_smooth for p in mesh.polygons)
    # shape keys
    keys = mesh.shape_keys.key_blocks
    assert [k.name for k in keys] == naming.shape_key_names(50, mouth=True)
    assert len(keys) == 1 + 50 + 2 + 1 + 1 + 18  # + tongueOut (the mouth interior)
    basis = np.empty(5023 * 3, np.float32)
    keys["Basis"].data.foreach_get("co", basis)
    np.testing.assert_allclose(basis.reshape(-1, 3), rig.flame_to_blender(bundle.v_neutral), atol=1e-7)
    captured = np.empty(5023 * 3, np.float32)
    keys["Captured"].data.foreach_get("co", captured)
    expected = np.einsum("e,evc->vc", bundle.expression, bundle.expr_deltas)
    np.testing.assert_allclose(captured.reshape(-1, 3) - basis.reshape(-1, 3),
                               rig.flame_to_blender(expected), atol=1e-6)
    assert keys["Captured"].value == 1.0 and keys["Exp000"].value == 0.0
    np.testing.assert_allclose([keys["EyeBlink_L"].value, keys["EyeBlink_R"].value],
                               bundle.eyelids, atol=1e-6)
    blink_l = np.empty(5023 * 3, np.float32)
    keys["EyeBlink_L"].data.foreach_get("co", blink_l)
    moved = np.abs(blink_l.reshape(-1, 3) - basis.reshape(-1, 3)).max(1) > 1e-4
    assert moved.any() and (basis.reshape(-1, 3)[moved, 0] > 0).all()  # subject's left = +X
    # armature: six deform bones at the joints with the rig's exact rest frames
    bones = arm.data.bones
    assert [b.name for b in bones] == list(naming.BONE_NAMES) and all(b.use_deform for b in bones)
    for spec in rig.bone_layout(bundle.joints, bundle.v_neutral, bundle.weights):
        local = np.array(bones[spec.name].matrix_local)
        np.testing.assert_allclose(local[:3, :3], rig.FLAME_TO_BLENDER @ spec.frame, atol=1e-6)
        np.testing.assert_allclose(local[:3, 3], rig.flame_to_blender(spec.head), atol=1e-6)
        assert (bones[spec.name].parent.name if bones[spec.name].parent else None) == spec.parent
    # skin: one group per bone, weights sum to one per vertex, an Armature modifier
    assert [g.name for g in mesh_obj.vertex_groups] == list(naming.BONE_NAMES)
    total = np.zeros(5023)
    for v in mesh.vertices:
        total[v.index] = sum(g.weight for g in v.groups)
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
    mods = [m for m in mesh_obj.modifiers if m.type == 'ARMATURE']
    assert len(mods) == 1 and mods[0].object == arm and mesh_obj.parent == arm
    # the photo's pose on the pose bones (root left at rest)
    for joint, bone in naming.JOINT_TO_BONE.items():
        pbone = arm.pose.bones[bone]
        rot = np.array(pbone.rotation_euler.to_matrix())
        spec = next(s for s in rig.bone_layout(bundle.joints, bundle.v_neutral, bundle.weights)
                    if s.name == bone)
        want = np.zeros(3) if joint == "root" else bundle.pose[naming.FLAME_JOINTS.index(joint)]
        np.testing.assert_allclose(spec.frame @ rot @ spec.frame.T, rig.axis_angle_to_matrix(want),
                                   atol=1e-6)
    # material: Principled BSDF with the texture on Base Color
    mat = mesh.materials[0]
    bsdf = next(n for n in mat.node_tree.nodes if n.bl_idname == 'ShaderNodeBsdfPrincipled')
    link = bsdf.inputs["Base Color"].links[0]
    assert link.from_node.bl_idname == 'ShaderNodeTexImage'
    assert Path(link.from_node.image.filepath).name == "texture.png"
    assert tuple(link.from_node.image.size) == (512, 512)


def test_import_leaves_the_users_scene_alone(ext, dev_bundle):
    bpy.ops.mesh.primitive_cube_add(location=(1.0, 2.0, 3.0))
    cube = bpy.context.active_object
    mat = bpy.data.materials.new("dev_seed7_skin")
    cube.data.materials.append(mat)
    cube.keyframe_insert("location", frame=1)
    action = cube.animation_data.action
    taken = bpy.data.collections.new("dev_seed7")
    bpy.context.scene.collection.children.link(taken)
    taken.objects.link(cube)
    before = {
        "objects": {o.name for o in bpy.data.objects}, "materials": {m.name for m in bpy.data.materials},
        "actions": {a.name for a in bpy.data.actions}, "matrix": [list(r) for r in cube.matrix_world],
        "verts": [tuple(v.co) for v in cube.data.vertices], "coll": set(taken.objects),
        "mat_nodes": len(mat.node_tree.nodes),
    }
    arm, mesh_obj = _import(dev_bundle)
    mouth = {c.name for c in arm.children if c.type == 'MESH' and c is not mesh_obj}
    assert {o.name for o in bpy.data.objects} == before["objects"] | {arm.name, mesh_obj.name} | mouth
    assert before["materials"] < {m.name for m in bpy.data.materials}
    assert {a.name for a in bpy.data.actions} == before["actions"]
    assert cube.name in before["objects"] and cube.data.materials[0] == mat and mat.name == "dev_seed7_skin"
    assert len(mat.node_tree.nodes) == before["mat_nodes"]
    assert [list(r) for r in cube.matrix_world] == before["matrix"]
    assert [tuple(v.co) for v in cube.data.vertices] == before["verts"]
    assert cube.animation_data.action == action and set(taken.objects) == before["coll"]
    assert taken.name == "dev_seed7" and arm.users_collection[0].name == "dev_seed7.001"
    assert mesh_obj.data.materials[0].name == "dev_seed7_skin.001"


def test_jaw_rotation_opens_the_mouth(ext, dev_bundle):
    bundle = load_bundle(dev_bundle)
    arm, mesh_obj = _import(dev_bundle)
    _set_pose(arm, np.zeros((5, 3)))
    rest = _evaluated(mesh_obj)
    chin = bundle.weights[:, 2] > 0.9  # vertices moved by the jaw alone
    arm.pose.bones["jaw"].rotation_euler = (0.3, 0.0, 0.0)
    opened = _evaluated(mesh_obj)
    drop = rest[chin, 2] - opened[chin, 2]  # Blender Z is up
    assert drop.mean() > 0.01 and (drop > 0).mean() > 0.95
    top = bundle.v_neutral[:, 1] > bundle.joints[3, 1] + 0.03  # forehead and scalp
    assert np.linalg.norm(opened[top] - rest[top], axis=1).max() < 0.1 * drop.mean()
    assert mesh_obj.data.shape_keys.key_blocks["PC_jaw_22"].value < -0.04  # cos(0.3) - 1


def test_correctives_follow_the_jaw_and_neck_through_drivers(ext, dev_bundle):
    arm, mesh_obj = _import(dev_bundle)
    shape_keys = mesh_obj.data.shape_keys
    drivers = {d.data_path: d for d in shape_keys.animation_data.drivers}
    assert len(drivers) == 18
    for fcurve in drivers.values():
        assert fcurve.driver.is_valid and fcurve.driver.is_simple_expression
        assert len(fcurve.keyframe_points) == 0 and len(fcurve.modifiers) == 0
    # animate jaw and neck (and keep other bones at rest), then scrub the timeline
    bones = rig.bone_layout(*_rest(arm))
    frames = {1: np.array([0.0, 0.0, 0.0]), 11: np.array([0.35, -0.1, 0.05])}
    necks = {1: np.array([0.2, 0.3, -0.1]), 11: np.array([-0.15, 0.0, 0.25])}
    for frame in frames:
        pose = np.zeros((5, 3))
        pose[1], pose[2] = necks[frame], frames[frame]
        _set_pose(arm, pose)
        for name in ("neck", "jaw"):
            arm.pose.bones[name].keyframe_insert("rotation_euler", frame=frame)
    for frame in (1, 4, 11):
        bpy.context.scene.frame_set(frame)
        _evaluated(mesh_obj)
        for name, flame_joint in (("neck", 1), ("jaw", 2)):
            spec = next(b for b in bones if b.name == name)
            local = np.array(arm.pose.bones[name].rotation_euler.to_matrix())
            feature = spec.frame @ local @ spec.frame.T - np.eye(3)
            for row in range(3):
                for col in range(3):
                    key = shape_keys.key_blocks[naming.corrective_key(naming.FLAME_JOINTS[flame_joint], row, col)]
                    assert key.value == pytest.approx(feature[row, col], abs=DRIVER_TOL)
        if frame == 4:  # an in-between frame really is in between
            assert 0 < arm.pose.bones["jaw"].rotation_euler.x < 0.35


def test_evaluated_mesh_matches_flame(ext, dev_bundle, dev_model_path, assets_dir):
    """Blender's evaluated mesh equals the numpy FLAME forward (mesh.obj and a random pose)."""
    result = json.loads((dev_bundle / "result.json").read_text())
    arm, mesh_obj = _import(dev_bundle)
    pose = np.array([result["pose"][n] for n in naming.FLAME_JOINTS])
    _set_pose(arm, pose)  # the import leaves the root at rest; mesh.obj includes it
    mesh_ref = read_obj(dev_bundle / "mesh.obj").verts
    np.testing.assert_allclose(_evaluated(mesh_obj), rig.flame_to_blender(mesh_ref), atol=MESH_TOL)
    model, eyelid_deltas = load_flame(dev_model_path), load_eyelid_deltas(assets_dir)
    rng = np.random.default_rng(11)
    keys = mesh_obj.data.shape_keys.key_blocks
    expression = rng.normal(0.0, 1.0, 50)
    for k, value in enumerate(expression):
        keys[naming.expression_key(k)].value = value
    keys["Captured"].value = 0.0
    keys["EyeBlink_L"].value, keys["EyeBlink_R"].value = 0.7, 0.2
    pose = rng.normal(0.0, 0.25, (5, 3))
    _set_pose(arm, pose)
    ref = flame_forward_np(model, result["identity"], expression, pose, np.array([0.7, 0.2]),
                           eyelid_deltas)
    np.testing.assert_allclose(_evaluated(mesh_obj), rig.flame_to_blender(ref.vertices), atol=MESH_TOL)


def test_head_bone_turns_the_skull_only(ext, dev_bundle):
    bundle = load_bundle(dev_bundle)
    arm, mesh_obj = _import(dev_bundle)
    rest = _evaluated(mesh_obj)
    arm.pose.bones["head"].rotation_euler = (0.0, 0.0, 0.4)
    turned = _evaluated(mesh_obj)
    moved = np.linalg.norm(turned - rest, axis=1)
    groups = rig.bone_weights(bundle.weights)
    skull = groups["head"] > 0.99
    assert skull.sum() > 1000 and np.median(moved[skull]) > 0.01
    # linear blend skinning: only the weight on 'head' and its children (jaw, eyes) moves a
    # vertex, by at most that weight times the largest displacement (0.4 rad * 0.3 m)
    following = groups["head"] + bundle.weights[:, 2:].sum(1)
    assert (moved <= following * 0.4 * 0.3 + 1e-6).all()
    assert np.median(moved[groups["head"] == 0]) < 0.5 * np.median(moved[skull])


def _maps_bundle(dev_bundle: Path, folder: Path, normal: bool) -> Path:
    from PIL import Image

    shutil.copytree(dev_bundle, folder)
    Image.new("RGB", (64, 64), (200, 150, 120)).save(folder / "albedo.png")
    Image.new("I;16", (64, 64), 32768).save(folder / "displacement.png")
    result = json.loads((folder / "result.json").read_text())
    result["files"].update(albedo="albedo.png", displacement_png="displacement.png")
    if normal:
        Image.new("RGB", (64, 64), (128, 128, 255)).save(folder / "normal.png")
        result["files"]["normal"] = "normal.png"
    result["detail"] = {"displacement": {"blender_displace": {"midlevel": 0.5, "strength": 0.002}}}
    (folder / "result.json").write_text(json.dumps(result))
    return folder


def test_material_uses_albedo_and_one_source_of_detail(ext, dev_bundle, tmp_path):
    """Normal map on the BSDF, the displacement node left unlinked (never both: issue 14);
    every image packed into the .blend, so the saved file survives the bundle's removal."""
    folder = _maps_bundle(dev_bundle, tmp_path / "maps", normal=True)
    _, mesh_obj = _import(folder)
    mat = mesh_obj.data.materials[0]
    nodes = mat.node_tree.nodes
    bsdf = next(n for n in nodes if n.bl_idname == 'ShaderNodeBsdfPrincipled')
    out = next(n for n in nodes if n.bl_idname == 'ShaderNodeOutputMaterial')
    assert Path(bsdf.inputs["Base Color"].links[0].from_node.image.filepath).name == "albedo.png"
    normal_map = bsdf.inputs["Normal"].links[0].from_node
    assert normal_map.bl_idname == 'ShaderNodeNormalMap' and normal_map.uv_map == naming.UV_MAP
    normal_tex = normal_map.inputs["Color"].links[0].from_node
    assert normal_tex.image.colorspace_settings.name == 'Non-Color'
    assert not out.inputs["Displacement"].links
    disp = next(n for n in nodes if n.bl_idname == 'ShaderNodeDisplacement')
    assert not disp.outputs["Displacement"].links
    assert disp.inputs["Scale"].default_value == pytest.approx(0.002)
    assert disp.inputs["Height"].links[0].from_node.image.colorspace_settings.name == 'Non-Color'
    images = [n.image for n in nodes if n.bl_idname == 'ShaderNodeTexImage']
    assert len(images) == 3 and all(im.packed_file is not None for im in images)
    blend = tmp_path / "saved" / "head.blend"
    blend.parent.mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
    shutil.rmtree(folder)
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    reopened = {im.name: im for im in bpy.data.images if im.packed_file is not None}
    skin = ("albedo.png", "displacement.png", "normal.png")
    assert set(reopened) == set(skin) | {"teeth.png", "tongue.png"}  # the mouth's are packed too
    assert all(tuple(reopened[name].size) == (64, 64) for name in skin)


def test_material_without_normal_map_bumps_the_displacement(ext, dev_bundle, tmp_path):
    folder = _maps_bundle(dev_bundle, tmp_path / "bump", normal=False)
    _, mesh_obj = _import(folder)
    mat = mesh_obj.data.materials[0]
    nodes = mat.node_tree.nodes
    bsdf = next(n for n in nodes if n.bl_idname == 'ShaderNodeBsdfPrincipled')
    out = next(n for n in nodes if n.bl_idname == 'ShaderNodeOutputMaterial')
    assert not bsdf.inputs["Normal"].links
    assert out.inputs["Displacement"].links[0].from_node.bl_idname == 'ShaderNodeDisplacement'
    assert mat.displacement_method == 'BUMP'


def test_broken_bundle_reports_one_sentence_and_creates_nothing(ext, dev_bundle, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(dev_bundle, folder)
    (folder / "rig.npz").unlink()
    counts = (len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.collections))
    with pytest.raises(RuntimeError, match=r"lists rig file rig\.npz but .* does not exist\."):
        bpy.ops.headrecon.import_bundle(filepath=str(folder / "result.json"))
    assert (len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.collections)) == counts


def test_pose_panel_shows_for_a_head(ext, dev_bundle):
    panel = bpy.types.VIEW3D_PT_headrecon_pose
    assert not panel.poll(bpy.context)
    arm, mesh_obj = _import(dev_bundle)
    assert panel.poll(bpy.context)
    bpy.context.view_layer.objects.active = mesh_obj
    assert panel.poll(bpy.context)
    assert bpy.ops.headrecon.import_bundle.poll()
    bpy.ops.object.mode_set(mode='EDIT')
    assert not bpy.ops.headrecon.import_bundle.poll()  # importing needs Object Mode
    bpy.ops.object.mode_set(mode='OBJECT')


def test_failed_build_removes_what_it_created(ext, dev_bundle):
    """A stage that fails (here: the material stage, on a missing image) leaves no trace."""
    builder = sys.modules[f"{EXT_MODULE}.builder"]
    bundle = sys.modules[f"{EXT_MODULE}.headrecon_addon.bundle"].load_bundle(dev_bundle)
    bundle.images["texture"] = dev_bundle / "missing.png"
    bpy.ops.mesh.primitive_cube_add()
    cube = bpy.context.active_object
    blocks = {n: len(getattr(bpy.data, n)) for n in
              ("objects", "meshes", "armatures", "materials", "images", "collections", "shape_keys")}
    with pytest.raises(RuntimeError, match="missing.png"):
        builder.build_head(bpy.context, bundle)
    assert {n: len(getattr(bpy.data, n)) for n in blocks} == blocks
    assert bpy.context.view_layer.objects.active == cube and bpy.context.mode == 'OBJECT'


def test_eyeballs_get_their_own_material_and_follow_the_eye_bones(ext, dev_bundle, tmp_path):
    """Issue 14 part 2 (Blender side): eyeball faces use the eye material (iris colour from
    result.json's iris_color), the eye UV map puts the pupil at the eyeball's front pole, and
    a turned eye bone moves its eyeball."""
    folder = tmp_path / "eyes"
    shutil.copytree(dev_bundle, folder)
    result = json.loads((folder / "result.json").read_text())
    result["iris_color"] = [0.2, 0.4, 0.7]
    (folder / "result.json").write_text(json.dumps(result))
    arm, mesh_obj = _import(folder)
    mesh = mesh_obj.data
    assert [m.name.rsplit("_", 1)[-1] for m in mesh.materials] == ["skin", "eyes"]
    index = np.empty(len(mesh.polygons), np.int32)
    mesh.polygons.foreach_get("material_index", index)
    verts = np.array([list(p.vertices) for p in mesh.polygons])
    eye_faces = ((verts >= 3931) & (verts < 5023)).all(axis=1)
    assert eye_faces.sum() > 1000 and (index == eye_faces).all()
    ramp = next(n for n in mesh.materials[1].node_tree.nodes if n.bl_idname == 'ShaderNodeValToRGB')
    iris = ramp.color_ramp.evaluate(0.5 * 24.0 / 180.0)[:3]
    assert iris[2] > iris[1] > iris[0]  # blue iris
    assert max(ramp.color_ramp.evaluate(0.01)[:3]) < 0.02  # pupil
    uv = np.empty(len(mesh.loops) * 2, np.float32)
    mesh.uv_layers[naming.EYE_UV_MAP].data.foreach_get("uv", uv)
    uv = uv.reshape(-1, 2)
    loops_v = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", loops_v)
    co = np.array([v.co[:] for v in mesh.vertices])
    front = 3931 + int(np.argmin(co[3931:4477, 1]))  # most -Y: the left eye's front pole
    assert np.linalg.norm(uv[loops_v == front] - 0.5, axis=1).max() < 0.05
    assert mesh.uv_layers[naming.UV_MAP].active_render

    def eyeball(start: int, stop: int) -> np.ndarray:
        ev = mesh_obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data.vertices
        return np.array([ev[i].co[:] for i in range(start, stop)])

    before = eyeball(3931, 4477)
    arm.pose.bones["eye.L"].rotation_euler[2] += 0.3
    bpy.context.view_layer.update()
    moved = np.linalg.norm(eyeball(3931, 4477) - before, axis=1)
    assert moved.max() > 1e-3


def _hue_deg(rgb: np.ndarray) -> float:
    """CIELAB hue angle (degrees) of one sRGB colour (0..1)."""
    from backend.appearance.eye_texture import hue_deg, srgb_to_lab

    return hue_deg(srgb_to_lab(np.asarray(rgb, np.float64)))


def test_eye_texture_is_packed_mapped_and_rendered_with_the_iris_hue(ext, dev_bundle, tmp_path,
                                                                      assets_dir):
    """Issue 14 part 2: a bundle with eye.png (tinted blue by the backend) gets an eye material
    reading that image (packed) through the eye UV map, glossy with a clear coat; the texture
    sampled through the imported mesh's UVs and a small Cycles render of the left eyeball both
    show the blue iris around a dark pupil; the eyes still follow the eye bones."""
    from PIL import Image

    from backend.appearance import eye_texture as et

    folder = tmp_path / "eyes"
    shutil.copytree(dev_bundle, folder)
    target = (0.2, 0.4, 0.7)
    rgb, _ = et.eye_texture(list(target), et.setup_eye_textures(assets_dir, tmp_path / "w"))
    Image.fromarray(rgb).save(folder / "eye.png")
    result = json.loads((folder / "result.json").read_text())
    result["files"]["eye"], result["iris_color"] = "eye.png", list(target)
    (folder / "result.json").write_text(json.dumps(result))
    arm, mesh_obj = _import(folder)
    mesh = mesh_obj.data
    material = mesh.materials[1]
    nodes = material.node_tree.nodes
    tex = next(n for n in nodes if n.bl_idname == 'ShaderNodeTexImage')
    assert tex.image.packed_file is not None and tex.image.size[:] == (et.SIZE, et.SIZE)
    uv_node = tex.inputs["Vector"].links[0].from_node
    assert uv_node.bl_idname == 'ShaderNodeUVMap' and uv_node.uv_map == naming.EYE_UV_MAP
    bsdf = tex.outputs["Color"].links[0].to_node
    assert bsdf.bl_idname == 'ShaderNodeBsdfPrincipled'
    assert bsdf.inputs["Roughness"].default_value <= 0.1 and bsdf.inputs["Coat Weight"].default_value == 1.0
    assert not any(n.bl_idname == 'ShaderNodeValToRGB' for n in nodes)

    # The packed image sampled through the mesh's eye UVs (rest mesh, FLAME frame).
    pixels = np.empty(et.SIZE * et.SIZE * 4, np.float32)
    tex.image.pixels.foreach_get(pixels)
    pixels = pixels.reshape(et.SIZE, et.SIZE, 4)  # Blender: row 0 at the bottom (V = 0)
    uv = np.empty(len(mesh.loops) * 2, np.float32)
    mesh.uv_layers[naming.EYE_UV_MAP].data.foreach_get("uv", uv)
    uv = uv.reshape(-1, 2)
    loops_v = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", loops_v)
    co = np.array([v.co[:] for v in mesh.vertices]) @ rig.FLAME_TO_BLENDER  # -> FLAME frame
    texel = pixels[np.clip((uv[:, 1] * et.SIZE).astype(int), 0, et.SIZE - 1),
                   np.clip((uv[:, 0] * et.SIZE).astype(int), 0, et.SIZE - 1), :3]
    for start, stop in naming.EYEBALL_VERTEX_RANGES:
        centre, radius = eye_layout.fit_sphere(co[start:stop])
        mine = (loops_v >= start) & (loops_v < stop)
        d = co[loops_v[mine]] - centre
        off_axis = np.hypot(d[:, 0], d[:, 1]) / (eye_layout.IRIS_DIAMETER_M / 2)
        front = d[:, 2] > 0
        assert texel[mine][front & (off_axis < 0.15)].max() < 0.1  # pupil (byte image: sRGB)
        iris = np.median(texel[mine][front & (off_axis > 0.45) & (off_axis < 0.8)], axis=0)
        assert abs(_hue_deg(iris) - _hue_deg(target)) < 10.0
        assert np.median(texel[mine][front & (off_axis > 1.3)].mean(axis=1)) > 0.3  # sclera

    # A 64 px Cycles render straight at the left eyeball (only the eyeballs: Mask modifier).
    group = mesh_obj.vertex_groups.new(name="eyeballs_only")
    group.add(list(range(3931, 5023)), 1.0, 'REPLACE')
    mask = mesh_obj.modifiers.new("eyes_only", 'MASK')
    mask.vertex_group = group.name
    world_co = _evaluated(mesh_obj)[:546]  # masked: the eyeballs only, the left one first
    centre, radius = eye_layout.fit_sphere(world_co)
    forward = world_co[np.argmax(world_co @ np.array([0.0, -1.0, 0.0]))] - centre
    forward /= np.linalg.norm(forward)
    scene = bpy.context.scene
    cam = bpy.data.objects.new("eye_cam", bpy.data.cameras.new("eye_cam"))
    cam.data.type, cam.data.ortho_scale = 'ORTHO', 2.4 * radius
    cam.data.clip_start = 0.001
    cam.matrix_world = mathutils.Matrix.Translation(mathutils.Vector(centre + 0.05 * forward)) @ (
        mathutils.Vector(forward).to_track_quat('Z', 'Y').to_matrix().to_4x4())  # looks down -Z
    scene.collection.objects.link(cam)
    scene.camera = cam
    world = bpy.data.worlds.new("white")
    if world.node_tree is None:
        world.use_nodes = True
    next(n for n in world.node_tree.nodes if n.bl_idname == 'ShaderNodeBackground').inputs[
        "Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    scene.world = world
    render = scene.render
    render.engine, render.resolution_x, render.resolution_y = 'CYCLES', 64, 64
    render.resolution_percentage, render.film_transparent = 100, True
    scene.cycles.samples, scene.cycles.device, scene.cycles.use_denoising = 8, 'CPU', False
    scene.view_settings.view_transform = 'Standard'
    render.image_settings.file_format = 'PNG'
    render.filepath = str(tmp_path / "eye_render.png")
    bpy.ops.render.render(write_still=True)
    shot = np.asarray(Image.open(tmp_path / "eye_render.png").convert("RGBA")).astype(np.float64) / 255
    yy, xx = np.mgrid[0:64, 0:64]
    iris_px = eye_layout.IRIS_DIAMETER_M / 2 * 64 / (2.4 * radius)  # about 12
    r = np.hypot(xx + 0.5 - 32, yy + 0.5 - 32) / iris_px
    ring = shot[(r > 0.45) & (r < 0.8), :3]
    # Dark pupil in the middle (the clear coat mirrors the white sky over everything: ~0.3)
    assert shot[r < 0.15, :3].mean() < 0.4 and shot[r < 0.15, 2].mean() < ring[:, 2].mean() - 0.15
    assert abs(_hue_deg(np.median(ring, axis=0)) - _hue_deg(target)) < 15.0
    sclera = shot[(r > 1.3) & (r < 1.7) & (shot[..., 3] > 0.9), :3]
    assert sclera.mean() > ring.mean() + 0.15 and sclera.std(axis=1).mean() < 0.08  # light, grey

    before = _evaluated(mesh_obj)  # the Mask modifier keeps the eyeballs, left one first
    arm.pose.bones["eye.L"].rotation_euler[2] += 0.3
    bpy.context.view_layer.update()
    moved = np.linalg.norm(_evaluated(mesh_obj) - before, axis=1)
    assert moved[:546].max() > 1e-3 and moved[546:].max() < 1e-6
