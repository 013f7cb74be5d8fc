"""Read and validate a result bundle (docs/ARCHITECTURE.md, "Result bundle"); numpy only.

``load_bundle`` accepts the bundle folder or its ``result.json`` and either returns a
:class:`Bundle` whose arrays have checked shapes, dtypes and values, or raises
:class:`BundleError` with one sentence saying what is wrong.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import naming

FORMAT_VERSION = 1
# image role -> key of result.json "files" (the displacement PNG, not the float .npy)
IMAGE_FILES: dict[str, str] = {"texture": "texture", "albedo": "albedo", "normal": "normal",
                               "displacement": "displacement_png", "eye": "eye"}
REQUIRED_ARRAYS: tuple[str, ...] = (
    "v_neutral", "faces", "uv", "uv_faces", "expr_deltas", "expression", "eyelid_deltas",
    "pose_deltas", "joints", "parents", "joint_names", "weights", "pose", "translation",
)
WEIGHT_SUM_TOL = 1e-3


MAX_RESULT_BYTES = 16 << 20


class BundleError(Exception):
    """The bundle cannot be imported; the message is one sentence for the user."""


@dataclass
class Bundle:
    """A validated result bundle. Arrays are float32 (FLAME frame, metres) unless said.

    Attributes:
        folder: the bundle folder.
        result: parsed result.json.
        photo_stem: photo file name without extension (names the collection).
        v_neutral: (V, 3) identity mesh (Basis).
        faces: (F, 3) int32 triangles; uv: (T, 2); uv_faces: (F, 3) int32 into ``uv``.
        expr_deltas: (E, V, 3); expression: (E,) fitted coefficients.
        eyelid_deltas: (2, V, 3) blink L, R; eyelids: (2,) fitted blink weights (0 if absent).
        pose_deltas: (9*(J-1), V, 3) pose correctives.
        joints: (J, 3) rest joints; parents: (J,) int32; joint_names: J names.
        weights: (V, J) skinning weights; pose: (J, 3) axis-angle; translation: (3,).
        arkit_deltas: (A, V, 3) and arkit_names (A names), A may be 0.
        images: image role ("texture", "albedo", "normal", "displacement", "eye") -> existing
            file; "eye" is the iris texture in headrecon_addon/eye_layout.py's layout.
        displacement_midlevel, displacement_strength: for the displacement image (values in
            [0, 1]): offset in metres = (value - midlevel) * strength, from result.json
            ``detail.displacement.blender_displace``.
        warnings: one sentence per listed image left out (missing or damaged); the import
            goes on without it (albedo and photo texture stand in for each other). Also one
            for a listed mouth that is left out.
        mouth: the mouth interior (``mouth.npz``), or None when the bundle has none (older
            bundles) or it is damaged.
    """

    folder: Path
    result: dict[str, Any]
    photo_stem: str
    v_neutral: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    uv_faces: np.ndarray
    expr_deltas: np.ndarray
    expression: np.ndarray
    eyelid_deltas: np.ndarray
    eyelids: np.ndarray
    pose_deltas: np.ndarray
    joints: np.ndarray
    parents: np.ndarray
    joint_names: tuple[str, ...]
    weights: np.ndarray
    pose: np.ndarray
    translation: np.ndarray
    arkit_deltas: np.ndarray
    arkit_names: tuple[str, ...]
    images: dict[str, Path] = field(default_factory=dict)
    displacement_midlevel: float = 0.5
    displacement_strength: float = 0.0
    warnings: list[str] = field(default_factory=list)
    mouth: "Mouth | None" = None

    @property
    def n_vertices(self) -> int:
        return int(self.v_neutral.shape[0])

    @property
    def n_expr(self) -> int:
        return int(self.expr_deltas.shape[0])


MOUTH_PARTS: tuple[str, ...] = ("upper_teeth", "lower_teeth", "tongue", "cavity")
MAX_MOUTH_VERTICES = 100_000  # per part: the shipped parts have a few thousand
MOUTH_EXTENT_M = 0.5  # every mouth vertex lies within this distance of the head's vertices' box


@dataclass
class MouthPart:
    """One part of the mouth interior (FLAME frame of the neutral identity, metres).

    Attributes:
        verts: (N, 3) float32; faces: (F, 3) int32; uv: (T, 2) float32; uv_faces: (F, 3) int32.
        weights: (N, J) FLAME skinning weights, rows sum to 1.
    """

    verts: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    uv_faces: np.ndarray
    weights: np.ndarray


@dataclass
class Mouth:
    """The validated mouth interior of a bundle.

    Attributes:
        parts: name (``MOUTH_PARTS``) -> MouthPart.
        tongue_out: (N_tongue, 3) the tongue's ``tongueOut`` shape-key offsets.
        head_tongue_out: (V, 3) the head's ``tongueOut`` shape-key offsets (used when rig.npz's
            ARKit shapes have no ``tongueOut`` of their own).
        textures: "teeth" / "tongue" -> existing, complete image file (absent when missing).
    """

    parts: dict[str, MouthPart]
    tongue_out: np.ndarray
    head_tongue_out: np.ndarray
    textures: dict[str, Path] = field(default_factory=dict)


def _validate_mouth(raw: dict[str, np.ndarray], n_v: int, v_neutral: np.ndarray) -> Mouth:
    """Check mouth.npz's arrays (names, shapes, kinds, indices, weights, extent)."""
    file = "mouth.npz"
    n_j = len(naming.FLAME_JOINTS)
    keys = [f"{p}_{k}" for p in MOUTH_PARTS for k in ("verts", "faces", "uv", "uv_faces", "weights")]
    missing = [k for k in keys + ["tongue_out", "head_tongue_out"] if k not in raw]
    if missing:
        raise BundleError(f"mouth.npz lacks {', '.join(missing[:4])}.")
    lo, hi = v_neutral.min(0) - MOUTH_EXTENT_M, v_neutral.max(0) + MOUTH_EXTENT_M
    parts: dict[str, MouthPart] = {}
    for name in MOUTH_PARTS:
        verts = _check(raw, f"{name}_verts", ("N", 3), file=file)
        n = verts.shape[0]
        if not 0 < n <= MAX_MOUTH_VERTICES:
            raise BundleError(f"mouth.npz {name} has {n} vertices (1..{MAX_MOUTH_VERTICES} allowed).")
        if (verts < lo).any() or (verts > hi).any():
            raise BundleError(f"mouth.npz {name} lies far outside the head.")
        faces = _check(raw, f"{name}_faces", ("F", 3), "i", file=file)
        if not 0 < faces.shape[0] <= 4 * MAX_MOUTH_VERTICES:
            raise BundleError(f"mouth.npz {name} has {faces.shape[0]} faces.")
        _check_index(faces, f"{name}_faces", n, "vertices", file)
        uv = _check(raw, f"{name}_uv", ("T", 2), file=file)
        uv_faces = _check(raw, f"{name}_uv_faces", (faces.shape[0], 3), "i", file=file)
        _check_index(uv_faces, f"{name}_uv_faces", uv.shape[0], "UV coordinates", file)
        weights = _check(raw, f"{name}_weights", (n, n_j), file=file)
        sums = weights.sum(axis=1)
        if weights.min() < -1e-6 or np.abs(sums - 1.0).max() > WEIGHT_SUM_TOL:
            raise BundleError(f"mouth.npz {name}_weights must be non-negative with every row "
                              "summing to 1.")
        parts[name] = MouthPart(verts, faces, uv, uv_faces, weights)
    tongue_out = _check(raw, "tongue_out", (parts["tongue"].verts.shape[0], 3), file=file)
    head_tongue_out = _check(raw, "head_tongue_out", (n_v, 3), file=file)
    for key, a in (("tongue_out", tongue_out), ("head_tongue_out", head_tongue_out)):
        if a.size and float(np.abs(a).max()) > MOUTH_EXTENT_M:
            raise BundleError(f"mouth.npz {key} moves vertices by more than {MOUTH_EXTENT_M} m.")
    return Mouth(parts, tongue_out, head_tongue_out)


def _bundle_mouth(folder: Path, files: dict[str, Any], n_v: int,
                  v_neutral: np.ndarray) -> tuple[Mouth | None, list[str]]:
    """The listed mouth, or None (not listed, or damaged: then with a sentence for the user).

    Invalid file names (absolute, ``..``) are refused like every other listed file.
    """
    names = {}
    for key in ("mouth", "teeth_texture", "tongue_texture"):
        name = files.get(key)
        if name is not None and (not isinstance(name, str) or not name or Path(name).is_absolute()
                                 or ".." in Path(name).parts):
            raise BundleError(f"result.json lists an invalid {key} file name {name!r}.")
        names[key] = name
    if names["mouth"] is None:
        return None, []
    path = folder / names["mouth"]
    try:
        if not path.is_file():
            raise BundleError(f"{names['mouth']} is missing")
        mouth = _validate_mouth(_load_npz(path), n_v, v_neutral)
    except BundleError as exc:
        return None, [f"{str(exc).rstrip('.')}; the head is imported without its mouth interior."]
    notes = []
    for role in ("teeth", "tongue"):
        name = names[f"{role}_texture"]
        if name is None:
            continue
        tex = folder / name
        problem = "it is missing" if not tex.is_file() else png_problem(tex)
        if problem is None:
            mouth.textures[role] = tex
        else:
            notes.append(f"{name}: {problem}; the {role} get a plain colour.")
    return mouth, notes


def _read_result(folder: Path) -> dict[str, Any]:
    path = folder / "result.json"
    if not path.is_file():
        raise BundleError(f"{folder} is not a HeadRecon bundle: it has no result.json.")
    try:
        if path.stat().st_size > MAX_RESULT_BYTES:
            raise BundleError(f"{path} is larger than {MAX_RESULT_BYTES >> 20} MiB; not a bundle's "
                              "result.json.")
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: also 5000-digit ints
        raise BundleError(f"{path} cannot be read as JSON ({str(exc)[:200]}).") from None
    except RecursionError:
        raise BundleError(f"{path} is nested too deeply to be a bundle's result.json.") from None
    if not isinstance(result, dict):
        raise BundleError(f"{path} does not hold a JSON object.")
    version = result.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:  # true == 1 is no version
        raise BundleError(f"{path} has format_version {version!r}; this add-on reads version "
                          f"{FORMAT_VERSION} (update the add-on or the backend).")
    if not isinstance(result.get("files"), dict):
        raise BundleError(f"{path} has no \"files\" table.")
    return result


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
MAX_IMAGE_BYTES = 512 << 20  # decompressed PNG data checked at most (a 8k x 8k RGBA 16-bit map)


def png_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete PNG (None when it is; also None for other formats).

    Walks the chunks (lengths, CRCs, IHDR, IEND) and inflates the image data to check that
    it holds every row: Blender loads a truncated PNG as an empty pink image without a word.
    """
    try:
        with path.open("rb") as f:
            if f.read(8) != _PNG_SIGNATURE:
                return None if path.suffix.lower() != ".png" else "not a PNG file"
            inflate, raw, header, ended = zlib.decompressobj(), 0, None, False
            while not ended:
                head = f.read(8)
                if len(head) < 8:
                    return "it ends early (truncated)"
                length, kind = struct.unpack(">I4s", head)
                data = f.read(length)
                crc = f.read(4)
                if len(data) < length or len(crc) < 4:
                    return "it ends early (truncated)"
                if zlib.crc32(kind + data) != struct.unpack(">I", crc)[0]:
                    return f"its {kind.decode('latin-1')} chunk is corrupt"
                if kind == b"IHDR" and length == 13:
                    header = struct.unpack(">IIBBBBB", data)
                elif kind == b"IDAT":
                    raw += len(inflate.decompress(data, MAX_IMAGE_BYTES))
                    while inflate.unconsumed_tail and raw <= MAX_IMAGE_BYTES:
                        raw += len(inflate.decompress(inflate.unconsumed_tail, MAX_IMAGE_BYTES))
                elif kind == b"IEND":
                    ended = True
    except zlib.error:
        return "its image data is corrupt"
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    if header is None:
        return "it has no image header"
    width, height, depth, color, _, _, interlace = header
    if color not in _PNG_CHANNELS or not inflate.eof:
        return "its image data is incomplete"
    if interlace == 0 and raw < height * (1 + (width * _PNG_CHANNELS[color] * depth + 7) // 8):
        return "its image data is incomplete"
    return None


def _bundle_file(folder: Path, files: dict[str, Any], role: str) -> Path | None:
    """The file listed under ``role``; None when not listed; BundleError when listed but missing."""
    name = files.get(role)
    if name is None:
        return None
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise BundleError(f"result.json lists an invalid {role} file name {name!r}.")
    path = folder / name
    if not path.is_file():
        raise BundleError(f"The bundle lists {role} file {name} but {path} does not exist.")
    return path


def _check_npz_headers(path: Path) -> None:
    """Refuse members whose header claims more data than the member holds (a header can say
    any shape; numpy would allocate it before finding the data short)."""
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with zf.open(info) as member:
                version = np.lib.format.read_magic(member)
                shape, _, dtype = np.lib.format._read_array_header(member, version)
                n = 1
                for dim in shape:
                    n *= int(dim)
                if n * max(dtype.itemsize, 1) > info.file_size:
                    raise ValueError(f"member {info.filename} claims shape {shape} but holds "
                                     f"{info.file_size} bytes")


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        _check_npz_headers(path)
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, MemoryError, OverflowError) as exc:
        raise BundleError(f"{path} cannot be read as an .npz file ({exc}).") from None


def _shape_text(shape: tuple[int | str, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _check(arrays: dict[str, np.ndarray], key: str, shape: tuple[int | str, ...],
           kind: str = "f", file: str = "rig.npz") -> np.ndarray:
    """Check one array's shape (ints fixed, strings free) and kind ('f' float, 'i' int, 'U' str)."""
    a = arrays[key]
    ok_kind = (a.dtype.kind in "fiu") if kind == "f" else (a.dtype.kind in "iu") if kind == "i" \
        else a.dtype.kind == "U"
    if not ok_kind:
        what = {"f": "numbers", "i": "integers", "U": "strings"}[kind]
        raise BundleError(f"{file} {key} must hold {what}, found dtype {a.dtype}.")
    if a.ndim != len(shape) or any(isinstance(s, int) and g != s for g, s in zip(a.shape, shape)):
        raise BundleError(f"{file} {key} has shape {_shape_text(a.shape)}, expected "
                          f"{_shape_text(shape)}.")
    if kind == "f":
        a = np.ascontiguousarray(a, dtype=np.float32)
        if not np.isfinite(a).all():
            raise BundleError(f"{file} {key} contains NaN or infinite values.")
    elif kind == "i":
        if a.size and (int(a.min()) < -2**31 or int(a.max()) >= 2**31):
            raise BundleError(f"{file} {key} holds integers beyond the 32-bit range.")
        a = np.ascontiguousarray(a, dtype=np.int32)
    return a


def _check_index(a: np.ndarray, key: str, n: int, what: str, file: str = "rig.npz") -> None:
    if a.size and (a.min() < 0 or a.max() >= n):
        raise BundleError(f"{file} {key} indexes outside the {n} {what}.")


def _validate_rig(raw: dict[str, np.ndarray]) -> dict[str, Any]:
    missing = [k for k in REQUIRED_ARRAYS if k not in raw]
    if missing:
        raise BundleError(f"rig.npz lacks {', '.join(missing)}.")
    out: dict[str, Any] = {}
    out["v_neutral"] = _check(raw, "v_neutral", ("V", 3))
    n_v = out["v_neutral"].shape[0]
    out["joint_names"] = tuple(str(s) for s in _check(raw, "joint_names", ("J",), "U"))
    if out["joint_names"] != naming.FLAME_JOINTS:
        raise BundleError(f"rig.npz has joints {', '.join(out['joint_names'])}; the add-on needs "
                          f"FLAME's {', '.join(naming.FLAME_JOINTS)}.")
    n_j = len(naming.FLAME_JOINTS)
    out["faces"] = _check(raw, "faces", ("F", 3), "i")
    n_f = out["faces"].shape[0]
    _check_index(out["faces"], "faces", n_v, "vertices")
    out["uv"] = _check(raw, "uv", ("T", 2))
    out["uv_faces"] = _check(raw, "uv_faces", (n_f, 3), "i")
    _check_index(out["uv_faces"], "uv_faces", out["uv"].shape[0], "UV coordinates")
    out["expr_deltas"] = _check(raw, "expr_deltas", ("E", n_v, 3))
    out["expression"] = _check(raw, "expression", (out["expr_deltas"].shape[0],))
    out["eyelid_deltas"] = _check(raw, "eyelid_deltas", (2, n_v, 3))
    out["eyelids"] = _check(raw, "eyelids", (2,)) if "eyelids" in raw else np.zeros(2, np.float32)
    out["pose_deltas"] = _check(raw, "pose_deltas", (9 * (n_j - 1), n_v, 3))
    out["joints"] = _check(raw, "joints", (n_j, 3))
    out["parents"] = _check(raw, "parents", (n_j,), "i")
    if out["parents"].tolist() != [-1, 0, 1, 1, 1]:
        raise BundleError(f"rig.npz parents {out['parents'].tolist()} are not FLAME's tree "
                          "[-1, 0, 1, 1, 1].")
    out["weights"] = _check(raw, "weights", (n_v, n_j))
    sums = out["weights"].sum(axis=1)
    if out["weights"].min() < -1e-6 or np.abs(sums - 1.0).max() > WEIGHT_SUM_TOL:
        raise BundleError("rig.npz weights must be non-negative with every row summing to 1 "
                          f"(rows sum to {sums.min():.4f}..{sums.max():.4f}).")
    out["pose"] = _check(raw, "pose", (n_j, 3))
    out["translation"] = _check(raw, "translation", (3,))
    has_deltas, has_names = "arkit_deltas" in raw, "arkit_names" in raw
    if has_deltas != has_names:
        raise BundleError("rig.npz must hold both arkit_deltas and arkit_names or neither.")
    if has_deltas:
        out["arkit_deltas"] = _check(raw, "arkit_deltas", ("A", n_v, 3))
        out["arkit_names"] = tuple(str(s) for s in _check(
            raw, "arkit_names", (out["arkit_deltas"].shape[0],), "U"))
        taken = set(naming.shape_key_names(out["expr_deltas"].shape[0]))
        bad = [n for n in out["arkit_names"] if not n or n in taken]
        if bad or len(set(out["arkit_names"])) != len(out["arkit_names"]):
            raise BundleError("rig.npz arkit_names must be unique, non-empty and differ from the "
                              f"add-on's own shape-key names (problem: {bad[:3] or 'duplicates'}).")
    else:
        out["arkit_deltas"] = np.zeros((0, n_v, 3), np.float32)
        out["arkit_names"] = ()
    return out


def _displacement_params(result: dict[str, Any]) -> tuple[float, float]:
    """(midlevel, strength) of ``detail.displacement.blender_displace`` in result.json."""
    try:
        params = result["detail"]["displacement"]["blender_displace"]
        midlevel, strength = float(params["midlevel"]), float(params["strength"])
        if not (math.isfinite(midlevel) and math.isfinite(strength)):
            raise ValueError
        return midlevel, strength
    except (KeyError, TypeError, ValueError, OverflowError):
        raise BundleError("result.json lists a displacement image but no numeric "
                          "detail.displacement.blender_displace midlevel and strength.") from None


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read and validate a bundle.

    Args:
        path: the bundle folder, or any file in it (result.json, texture.png, ...).
    Returns:
        Bundle with validated arrays.
    Raises:
        BundleError: missing files, wrong format version, wrong shapes or values.
    """
    if not str(path).strip():
        raise BundleError("No bundle chosen: pick a bundle folder or any file in it (result.json).")
    folder = Path(path)
    if folder.is_file():  # result.json or any other file of the bundle (texture.png, ...)
        folder = folder.parent
    if not folder.is_dir():
        if folder.parent.is_dir() and (folder.parent / "result.json").is_file():
            raise BundleError(f"{folder.name} does not exist in the bundle {folder.parent}; pick "
                              "the folder or its result.json.")
        raise BundleError(f"{folder} does not exist.")
    result = _read_result(folder)
    files = result["files"]
    rig_path = _bundle_file(folder, files, "rig")
    if rig_path is None:
        raise BundleError(f"{folder / 'result.json'} lists no rig file; it was written without "
                          "the data the add-on needs.")
    arrays = _validate_rig(_load_npz(rig_path))
    images, notes = _bundle_images(folder, files)
    photo = result.get("input", {}).get("photo") if isinstance(result.get("input"), dict) else None
    stem = Path(photo).stem if isinstance(photo, str) and Path(photo).stem else folder.name
    midlevel, strength = _displacement_params(result) if "displacement" in images else (0.5, 0.0)
    mouth, mouth_notes = _bundle_mouth(folder, files, arrays["v_neutral"].shape[0], arrays["v_neutral"])
    return Bundle(folder=folder.resolve(), result=result, photo_stem=stem, images=images,
                  displacement_midlevel=midlevel, displacement_strength=strength,
                  warnings=notes + mouth_notes, mouth=mouth, **arrays)


EYE_IMAGE_SIDES = (64, 8192)  # eye.png: square, its side within these (pixels)


def _eye_image_problem(path: Path) -> str | None:
    """Why ``path`` cannot be the eye texture: it must be a square PNG (eye_layout's UVs)."""
    with path.open("rb") as f:
        head = f.read(24)
    if head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return "the eye texture must be a PNG file"
    width, height = struct.unpack(">II", head[16:24])
    lo, hi = EYE_IMAGE_SIDES
    if width != height or not lo <= width <= hi:
        return f"it is {width}x{height} pixels, not a square eye texture of {lo} to {hi} pixels"
    return None


def _bundle_images(folder: Path, files: dict[str, Any]) -> tuple[dict[str, Path], list[str]]:
    """The listed images that are present and complete, and a sentence per one left out."""
    images: dict[str, Path] = {}
    dropped: dict[str, str] = {}
    for role, key in IMAGE_FILES.items():
        name = files.get(key)
        if name is None:
            continue
        if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(f"result.json lists an invalid {key} file name {name!r}.")
        path = folder / name
        problem = "it is missing" if not path.is_file() else png_problem(path)
        if problem is None and not path.resolve().is_relative_to(folder.resolve()):
            problem = "it links to a file outside the bundle"  # it would be packed into the .blend
        if problem is None and role == "eye":
            problem = _eye_image_problem(path)
        if problem is None:
            images[role] = path
        else:
            dropped[role] = f"{name}: {problem}"
    colour = images.get("albedo") or images.get("texture")  # what the material uses
    notes = []
    for role, what in dropped.items():
        if role == "eye":
            notes.append(f"{what}; the eyes get the plain procedural eye material.")
        elif role not in ("albedo", "texture"):
            notes.append(f"{what}; the head is imported without its {role} map.")
        elif colour is not None:
            notes.append(f"{what}; the head's colour comes from {colour.name} instead.")
        else:
            notes.append(f"{what}; the head is imported without a colour map.")
    return images, notes
