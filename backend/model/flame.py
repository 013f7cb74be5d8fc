"""The FLAME head model: file loading (official pickle or dev npz) and the torch forward pass.

FLAME (Li et al., "Learning a model of facial shape and expression from 4D scans", 2017):
``M(beta, theta, psi) = W(T_P(beta, theta, psi), J(beta), theta, W)`` with
``T_P = T + B_S(beta) + B_E(psi) + B_P(theta)`` and joints ``J(beta) = J_reg (T + B_S(beta))``.
Optional eyelid blendshapes (blink weights) are added like expression blendshapes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import HeadReconError, ModelFileError
from .lbs import lbs

log = logging.getLogger(__name__)

JOINT_NAMES: tuple[str, ...] = ("root", "neck", "jaw", "eye_L", "eye_R")
FLAME2023_OPEN_NAME = "flame2023_open.pkl"
FLAME2023_OPEN_SHA256 = "e75a0990728ba038c7da2a420ae4396f7ddd7781366c13026066c5b24f127623"
OFFICIAL_N_SHAPE = 300  # the official pickle stacks 300 identity then 100 expression components
EYELID_FILES = ("expressions/l_eyelid.npy", "expressions/r_eyelid.npy")  # subject's left, right


@dataclass
class FlameModelData:
    """Model arrays in numpy (float32 unless said), joints in the order of ``JOINT_NAMES``.

    Attributes:
        name: "FLAME 2023 Open", "FLAME 2020", "dev", ...
        v_template: (V, 3) template in metres.
        faces: (F, 3) int64 triangles.
        shapedirs: (V, 3, S) identity blendshapes.
        exprdirs: (V, 3, E) expression blendshapes.
        posedirs: (V, 3, 9*(J-1)) pose correctives, feature ``flatten(R_j - I)``, j = 1..J-1.
        J_regressor: (J, V) dense joint regressor.
        weights: (V, J) skinning weights.
        parents: (J,) int64, ``parents[0] == -1``.
        joint_names: names of the J joints; ``eye_L`` is the subject's left (+X).
    """

    name: str
    v_template: np.ndarray
    faces: np.ndarray
    shapedirs: np.ndarray
    exprdirs: np.ndarray
    posedirs: np.ndarray
    J_regressor: np.ndarray
    weights: np.ndarray
    parents: np.ndarray
    joint_names: tuple[str, ...] = JOINT_NAMES


# ----------------------------------------------------------------------------- file loading


class _ChumpyStandIn:
    """Takes the place of any ``chumpy`` class while unpickling; keeps the pickled state only.

    A plain ``chumpy.Ch`` stores its value under ``x`` in its ``__dict__``, which is all we need.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> "_ChumpyStandIn":
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state


class RefusedGlobalError(pickle.UnpicklingError):
    """A pickle names a global outside the allow-list (it could run code when loaded)."""

    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.module, self.name = module, name


# Globals a FLAME pickle (Python 2 or 3, numpy 1 or 2, old or new scipy) needs, and nothing
# that can call out: numpy array/dtype/scalar reconstruction, scipy.sparse matrix classes,
# builtin containers, copy_reg's object re-creation (of allowed classes only) and the latin-1
# codec protocol 2 uses for bytes. Chumpy classes become _ChumpyStandIn.
_ALLOWED_NUMPY = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                  ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                  ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
                  ("numpy._core.numeric", "_frombuffer")}
_ALLOWED_SPARSE = {"csc_matrix", "csr_matrix", "coo_matrix", "lil_matrix", "dok_matrix", "bsr_matrix",
                   "dia_matrix"}
_ALLOWED_BUILTINS = {"object", "dict", "list", "tuple", "set", "frozenset", "int", "float",
                     "complex", "bool", "str", "bytes", "bytearray", "slice", "long", "unicode"}


def _allowed_global(module: str, name: str) -> Any:
    """The object an allowed pickle global names; raises RefusedGlobalError for anything else."""
    import builtins
    import copyreg

    if module == "chumpy" or module.startswith("chumpy."):
        return _ChumpyStandIn
    if (module, name) in _ALLOWED_NUMPY:
        if name == "_reconstruct":
            return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own array reconstructor
        if name == "scalar":
            return np.float64(0).__reduce__()[0]
        if name == "_frombuffer":
            import importlib
            try:
                return importlib.import_module("numpy._core.numeric")._frombuffer
            except ImportError:
                return importlib.import_module("numpy.core.numeric")._frombuffer
        return getattr(np, name)
    if (module == "scipy.sparse" or module.startswith("scipy.sparse.")) and name in _ALLOWED_SPARSE:
        import scipy.sparse
        return getattr(scipy.sparse, name)
    if module in ("builtins", "__builtin__") and name in _ALLOWED_BUILTINS:
        return getattr(builtins, {"long": "int", "unicode": "str"}.get(name, name))
    if module in ("copy_reg", "copyreg") and name == "_reconstructor":
        return copyreg._reconstructor
    if module == "_codecs" and name == "encode":
        import codecs
        return codecs.encode
    raise RefusedGlobalError(module, name)


class _FlameUnpickler(pickle.Unpickler):
    """Restricted unpickler for the official FLAME files: only the globals of
    :func:`_allowed_global` load (numpy arrays, scipy.sparse matrices, builtin containers);
    chumpy classes become :class:`_ChumpyStandIn` (chumpy itself is never imported). A file
    naming anything else (``os.system``, ``eval``, ...) is refused before it can run."""

    def find_class(self, module: str, name: str) -> Any:
        return _allowed_global(module, name)


def _to_numpy(value: Any, key: str, path: Path) -> np.ndarray:
    """Chumpy stand-in, scipy sparse or array-like -> dense numpy array."""
    if isinstance(value, _ChumpyStandIn):
        state = getattr(value, "state", None)
        if not isinstance(state, dict) or "x" not in state:
            raise ModelFileError(
                f"FLAME file {path} stores '{key}' as a chumpy expression that cannot be read "
                "without chumpy; re-save it with plain numpy arrays.")
        value = state["x"]
    if hasattr(value, "toarray"):
        value = value.toarray()
    return np.asarray(value)


def _read_pickle(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        data = _FlameUnpickler(f, encoding="latin1").load()
    if not isinstance(data, dict):
        raise ModelFileError(f"FLAME file {path} does not contain a model dictionary.")
    try:
        shapedirs = _to_numpy(data["shapedirs"], "shapedirs", path)
        if shapedirs.ndim != 3 or shapedirs.shape[2] <= OFFICIAL_N_SHAPE:
            raise ModelFileError(
                f"FLAME file {path} has shapedirs of shape {shapedirs.shape}, expected "
                f"(V, 3, {OFFICIAL_N_SHAPE} identity + expression components).")
        arrays = {k: _to_numpy(data[k], k, path) for k in
                  ("v_template", "f", "posedirs", "J_regressor", "weights", "kintree_table")}
    except KeyError as exc:
        raise ModelFileError(f"FLAME file {path} lacks the array {exc.args[0]!r}.") from None
    arrays["shapedirs"] = shapedirs[:, :, :OFFICIAL_N_SHAPE]
    arrays["exprdirs"] = shapedirs[:, :, OFFICIAL_N_SHAPE:]
    return arrays


def _read_npz(path: Path) -> dict[str, Any]:
    keys = ("v_template", "f", "shapedirs", "exprdirs", "posedirs", "J_regressor", "weights",
            "kintree_table")
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in keys if k not in data.files]
        if missing:
            raise ModelFileError(f"FLAME file {path} lacks the array(s) {', '.join(missing)}.")
        return {k: np.asarray(data[k]) for k in keys}


def _model_name(path: Path) -> str:
    stem = path.stem.lower()
    if path.suffix.lower() == ".npz":
        return "dev" if stem == "flame_dev_model" else path.stem
    if "2023" in stem:
        return "FLAME 2023 Open" if "open" in stem else "FLAME 2023"
    if stem == "generic_model" or "2020" in stem:
        return "FLAME 2020"
    return path.stem


def _parents_from_kintree(kintree: np.ndarray, n_joints: int, path: Path) -> np.ndarray:
    if kintree.shape != (2, n_joints):
        raise ModelFileError(
            f"FLAME file {path} has kintree_table of shape {kintree.shape}, expected (2, {n_joints}).")
    ids = kintree[1].astype(np.int64)
    if not np.array_equal(ids, np.arange(n_joints)):
        raise ModelFileError(f"FLAME file {path} has a kintree_table with unordered joint ids.")
    parents = kintree[0].astype(np.int64)
    parents[0] = -1  # stored as uint32 max (or -1)
    if np.any(parents[1:] < 0) or np.any(parents[1:] >= np.arange(1, n_joints)):
        raise ModelFileError(f"FLAME file {path} has an invalid kinematic tree.")
    return parents


def _canonical_joint_order(joints: np.ndarray, parents: np.ndarray, path: Path) -> list[int]:
    """File joint index for each of ``JOINT_NAMES``, worked out from the tree and positions.

    root = the parentless joint, neck = its only child, jaw = the lowest child of the neck, the
    two other children of the neck are the eyes; ``eye_L`` is the one at larger X (subject's left).
    """
    bad = ModelFileError(f"FLAME file {path} does not have FLAME's 5-joint skeleton "
                         "(root, neck, jaw, two eyes).")
    if len(parents) != len(JOINT_NAMES):
        raise bad
    root_children = [j for j in range(len(parents)) if parents[j] == 0]
    if len(root_children) != 1:
        raise bad
    neck = root_children[0]
    head_children = [j for j in range(len(parents)) if parents[j] == neck]
    if len(head_children) != 3:
        raise bad
    jaw = min(head_children, key=lambda j: joints[j, 1])
    eyes = sorted((j for j in head_children if j != jaw), key=lambda j: -joints[j, 0])
    return [0, neck, jaw, eyes[0], eyes[1]]


def _reorder_joints(arrays: dict[str, np.ndarray], parents: np.ndarray,
                    order: list[int]) -> np.ndarray:
    """Permute joint-indexed arrays in place into ``order``; returns the new parents."""
    inverse = {old: new for new, old in enumerate(order)}
    arrays["J_regressor"] = arrays["J_regressor"][order]
    arrays["weights"] = arrays["weights"][:, order]
    blocks = arrays["posedirs"].reshape(*arrays["posedirs"].shape[:2], -1, 9)  # (V,3,J-1,9)
    arrays["posedirs"] = blocks[:, :, [o - 1 for o in order[1:]]].reshape(arrays["posedirs"].shape)
    return np.array([-1] + [inverse[int(parents[o])] for o in order[1:]], dtype=np.int64)


def _validate(arrays: dict[str, np.ndarray], path: Path) -> None:
    v = arrays["v_template"]
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] < 4:
        raise ModelFileError(f"FLAME file {path} has v_template of shape {v.shape}, expected (V, 3).")
    n_v = v.shape[0]
    n_j = arrays["J_regressor"].shape[0] if arrays["J_regressor"].ndim == 2 else -1
    expected = {
        "f": (None, 3), "shapedirs": (n_v, 3, None), "exprdirs": (n_v, 3, None),
        "posedirs": (n_v, 3, 9 * (n_j - 1)), "J_regressor": (n_j, n_v), "weights": (n_v, n_j),
    }
    for key, shape in expected.items():
        got = arrays[key].shape
        if len(got) != len(shape) or any(e is not None and g != e for g, e in zip(got, shape)):
            want = "(" + ", ".join("N" if e is None else str(e) for e in shape) + ")"
            raise ModelFileError(f"FLAME file {path} has {key} of shape {got}, expected {want}.")
    faces = arrays["f"]
    if faces.size == 0 or faces.min() < 0 or faces.max() >= n_v:
        raise ModelFileError(f"FLAME file {path} has face indices outside its {n_v} vertices.")
    finite = all(np.isfinite(arrays[k]).all() for k in
                 ("v_template", "shapedirs", "exprdirs", "posedirs", "J_regressor", "weights"))
    if not finite:
        raise ModelFileError(f"FLAME file {path} contains NaN or infinite values.")


def load_flame(path: str | os.PathLike[str], n_shape: int | None = None,
               n_expr: int | None = None) -> FlameModelData:
    """Load a FLAME model file.

    Args:
        path: official pickle (``.pkl``: FLAME 2023 Open, FLAME 2020, ...) or dev ``.npz``.
        n_shape: keep only the first ``n_shape`` identity components (None = all).
        n_expr: keep only the first ``n_expr`` expression components (None = all).
    Returns:
        FlameModelData with joints ordered as ``JOINT_NAMES``.
    Raises:
        ModelFileError: missing, unreadable or wrongly shaped file.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"FLAME model file not found: {path}.")
    suffix = path.suffix.lower()
    if suffix not in (".pkl", ".npz"):
        raise ModelFileError(f"FLAME model file {path} must be a .pkl (official) or .npz file.")
    warning = sha_warning(path)
    if warning:
        log.warning(warning)
    try:
        arrays = _read_pickle(path) if suffix == ".pkl" else _read_npz(path)
    except ModelFileError:
        raise
    except RefusedGlobalError as exc:
        raise ModelFileError(
            f"FLAME model file {path} is refused: it names {exc.module}.{exc.name}, which a FLAME "
            "model does not contain and which could run code when loaded.") from None
    except Exception as exc:  # corrupt pickle / zip: many exception types
        raise ModelFileError(
            f"FLAME model file {path} cannot be read ({type(exc).__name__}: {exc}).") from None
    _validate(arrays, path)
    f32 = {k: np.ascontiguousarray(arrays[k], dtype=np.float32) for k in
           ("v_template", "shapedirs", "exprdirs", "posedirs", "J_regressor", "weights")}
    parents = _parents_from_kintree(np.asarray(arrays["kintree_table"]),
                                    f32["J_regressor"].shape[0], path)
    rest_joints = f32["J_regressor"] @ f32["v_template"]
    parents = _reorder_joints(f32, parents, _canonical_joint_order(rest_joints, parents, path))
    for key, n in (("shapedirs", n_shape), ("exprdirs", n_expr)):
        if n is not None:
            if not 0 <= n <= f32[key].shape[2]:
                raise ModelFileError(f"FLAME model {path} has {f32[key].shape[2]} {key} "
                                     f"components, {n} were requested.")
            f32[key] = np.ascontiguousarray(f32[key][:, :, :n])
    return FlameModelData(
        name=_model_name(path), v_template=f32["v_template"],
        faces=np.ascontiguousarray(arrays["f"], dtype=np.int64), shapedirs=f32["shapedirs"],
        exprdirs=f32["exprdirs"], posedirs=f32["posedirs"], J_regressor=f32["J_regressor"],
        weights=f32["weights"], parents=parents, joint_names=JOINT_NAMES)


def sha_warning(path: str | os.PathLike[str]) -> str | None:
    """Warning text when a file named like ``flame2023_Open.pkl`` is not the published file.

    Returns:
        One sentence for result.json ``warnings``, or None (other names, or the hash matches).
    """
    path = Path(path)
    if path.name.lower() != FLAME2023_OPEN_NAME or not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() == FLAME2023_OPEN_SHA256:
        return None
    return (f"The FLAME model {path.name} differs from the published FLAME 2023 Open file "
            f"(SHA-256 {digest.hexdigest()[:16]}... instead of {FLAME2023_OPEN_SHA256[:16]}...); "
            "results may be wrong.")


def load_eyelid_deltas(assets: str | os.PathLike[str]) -> np.ndarray:
    """Eyelid-closing blendshapes from the assets folder.

    ``expressions/l_eyelid.npy`` closes the subject's left eye (its displaced vertices lie at
    +X) and ``r_eyelid.npy`` the right one; a weight of 1 closes the lid.

    Args:
        assets: the assets folder.
    Returns:
        (2, V, 3) float32 deltas, subject's left first.
    """
    out = []
    for rel in EYELID_FILES:
        path = Path(assets) / rel
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"Eyelid blendshape {path} cannot be read ({exc}).") from None
        if arr.ndim != 2 or arr.shape[1] != 3:
            raise ModelFileError(f"Eyelid blendshape {path} has shape {arr.shape}, expected (V, 3).")
        out.append(arr.astype(np.float32))
    if out[0].shape != out[1].shape:
        raise ModelFileError("The left and right eyelid blendshapes have different vertex counts.")
    return np.stack(out)


def select_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        HeadReconError: CUDA requested but not available, or an unknown device name.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise HeadReconError(f"Device {name} was requested but no CUDA GPU is available; "
                                 "use --device cpu or auto.")
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise HeadReconError(f"Device {name} does not exist; this machine has "
                                 f"{torch.cuda.device_count()} CUDA device(s).")
        return torch.device(name)
    raise HeadReconError(f"Unknown device {name!r}; use auto, cpu, cuda or cuda:N.")


def _check_eyelid_sides(deltas: np.ndarray, v_template: np.ndarray) -> None:
    """Raise when blendshape 0 does not move the subject's left (+X) eyelid and 1 the right."""
    centre_x = [float((np.linalg.norm(d, axis=1) * v_template[:, 0]).sum()
                      / max(np.linalg.norm(d, axis=1).sum(), 1e-12)) for d in deltas]
    if not (centre_x[0] > 0.0 > centre_x[1]):
        raise ModelFileError("Eyelid blendshapes must be ordered (subject's left, right); the "
                             "given ones move eyelids at X = "
                             f"{centre_x[0]:+.3f} m and {centre_x[1]:+.3f} m.")


# ----------------------------------------------------------------------------- torch model


@dataclass
class FlameOutput:
    """Result of :meth:`FLAME.forward`.

    Attributes:
        vertices: (B, V, 3) posed vertices plus translation (view frame when translated).
        joints: (B, J, 3) posed joints plus translation.
        rest_joints: (B, J, 3) joints of the identity before pose, ``J_reg (T + B_S beta)``.
        v_shaped: (B, V, 3) template + identity + expression (+ eyelids), before pose.
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    rest_joints: torch.Tensor
    v_shaped: torch.Tensor


class FLAME(torch.nn.Module):
    """Differentiable FLAME. Move it with ``.to(device)``; inputs must be on the same device.

    Args:
        data: model arrays from :func:`load_flame`.
        eyelid_deltas: optional (2, V, 3) blink blendshapes (subject's left, right).
    """

    def __init__(self, data: FlameModelData, eyelid_deltas: np.ndarray | None = None):
        super().__init__()
        self.data = data
        self.joint_names = data.joint_names
        self.n_shape = int(data.shapedirs.shape[2])
        self.n_expr = int(data.exprdirs.shape[2])
        self.n_joints = int(data.J_regressor.shape[0])
        self.parents: list[int] = [int(p) for p in data.parents]
        t = torch.from_numpy
        self.register_buffer("v_template", t(data.v_template))
        self.register_buffer("faces", t(data.faces))
        self.register_buffer("shapedirs", t(data.shapedirs))
        self.register_buffer("exprdirs", t(data.exprdirs))
        self.register_buffer("posedirs", t(data.posedirs))
        self.register_buffer("weights", t(data.weights))
        self.register_buffer("J_regressor", t(data.J_regressor))
        # Joints are linear in beta: precompute J_reg T and J_reg B_S.
        self.register_buffer("joint_template", t(data.J_regressor @ data.v_template))
        self.register_buffer("joint_shapedirs", t(np.einsum("jv,vcs->jcs", data.J_regressor,
                                                            data.shapedirs)))
        if eyelid_deltas is not None:
            eyelid_deltas = np.asarray(eyelid_deltas, dtype=np.float32)
            if eyelid_deltas.shape != (2, *data.v_template.shape):
                raise ModelFileError(f"Eyelid blendshapes of shape {eyelid_deltas.shape} do not "
                                     f"fit a model with {data.v_template.shape[0]} vertices.")
            _check_eyelid_sides(eyelid_deltas, data.v_template)
            self.register_buffer("eyelid_deltas", t(eyelid_deltas))
        else:
            self.eyelid_deltas = None

    def joint_index(self, name: str) -> int:
        """Index of a joint by name ("root", "neck", "jaw", "eye_L", "eye_R")."""
        return self.joint_names.index(name)

    def subset(self, vertex_ids: np.ndarray | torch.Tensor) -> "FLAME":
        """A FLAME that evaluates only ``vertex_ids`` (same joints), e.g. for landmark fitting.

        Args:
            vertex_ids: (K,) vertex indices; the result's vertex ``k`` is vertex ``vertex_ids[k]``.
        Returns:
            FLAME on the same device whose outputs have K vertices; it has no faces.
        """
        ids = torch.as_tensor(np.asarray(vertex_ids), dtype=torch.long, device=self.v_template.device)
        sub = FLAME.__new__(FLAME)
        torch.nn.Module.__init__(sub)
        for attr in ("data", "joint_names", "n_shape", "n_expr", "n_joints", "parents"):
            setattr(sub, attr, getattr(self, attr))
        for name in ("v_template", "shapedirs", "exprdirs", "posedirs", "weights"):
            sub.register_buffer(name, getattr(self, name)[ids].contiguous())
        sub.register_buffer("faces", self.faces[:0])
        sub.register_buffer("J_regressor", self.J_regressor[:, ids].contiguous())
        sub.register_buffer("joint_template", self.joint_template)
        sub.register_buffer("joint_shapedirs", self.joint_shapedirs)
        if self.eyelid_deltas is not None:
            sub.register_buffer("eyelid_deltas", self.eyelid_deltas[:, ids].contiguous())
        else:
            sub.eyelid_deltas = None
        return sub

    def forward(self, shape: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor,
                translation: torch.Tensor | None = None,
                eyelids: torch.Tensor | None = None) -> FlameOutput:
        """Evaluate the model.

        Args:
            shape: (B, S') identity coefficients, S' <= S (missing ones are zero).
            expression: (B, E') expression coefficients, E' <= E.
            pose: (B, J, 3) axis-angle per joint (root, neck, jaw, eye_L, eye_R).
            translation: (B, 3) added after posing (FLAME frame -> view frame), or None.
            eyelids: (B, 2) blink weights (left, right); needs ``eyelid_deltas``.
        Returns:
            FlameOutput (see there for shapes).
        """
        n_s, n_e = shape.shape[1], expression.shape[1]
        if n_s > self.n_shape or n_e > self.n_expr:
            raise ValueError(f"model has {self.n_shape} identity and {self.n_expr} expression "
                             f"components, got {n_s} and {n_e}")
        if pose.shape[1:] != (self.n_joints, 3):
            raise ValueError(f"pose must be (B, {self.n_joints}, 3), got {tuple(pose.shape)}")
        identity = torch.einsum("vcs,bs->bvc", self.shapedirs[:, :, :n_s], shape)
        v_shaped = self.v_template + identity
        v_shaped = v_shaped + torch.einsum("vce,be->bvc", self.exprdirs[:, :, :n_e], expression)
        if eyelids is not None:
            if self.eyelid_deltas is None:
                raise ValueError("this FLAME was built without eyelid blendshapes")
            v_shaped = v_shaped + torch.einsum("kvc,bk->bvc", self.eyelid_deltas, eyelids)
        rest_joints = self.joint_template + torch.einsum(
            "jcs,bs->bjc", self.joint_shapedirs[:, :, :n_s], shape)
        vertices, joints = lbs(v_shaped, pose, rest_joints, self.posedirs, self.parents,
                               self.weights)
        if translation is not None:
            vertices = vertices + translation[:, None, :]
            joints = joints + translation[:, None, :]
        return FlameOutput(vertices=vertices, joints=joints, rest_joints=rest_joints,
                           v_shaped=v_shaped)
