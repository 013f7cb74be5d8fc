"""Writing the result bundle (docs/ARCHITECTURE.md, "Result bundle"); numpy at module level.

* :func:`write_obj`: triangle meshes with FLAME's UV layout (read back with ``files.obj.read_obj``).
* :func:`flame_forward_np`: FLAME in numpy (the paper's equations), the reference the
  Blender rig is checked against and the posing of the development bundle.
* :func:`rig_arrays` + :func:`write_rig_npz`: ``rig.npz``, everything the add-on needs.
* :func:`write_result_bundle`: the pipeline's bundle files (meshes, rig, images).
* ``python -m backend.files.bundle --dev OUT [--seed N]``: a complete bundle from random FLAME
  parameters of the model file (no photo), for developing and testing the add-on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import HeadReconError
from ..model.flame import FlameModelData

DEV_TEXTURE_RELPATH = "uv/mean_texture.jpg"


# What the writers need of a model: the arrays of ``FlameModelData`` (v_template (V,3),
# faces (F,3), shapedirs (V,3,S), exprdirs (V,3,E), posedirs (V,3,9*(J-1)), J_regressor (J,V),
# weights (V,J), parents (J,), name, joint_names); any object with those attributes does.
ModelArrays = FlameModelData


@dataclass
class FlameNumpyOutput:
    """Result of :func:`flame_forward_np` (FLAME frame, no translation).

    Attributes:
        vertices: (V, 3) posed mesh.
        joints: (J, 3) posed joints.
        rest_joints: (J, 3) joints of the identity, ``J_regressor @ (T + B_S beta)``.
        v_neutral: (V, 3) template + identity.
        v_shaped: (V, 3) template + identity + expression + eyelids, before pose.
    """

    vertices: np.ndarray
    joints: np.ndarray
    rest_joints: np.ndarray
    v_neutral: np.ndarray
    v_shaped: np.ndarray


# ----------------------------------------------------------------------------- OBJ


def write_obj(path: str | os.PathLike[str], verts: np.ndarray, faces: np.ndarray,
              uv: np.ndarray | None = None, uv_faces: np.ndarray | None = None) -> Path:
    """Write a triangle mesh as Wavefront OBJ (1-based ``f v/vt`` records when UVs are given).

    Args:
        path: output file.
        verts: (V, 3) positions (metres).
        faces: (F, 3) 0-based vertex indices.
        uv: (T, 2) texture coordinates (v up) or None.
        uv_faces: (F, 3) 0-based indices into ``uv``; required with ``uv``.
    Returns:
        The path written.
    """
    verts = np.asarray(verts, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if verts.ndim != 2 or verts.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"write_obj needs (V,3) verts and (F,3) faces, got {verts.shape}, {faces.shape}")
    if (uv is None) != (uv_faces is None):
        raise ValueError("write_obj needs both uv and uv_faces or neither")
    lines = ["# HeadRecon"]
    lines += [f"v {x:.7g} {y:.7g} {z:.7g}" for x, y, z in verts]
    if uv is not None:
        uv = np.asarray(uv, dtype=np.float64)
        uv_faces = np.asarray(uv_faces, dtype=np.int64)
        if uv_faces.shape != faces.shape:
            raise ValueError(f"uv_faces {uv_faces.shape} must match faces {faces.shape}")
        lines += [f"vt {u:.7g} {v:.7g}" for u, v in uv]
        lines += [f"f {a}/{ta} {b}/{tb} {c}/{tc}" for (a, b, c), (ta, tb, tc)
                  in zip((faces + 1).tolist(), (uv_faces + 1).tolist())]
    else:
        lines += [f"f {a} {b} {c}" for a, b, c in (faces + 1).tolist()]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


# ----------------------------------------------------------------------------- FLAME in numpy


def rodrigues_np(axis_angle: np.ndarray) -> np.ndarray:
    """Axis-angle (..., 3) -> rotation matrices (..., 3, 3), float64."""
    r = np.asarray(axis_angle, dtype=np.float64)
    angle = np.linalg.norm(r, axis=-1, keepdims=True)
    k = r / np.where(angle < 1e-12, 1.0, angle)
    zero = np.zeros_like(k[..., 0])
    skew = np.stack([zero, -k[..., 2], k[..., 1], k[..., 2], zero, -k[..., 0],
                     -k[..., 1], k[..., 0], zero], axis=-1).reshape(*r.shape[:-1], 3, 3)
    s, c = np.sin(angle)[..., None], np.cos(angle)[..., None]
    return np.eye(3) + s * skew + (1.0 - c) * (skew @ skew)


def flame_forward_np(model: ModelArrays, shape: np.ndarray, expression: np.ndarray,
                     pose: np.ndarray, eyelids: np.ndarray | None = None,
                     eyelid_deltas: np.ndarray | None = None) -> FlameNumpyOutput:
    """FLAME (Li et al. 2017) for one head: blendshapes, pose correctives, linear blend skinning.

    ``T_P = T + B_S(beta) + B_E(psi) + B_P(theta)`` with ``B_P = posedirs @ flatten(R_j - I)``
    over joints 1..J-1, joints ``J = J_reg (T + B_S(beta))``, then
    ``v' = sum_j w_j G_j(theta, J) v`` with ``G_j`` the rest-relative world transform of joint j.

    Args:
        model: model arrays (see :class:`ModelArrays`).
        shape: (S',) identity coefficients, S' <= S.
        expression: (E',) expression coefficients, E' <= E.
        pose: (J, 3) axis-angle per joint (root, neck, jaw, eye_L, eye_R).
        eyelids: (2,) blink weights (subject's left, right) or None.
        eyelid_deltas: (2, V, 3), required with ``eyelids``.
    Returns:
        FlameNumpyOutput (float64 arrays).
    """
    shape = np.asarray(shape, np.float64)
    expression = np.asarray(expression, np.float64)
    v_neutral = model.v_template.astype(np.float64) + model.shapedirs[:, :, :len(shape)] @ shape
    v_shaped = v_neutral + model.exprdirs[:, :, :len(expression)] @ expression
    if eyelids is not None:
        if eyelid_deltas is None:
            raise ValueError("eyelids need eyelid_deltas")
        v_shaped = v_shaped + np.einsum("kvc,k->vc", eyelid_deltas, np.asarray(eyelids, np.float64))
    rest_joints = model.J_regressor.astype(np.float64) @ v_neutral
    rot = rodrigues_np(pose)
    feature = (rot[1:] - np.eye(3)).reshape(-1)
    v_posed = v_shaped + model.posedirs @ feature
    parents = [int(p) for p in model.parents]
    n_j = len(parents)
    world = np.zeros((n_j, 4, 4))
    for j in range(n_j):
        local = np.eye(4)
        local[:3, :3] = rot[j]
        local[:3, 3] = rest_joints[j] - (rest_joints[parents[j]] if parents[j] >= 0 else 0.0)
        world[j] = local if parents[j] < 0 else world[parents[j]] @ local
    skin = world.copy()
    skin[:, :3, 3] -= np.einsum("jrc,jc->jr", world[:, :3, :3], rest_joints)
    blended = np.einsum("vj,jrc->vrc", model.weights.astype(np.float64), skin)
    vertices = np.einsum("vrc,vc->vr", blended[:, :3, :3], v_posed) + blended[:, :3, 3]
    return FlameNumpyOutput(vertices=vertices, joints=world[:, :3, 3], rest_joints=rest_joints,
                            v_neutral=v_neutral, v_shaped=v_shaped)


# ----------------------------------------------------------------------------- rig.npz


def rig_arrays(model: ModelArrays, shape: np.ndarray, expression: np.ndarray, pose: np.ndarray,
               translation: np.ndarray, uv: np.ndarray, uv_faces: np.ndarray,
               eyelid_deltas: np.ndarray, eyelids: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The arrays of ``rig.npz`` for one fitted head (keyword arguments of :func:`write_rig_npz`).

    Args:
        model: model arrays; shape (S',) <= S identity and expression (E',) <= E coefficients
            (the bundle keeps the first E' expression components).
        pose: (J, 3) axis-angle; translation: (3,).
        uv: (T, 2), uv_faces: (F, 3) FLAME UV layout.
        eyelid_deltas: (2, V, 3) blink blendshapes (subject's left, right).
        eyelids: (2,) fitted blink weights or None (= 0).
    Returns:
        dict of numpy arrays named as in the rig.npz table.
    """
    shape = np.asarray(shape, np.float64).reshape(-1)
    expression = np.asarray(expression, np.float64).reshape(-1)
    v_neutral = model.v_template.astype(np.float64) + model.shapedirs[:, :, :len(shape)] @ shape
    return {
        "v_neutral": v_neutral,
        "faces": model.faces,
        "uv": uv,
        "uv_faces": uv_faces,
        "expr_deltas": np.moveaxis(model.exprdirs[:, :, :len(expression)], 2, 0),
        "expression": expression,
        "eyelid_deltas": eyelid_deltas,
        "eyelids": np.zeros(2) if eyelids is None else np.asarray(eyelids).reshape(2),
        "pose_deltas": np.moveaxis(model.posedirs, 2, 0),
        "joints": model.J_regressor.astype(np.float64) @ v_neutral,
        "parents": model.parents,
        "joint_names": np.asarray(model.joint_names),
        "weights": model.weights,
        "pose": np.asarray(pose).reshape(len(model.joint_names), 3),
        "translation": np.asarray(translation).reshape(3),
    }


def write_rig_npz(path: str | os.PathLike[str], *, v_neutral: np.ndarray, faces: np.ndarray,
                  uv: np.ndarray, uv_faces: np.ndarray, expr_deltas: np.ndarray,
                  expression: np.ndarray, eyelid_deltas: np.ndarray, pose_deltas: np.ndarray,
                  joints: np.ndarray, parents: np.ndarray, joint_names: np.ndarray,
                  weights: np.ndarray, pose: np.ndarray, translation: np.ndarray,
                  eyelids: np.ndarray | None = None, arkit_deltas: np.ndarray | None = None,
                  arkit_names: np.ndarray | None = None) -> Path:
    """Write ``rig.npz`` (uncompressed; float32, int32 and unicode arrays; no pickles).

    Args (FLAME frame, metres; V vertices, F faces, T UVs, E expressions, J joints, A ARKit):
        v_neutral: (V, 3) template + identity (the Basis key).
        faces: (F, 3); uv: (T, 2); uv_faces: (F, 3).
        expr_deltas: (E, V, 3) per unit coefficient; expression: (E,) fitted coefficients.
        eyelid_deltas: (2, V, 3) blink L, R (subject's left first); eyelids: (2,) weights.
        pose_deltas: (9*(J-1), V, 3) posedirs as (P, V, 3).
        joints: (J, 3) rest joints of the identity; parents: (J,); joint_names: (J,) str.
        weights: (V, J) skinning weights; pose: (J, 3) axis-angle; translation: (3,).
        arkit_deltas: (A, V, 3) and arkit_names: (A,) optional, together.
    Returns:
        The path written.
    Raises:
        ValueError: inconsistent shapes.
    """
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    i32 = lambda a: np.ascontiguousarray(a, dtype=np.int32)  # noqa: E731
    arrays: dict[str, np.ndarray] = {
        "v_neutral": f32(v_neutral), "faces": i32(faces), "uv": f32(uv), "uv_faces": i32(uv_faces),
        "expr_deltas": f32(expr_deltas), "expression": f32(expression),
        "eyelid_deltas": f32(eyelid_deltas),
        "eyelids": f32(np.zeros(2) if eyelids is None else eyelids),
        "pose_deltas": f32(pose_deltas), "joints": f32(joints), "parents": i32(parents),
        "joint_names": np.asarray([str(n) for n in joint_names]), "weights": f32(weights),
        "pose": f32(pose), "translation": f32(translation),
    }
    if (arkit_deltas is None) != (arkit_names is None):
        raise ValueError("arkit_deltas and arkit_names go together")
    if arkit_deltas is not None:
        arrays["arkit_deltas"] = f32(arkit_deltas)
        arrays["arkit_names"] = np.asarray([str(n) for n in arkit_names])
    n_v, n_j = arrays["v_neutral"].shape[0], arrays["joint_names"].shape[0]
    n_e, n_f = arrays["expr_deltas"].shape[0], arrays["faces"].shape[0]
    expected = {
        "v_neutral": (n_v, 3), "faces": (n_f, 3), "uv_faces": (n_f, 3),
        "expr_deltas": (n_e, n_v, 3), "expression": (n_e,), "eyelid_deltas": (2, n_v, 3),
        "eyelids": (2,), "pose_deltas": (9 * (n_j - 1), n_v, 3), "joints": (n_j, 3),
        "parents": (n_j,), "weights": (n_v, n_j), "pose": (n_j, 3), "translation": (3,),
    }
    if "arkit_deltas" in arrays:
        n_a = arrays["arkit_names"].shape[0]
        expected.update({"arkit_deltas": (n_a, n_v, 3), "arkit_names": (n_a,)})
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise ValueError(f"rig.npz {key} has shape {arrays[key].shape}, expected {shape}")
    if arrays["uv"].ndim != 2 or arrays["uv"].shape[1] != 2:
        raise ValueError(f"rig.npz uv has shape {arrays['uv'].shape}, expected (T, 2)")
    path = Path(path)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


# ----------------------------------------------------------------------------- images


def _image_u8(image: Any) -> np.ndarray:
    """(H, W, C) or (1, H, W, C) uint8 or float in [0, 1] (numpy or torch) -> (H, W, C) uint8."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"image must be (H, W, 1|3|4), got {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(arr.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    return arr[..., 0] if arr.shape[2] == 1 else arr


def write_png(path: str | os.PathLike[str], image: Any) -> Path:
    """Write an (H, W, C) image (uint8, or float in [0, 1]) as PNG; returns the path."""
    from PIL import Image

    path = Path(path)
    Image.fromarray(_image_u8(image)).save(path)
    return path


# ----------------------------------------------------------------------------- bundle


class _EngineLike(Protocol):
    """What :func:`write_result_bundle` needs of the pipeline's engine."""

    model: ModelArrays
    eyelid_deltas: np.ndarray
    uv: Any  # backend.model.uv.UVLayout: .uv (T, 2), .uv_faces (F, 3)


def write_head_files(out: str | os.PathLike[str], model: ModelArrays, uv: np.ndarray,
                     uv_faces: np.ndarray, eyelid_deltas: np.ndarray,
                     params: dict[str, np.ndarray],
                     arkit: tuple[list[str], np.ndarray] | None = None) -> dict[str, str]:
    """Write mesh.obj (posed, FLAME frame, no translation), neutral.obj and rig.npz into ``out``.

    Args:
        out: bundle folder (exists).
        model: model arrays; uv (T, 2) and uv_faces (F, 3): FLAME UV layout.
        eyelid_deltas: (2, V, 3) blink blendshapes.
        params: shape (S',), expression (E',), pose (J, 3), translation (3,), eyelids (2,).
        arkit: optional (names (A,), deltas (A, V, 3)) ARKit shapes for this identity.
    Returns:
        The ``files`` table entries written: role -> file name.
    """
    out = Path(out)
    extra = {} if arkit is None else {"arkit_names": np.asarray(arkit[0]), "arkit_deltas": arkit[1]}
    posed = flame_forward_np(model, params["shape"], params["expression"], params["pose"],
                             params["eyelids"], eyelid_deltas)
    write_obj(out / "mesh.obj", posed.vertices, model.faces, uv, uv_faces)
    write_obj(out / "neutral.obj", posed.v_neutral, model.faces, uv, uv_faces)
    write_rig_npz(out / "rig.npz", **rig_arrays(
        model, params["shape"], params["expression"], params["pose"], params["translation"],
        uv, uv_faces, eyelid_deltas, params["eyelids"]), **extra)
    return {"mesh": "mesh.obj", "neutral": "neutral.obj", "rig": "rig.npz"}


def write_result_bundle(out: str | os.PathLike[str], engine: _EngineLike, params: Any,
                        texture: Any = None, albedo: Any = None,
                        overlay: Any = None,
                        arkit: tuple[list[str], np.ndarray] | None = None,
                        segmentation: Any = None, mouth: Any = None) -> dict[str, str]:
    """Write the pipeline's bundle files except result.json into ``out``.

    Args:
        out: bundle folder (exists).
        engine: the pipeline engine (model arrays, eyelid deltas, UV layout).
        params: backend.model.params.FitParams (batch 1); ``params.numpy()`` gives the arrays.
        texture, albedo: (H, W, 3|4) UV images or None; overlay: (H, W, 3) or None.
        arkit: optional (names, (A, V, 3) deltas) ARKit shapes adapted to this identity.
        segmentation: the photo's label map in photo pixels, a palette ``PIL.Image`` whose
            pixel values are label ids (``appearance.segmentation.segmentation_png``) or an
            (H, W) uint8 array; written as ``segmentation.png``.
        mouth: ``backend.model.mouth.MouthAssets`` or None: teeth, tongue and cavity placed for
            this identity (``mouth.npz``, ``teeth.png``, ``tongue.png``).
    Returns:
        The ``files`` table entries written: role -> file name.
    """
    p = params.numpy()
    files = write_head_files(out, engine.model, engine.uv.uv, engine.uv.uv_faces,
                             engine.eyelid_deltas, p, arkit=arkit)
    if mouth is not None:
        files.update(write_mouth(out, engine.model, p["shape"], mouth))
    for role, image in (("texture", texture), ("albedo", albedo), ("overlay", overlay)):
        if image is not None:
            files[role] = write_png(Path(out) / f"{role}.png", image).name
    if segmentation is not None:
        path = Path(out) / "segmentation.png"
        if hasattr(segmentation, "save"):
            segmentation.save(path)
        else:
            write_png(path, np.asarray(segmentation, np.uint8)[..., None])
        files["segmentation"] = path.name
    return files


def write_mouth(out: str | os.PathLike[str], model: ModelArrays, shape: np.ndarray,
                mouth: Any) -> dict[str, str]:
    """Place the mouth (``backend.model.mouth``) in the identity ``shape`` (S',) and write
    ``mouth.npz`` and the teeth / tongue textures into ``out``; {} for a model that is not
    FLAME's topology. Returns the ``files`` table entries written."""
    from ..model.mouth import FLAME_VERTEX_COUNT, place_mouth, write_mouth_files

    if model.v_template.shape[0] != FLAME_VERTEX_COUNT:
        return {}
    shape = np.asarray(shape, np.float64).reshape(-1)
    v_neutral = model.v_template.astype(np.float64) + model.shapedirs[:, :, :len(shape)] @ shape
    return write_mouth_files(out, place_mouth(mouth, v_neutral, model.weights, model.joint_names), mouth)


def random_dev_params(n_shape: int, n_expr: int, seed: int) -> dict[str, np.ndarray]:
    """Plausible random FLAME parameters: identity, expression, an open jaw, a turned neck.

    Returns:
        dict with shape (S,), expression (E,), pose (5, 3), eyelids (2,), translation (3,).
    """
    rng = np.random.default_rng(seed)
    pose = np.zeros((5, 3))
    pose[0] = rng.normal(0.0, 0.1, 3)
    pose[1] = rng.normal(0.0, 0.15, 3)
    pose[2] = [rng.uniform(0.05, 0.3), rng.normal(0.0, 0.02), rng.normal(0.0, 0.02)]
    pose[3:] = rng.normal(0.0, 0.1, (2, 3))
    return {
        "shape": rng.normal(0.0, 1.0, n_shape),
        "expression": rng.normal(0.0, 0.8, n_expr),
        "pose": pose,
        "eyelids": rng.uniform(0.0, 0.3, 2),
        "translation": np.array([0.0, 0.0, -0.6]) + rng.normal(0.0, 0.01, 3),
    }


def write_dev_bundle(out: str | os.PathLike[str], seed: int = 0,
                     assets: str | os.PathLike[str] | None = None,
                     flame: str | os.PathLike[str] | None = None, mouth: bool = True) -> dict[str, Any]:
    """A complete bundle from random parameters of the FLAME model (no photo, no fitting).

    Writes result.json, mesh.obj, neutral.obj, texture.png (assets ``uv/mean_texture.jpg``
    with alpha 255) and rig.npz into ``out`` (created), and with ``mouth`` the mouth interior
    from the assets' ``mouth/`` (mouth.npz, teeth.png, tongue.png).

    Args:
        out: output folder.
        seed: random seed of the parameters.
        assets: assets folder (default: backend.model.assets resolution).
        flame: model file (default: backend.model.assets.flame_model_path()).
    Returns:
        The result.json dict.
    """
    from PIL import Image

    from .. import __version__
    from ..model.assets import asset_path, assets_dir, flame_model_path

    root = assets_dir(assets)  # before the torch imports: a wrong folder fails fast
    from ..model.flame import load_eyelid_deltas, load_flame
    from ..model.uv import load_uv_layout

    model = load_flame(flame_model_path(flame, root))
    uv = load_uv_layout(root, model.faces)
    eyelid_deltas = load_eyelid_deltas(root)
    p = random_dev_params(model.shapedirs.shape[2], model.exprdirs.shape[2], seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = write_head_files(out, model, uv.uv, uv.uv_faces, eyelid_deltas, p)
    if mouth:
        from ..model.mouth import MOUTH_SUBDIR, load_mouth_assets

        files.update(write_mouth(out, model, p["shape"], load_mouth_assets(root / MOUTH_SUBDIR)))
    texture = np.asarray(Image.open(asset_path(DEV_TEXTURE_RELPATH, root)).convert("RGBA"))
    files["texture"] = write_png(out / "texture.png", texture).name
    width = height = 512
    result = {
        "format_version": 1,
        "generator": f"headrecon {__version__} (dev bundle, seed {seed})",
        "input": {"photo": f"dev_seed{seed}.png", "width": width, "height": height},
        "model": {"name": model.name, "n_shape": int(len(p["shape"])),
                  "n_expr": int(len(p["expression"])), "n_vertices": int(model.v_template.shape[0]),
                  "n_faces": int(model.faces.shape[0]), "joint_names": list(model.joint_names)},
        "identity": p["shape"].tolist(),
        "expression": p["expression"].tolist(),
        "eyelids": p["eyelids"].tolist(),
        "pose": {n: p["pose"][j].tolist() for j, n in enumerate(model.joint_names)},
        "translation": p["translation"].tolist(),
        "camera": {"model": "pinhole", "focal_px": 1000.0, "principal_px": [width / 2, height / 2],
                   "width": width, "height": height,
                   "convention": "view frame -Z forward, +Y up; u = cx + f*x/(-z), v = cy - f*y/(-z)"},
        "lighting": {"model": "sh9", "coefficients": [[1.0 / 0.886227] * 3] + [[0.0] * 3] * 8},
        "landmarks_68": [],
        "timings": {},
        "device": "cpu",
        "warnings": ["Development bundle from random parameters; there is no photo."],
        "files": files,
    }
    (out / "result.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.files.bundle",
                                     description="Write a development result bundle.")
    parser.add_argument("--dev", metavar="OUT", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the parameters")
    parser.add_argument("--assets", default=None, help="assets folder (default ../shared/assets)")
    parser.add_argument("--flame", default=None, help="FLAME model file (default: dev model)")
    args = parser.parse_args(argv)
    try:
        write_dev_bundle(args.dev, args.seed, args.assets, args.flame)
    except HeadReconError as exc:
        print(f"headrecon: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"headrecon: wrote {args.dev}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
