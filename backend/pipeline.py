"""One photo -> result bundle. ``Engine`` keeps the model, embeddings and detector warm.

Stages (each reports progress and checks for cancellation):
load -> landmarks -> fit_landmarks -> fit_photometric -> texture -> detail -> bundle.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import __version__
from .model.assets import assets_dir, flame_model_path
from .determinism import deterministic
from .errors import Cancelled
from .files.output import check_output_dir, make_staging_dir, replace_dir
from .appearance.iris import iris_color
from .landmarks.ibug68 import MEDIAPIPE_TO_IBUG68
from .options import CancelFn, ProgressFn, ReconstructOptions

FULL_SEARCH_SIDE = 4096  # long side of the photo searched again when the fit-sized copy shows no face
SEARCH_TILE = 1024  # tile side of that search (faces up to half a tile lie wholly in one)
OVERLAY_MAX_SIDE = 2048  # overlay.png of a photo fitted larger than this is drawn on a reduced copy

log = logging.getLogger(__name__)

# Share of the whole job each stage takes, for progress fractions.
STAGE_WEIGHTS: dict[str, float] = {
    "load": 0.03,
    "landmarks": 0.05,
    "landmarks_net": 0.01,
    "segmentation": 0.02,
    "fit_landmarks": 0.22,
    "fit_photometric": 0.35,
    "texture": 0.10,
    "detail": 0.17,
    "bundle": 0.08,
}


class _Progress:
    """Maps per-stage fractions onto the whole job and checks cancellation."""

    def __init__(self, progress: ProgressFn | None, cancel: CancelFn | None, stages: list[str]):
        self._progress = progress
        self._cancel = cancel
        total = sum(STAGE_WEIGHTS[s] for s in stages)
        self._start: dict[str, float] = {}
        acc = 0.0
        for s in stages:
            self._start[s] = acc / total
            acc += STAGE_WEIGHTS[s]
        self._share = {s: STAGE_WEIGHTS[s] / total for s in stages}
        self.timings: dict[str, float] = {}
        self._t0 = 0.0
        self._stage = ""

    def begin(self, stage: str) -> None:
        self.check()
        self._stage = stage
        self._t0 = time.perf_counter()
        self.report(stage, 0.0, "")

    def end(self) -> None:
        self.timings[self._stage] = round(time.perf_counter() - self._t0, 3)
        self.report(self._stage, 1.0, "done")

    def report(self, stage: str, fraction: float, message: str = "") -> None:
        if self._progress is not None and stage in self._start:
            frac = self._start[stage] + self._share[stage] * min(max(fraction, 0.0), 1.0)
            self._progress(stage, round(frac, 4), message)

    def check(self) -> None:
        if self._cancel is not None and self._cancel():
            raise Cancelled("Reconstruction cancelled.")

    def is_cancelled(self) -> bool:
        return self._cancel is not None and bool(self._cancel())


class Engine:
    """Warm reconstruction state: device, FLAME, embeddings, UV layout, face detector.

    Args:
        options: device / flame / assets are read from it; per-job options come with each job.
    """

    def __init__(self, options: ReconstructOptions | None = None):
        from .model.flame import FLAME, load_eyelid_deltas, load_flame, select_device, sha_warning
        from .landmarks.embedding import LandmarkEmbedding
        from .model.uv import load_uv_layout

        opts = options or ReconstructOptions()
        self.assets = assets_dir(opts.assets)
        self.device: torch.device = select_device(opts.device)
        self.model_path = flame_model_path(opts.flame, self.assets)
        self.model = load_flame(self.model_path)
        self.model_warnings: list[str] = [w for w in [sha_warning(self.model_path)] if w]
        eyelids = load_eyelid_deltas(self.assets)
        self.flame = FLAME(self.model, eyelid_deltas=eyelids).to(self.device)
        self.eyelid_deltas = eyelids
        self.embedding = LandmarkEmbedding.load(self.assets)
        # result.json's landmarks_68: the 68 points fixed on FLAME's surface
        # (LandmarkEmbedding.fixed68, calibrated to the large-pose network by setup when it can).
        # The head-frame offset table of backend/landmarks/ibug68.py was learnt on the evaluation
        # images' ground truth, so the product does not use it (it stays a benchmark diagnosis).
        self.uv = load_uv_layout(self.assets, model_faces=self.model.faces)
        self.arkit = _load_arkit()
        if self.arkit is None:
            self.model_warnings.append("ARKit shapes are missing (run ./setup.sh); the head gets "
                                       "FLAME expression keys only.")
        from .model.mouth import load_mouth_weights

        # Teeth, tongue, mouth cavity (MakeHuman, CC0): without them the head has no mouth interior.
        self.mouth, mouth_warnings = load_mouth_weights()
        self.model_warnings += mouth_warnings
        self._detector = None
        from .landmarks.tddfa import load_tddfa_weights

        # The large-pose landmark network (3DDFA_V2 MobileNet): without it, MediaPipe alone.
        self.tddfa, tddfa_warnings = load_tddfa_weights(device=self.device)
        self.model_warnings += tddfa_warnings
        from .appearance.segmentation import load_segmenter

        # Skin/hair segmentation (face parser, else hair model); without it the photo is used
        # whole, with a warning.
        self.segmenter, seg_warnings = load_segmenter()
        self.model_warnings += seg_warnings
        self.options = opts

    @property
    def detector(self):
        if self._detector is None:
            from .landmarks.mediapipe_mesh import get_landmarker

            self._detector = get_landmarker()
        return self._detector

    def health(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "device": str(self.device),
            "model": {"name": self.model.name, "path": str(self.model_path),
                      "n_shape": int(self.model.shapedirs.shape[-1]),
                      "n_expr": int(self.model.exprdirs.shape[-1])},
            "cuda_available": torch.cuda.is_available(),
        }

    # ------------------------------------------------------------------ job
    def reconstruct(self, photo: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                    options: ReconstructOptions | None = None, progress: ProgressFn | None = None,
                    cancel: CancelFn | None = None) -> dict[str, Any]:
        """Reconstruct one photo into ``out_dir`` (written atomically: a failed or cancelled job
        leaves any previous content of ``out_dir`` untouched). Returns the result.json dict."""
        opts = options or self.options
        stages = ["load", "landmarks"] + (["landmarks_net"] if self.tddfa is not None else [])
        stages += ["segmentation"] if self.segmenter is not None else []
        stages += ["fit_landmarks", "fit_photometric"]
        if opts.texture:
            stages += ["texture"]
        if opts.detail:
            stages += ["detail"]
        stages += ["bundle"]
        prog = _Progress(progress, cancel, stages)
        out_dir = check_output_dir(out_dir)  # only an empty folder or a bundle is replaced
        tmp = make_staging_dir(out_dir)
        try:
            result = self._run(Path(photo), tmp, opts, prog, stages)
            replace_dir(tmp, out_dir)  # old bundle aside, new one in, then the old deleted
            return result
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    @deterministic()
    def _run(self, photo: Path, out: Path, opts: ReconstructOptions, prog: _Progress,
             stages: list[str]) -> dict[str, Any]:
        from .fit.landmark_fit import fit_landmarks
        from .files.photo import load_image

        torch.manual_seed(opts.seed)
        warnings: list[str] = list(self.model_warnings)

        prog.begin("load")
        img = load_image(photo, max_side=opts.max_side)
        warnings += img.warnings
        prog.end()

        prog.begin("landmarks")
        img, face, w = self._find_face(photo, img)
        warnings += w
        prog.end()

        network = None
        if self.tddfa is not None:
            prog.begin("landmarks_net")
            network = self.tddfa.predict(img.rgb, face.points[list(MEDIAPIPE_TO_IBUG68), :2])
            prog.end()

        segmentation, skin = None, None  # skin: (H, W) bool pixels that may colour the head
        if "segmentation" in stages:
            prog.begin("segmentation")
            segmentation = self.segmenter.segment(img.rgb, face.points[:, :2])
            skin = segmentation.skin_mask()
            prog.end()

        h, w_px = img.rgb.shape[:2]
        prog.begin("fit_landmarks")
        fit = fit_landmarks(self.flame, self.embedding, face.points, image_size=(w_px, h),
                            quality=opts.quality,
                            progress=lambda s, f, m="": prog.report("fit_landmarks", f, m),
                            cancel=prog.is_cancelled, network=network)
        params = fit.params
        prog.end()

        if "fit_photometric" in stages:
            from .fit.photometric import fit_photometric

            prog.begin("fit_photometric")
            image_t = torch.tensor(img.rgb, dtype=torch.float32, device=self.device).div(255.0)
            photo_res = fit_photometric(
                self.flame, params, image_t, self.uv, fit.landmark_loss, opts.quality, self.assets,
                progress=lambda s, f, m="": prog.report("fit_photometric", f, m),
                cancel=prog.is_cancelled, pixel_mask=skin)
            params = photo_res.params
            prog.end()

        with torch.no_grad():
            outp = self.flame(params.shape, params.expression, params.pose, params.translation,
                              eyelids=params.eyelids)
            verts_view = outp.vertices[0]
            lmk68 = self.embedding.fixed68(outp.vertices)[0]
        cam = params.camera
        lmk68_px = _project(lmk68.cpu().numpy(), cam)
        files: dict[str, str] = {}
        detail_info: dict[str, Any] = {}

        texture = None
        eye_info: dict[str, Any] | None = None
        iris = iris_color(img.rgb, face.points)
        if "texture" in stages:
            from .appearance.eye_texture import write_eye_texture
            from .appearance.texture import sample_photo_texture

            prog.begin("texture")
            eye_files, eye_info, eye_warnings = write_eye_texture(out, iris)
            files.update(eye_files)
            warnings.extend(eye_warnings)
            texture = sample_photo_texture(img.rgb, verts_view.cpu().numpy(), self.model.faces,
                                           self.uv, cam, size=1024, skin_mask=skin)
            if "detail" not in stages:  # the albedo is otherwise de-lit with the detail normals
                from .appearance.albedo import complete_albedo

                written = complete_albedo(self, params, img.rgb, out, texture=texture,
                                          progress=lambda s, f, m="": prog.report("texture", f, m),
                                          cancel=prog.is_cancelled, skin_mask=skin)
                detail_info = written.pop("detail", {})
                files.update(written)
            prog.end()

        if "detail" in stages:
            prog.begin("detail")
            from .appearance.detail import recover_detail

            written = recover_detail(self, params, img.rgb, out,
                                     progress=lambda s, f, m="": prog.report("detail", f, m),
                                     cancel=prog.is_cancelled, quality=opts.quality,
                                     albedo=opts.texture, texture=texture, skin_mask=skin)
            detail_info = written.pop("detail", {})
            files.update(written)
            prog.end()

        prog.begin("bundle")
        from .files.bundle import write_result_bundle
        from .appearance.overlay import draw_overlay

        overlay_rgb = img.rgb  # a photo fitted above 2048 px (small face) is drawn on a copy
        if max(overlay_rgb.shape[:2]) > OVERLAY_MAX_SIDE:
            factor = -(-max(overlay_rgb.shape[:2]) // OVERLAY_MAX_SIDE)  # ceil
            overlay_rgb = np.asarray(Image.fromarray(overlay_rgb).reduce(factor))
        overlay = draw_overlay(overlay_rgb, verts_view.cpu().numpy(), self.model.faces, cam, lmk68_px)
        scale = img.scale
        from .appearance.texture import face_seen_fraction

        seen = face_seen_fraction(img.rgb, verts_view, self.model.faces, self.uv, cam,
                                  str(self.assets), texture=texture)
        result: dict[str, Any] = {
            "format_version": 1,
            "generator": f"headrecon {__version__}",
            "input": {"photo": photo.name, "width": int(img.original_size[0]),
                      "height": int(img.original_size[1])},
            "model": {"name": self.model.name, "n_shape": int(params.shape.shape[1]),
                      "n_expr": int(params.expression.shape[1]),
                      "n_vertices": int(self.model.v_template.shape[0]),
                      "n_faces": int(self.model.faces.shape[0]),
                      "joint_names": list(self.model.joint_names)},
            "identity": _floats(params.shape[0]),
            "expression": _floats(params.expression[0]),
            "eyelids": _floats(params.eyelids[0]),
            "pose": {n: _floats(params.pose[0, j]) for j, n in enumerate(self.model.joint_names)},
            "translation": _floats(params.translation[0]),
            "camera": {"model": "pinhole", "focal_px": cam.focal / scale,
                       "principal_px": [cam.cx / scale, cam.cy / scale],
                       "width": int(img.original_size[0]), "height": int(img.original_size[1]),
                       "convention": "view frame -Z forward, +Y up; u = cx + f*x/(-z), "
                                     "v = cy - f*y/(-z); origin top-left"},
            "lighting": {"model": "sh9", "coefficients": params.sh[0].detach().cpu().tolist()},
            "landmarks_68": (lmk68_px / scale).round(3).tolist(),
            "landmark_sources": _landmark_sources(network, fit.network_init, scale),
            "iris_color": iris,
            "timings": {},
            "device": str(self.device),
            "warnings": warnings,
            # Ground-truth-free fit quality (batch manifests): landmark-fit RMS over the inner
            # points in photo pixels, share of the face's UV region visible in the photo.
            "quality": {"landmark_rms_px": round(float(fit.rms_px) / scale, 3),
                        "face_seen_fraction": round(seen, 4)},
        }
        seg_png = None
        if segmentation is not None:
            from .appearance.segmentation import segmentation_png

            result["segmentation"] = segmentation.describe()
            seg_png = segmentation_png(segmentation.resized(*img.original_size))
        else:
            result["segmentation"] = {"model": None}
        files.update(write_result_bundle(out, self, params, texture=texture, overlay=overlay,
                                         arkit=self._arkit_for(params), segmentation=seg_png,
                                         mouth=self.mouth))
        result["files"] = files
        if detail_info:
            result["detail"] = detail_info
        if eye_info is not None:
            result["eye_texture"] = eye_info
        prog.end()
        result["timings"] = dict(prog.timings)
        (out / "result.json").write_text(json.dumps(result, indent=1))
        return result


    def _find_face(self, photo: Path, img: Any) -> tuple[Any, Any, list[str]]:
        """The largest face and the image the fit works on (issue 12 item 12).

        First the downscaled photo ``img``; when it shows no face and the photo was reduced,
        the photo again at up to FULL_SEARCH_SIDE pixels, searched tile by tile (a 100 px face
        in a 4000 px photo is 25 px in the 1024 px copy, below the detectors' reach). A face
        found there is fitted on that larger image, so it keeps its pixels.

        Returns:
            (LoadedImage the later stages use, FaceLandmarks in its pixels, warnings).
        Raises:
            BadInputError: no face at either resolution.
        """
        from .errors import BadInputError
        from .files.photo import load_image

        try:
            face, notes = self.detector.detect_face(img.rgb)
            return img, face, notes
        except BadInputError:
            if img.scale >= 1.0:
                raise
        full = load_image(photo, max_side=FULL_SEARCH_SIDE)
        if full.scale <= img.scale:
            raise BadInputError("No face found in the photo.")
        faces = self.detector.detect_faces_tiled(full.rgb, tile=SEARCH_TILE)
        if not faces:
            raise BadInputError(f"No face found in the photo, also searched at "
                                f"{full.rgb.shape[1]}x{full.rgb.shape[0]} pixels.")
        notes = [f"The face is small in the photo ({faces[0].size / full.scale:.0f} px); it was "
                 f"found and fitted at {full.rgb.shape[1]}x{full.rgb.shape[0]} pixels."]
        if len(faces) > 1:
            notes.append(f"{len(faces)} faces found; using the largest.")
        return full, faces[0], notes

    def _arkit_for(self, params) -> tuple[list[str], np.ndarray] | None:
        """ARKit shapes adapted to the fitted identity, or None without the setup file."""
        if self.arkit is None:
            return None
        from .model.arkit import arkit_for_identity

        names, deltas = self.arkit
        shape = params.shape[0].detach().cpu().numpy().astype(np.float64)
        m = self.model
        v_neutral = m.v_template + m.shapedirs[:, :, :len(shape)] @ shape
        return names, arkit_for_identity(deltas, v_neutral, m.v_template, m.faces)


def _landmark_sources(network: Any, network_init: bool, scale: float) -> dict[str, Any]:
    """result.json's ``landmark_sources``: which detectors the fit used, the network's own 68
    points (original photo pixels) and head pose, and whether the rigid fit started from it."""
    out: dict[str, Any] = {"mediapipe": {"points": 478}}
    if network is not None:
        out["tddfa"] = {
            "model": "3DDFA_V2 MobileNet-x0.5 (MIT, trained on 300W-LP)",
            "landmarks_68": (np.asarray(network.landmarks) / scale).round(3).tolist(),
            "pitch_yaw_roll_deg": np.round(network.pitch_yaw_roll_deg, 3).tolist(),
            "initialised_pose": bool(network_init)}
    return out


def _load_arkit() -> tuple[list[str], np.ndarray] | None:
    from .model.arkit import load_arkit_on_flame
    from .errors import ModelFileError

    try:
        return load_arkit_on_flame()
    except ModelFileError as exc:
        log.warning("%s", exc)
        return None


def _floats(t: torch.Tensor) -> list[float]:
    return [float(x) for x in t.detach().cpu().reshape(-1)]


def _project(points_view: np.ndarray, cam) -> np.ndarray:
    """(N,3) view-frame points -> (N,2) pixels of the fitted image."""
    z = -points_view[:, 2]
    u = cam.cx + cam.focal * points_view[:, 0] / z
    v = cam.cy - cam.focal * points_view[:, 1] / z
    return np.stack([u, v], axis=1)


_ENGINES: dict[tuple, Engine] = {}


def get_engine(options: ReconstructOptions) -> Engine:
    """A cached warm engine for these device/flame/assets settings."""
    key = (options.device, options.flame, options.assets)
    if key not in _ENGINES:
        _ENGINES[key] = Engine(options)
    return _ENGINES[key]


def reconstruct(photo: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                options: ReconstructOptions | None = None, progress: ProgressFn | None = None,
                cancel: CancelFn | None = None) -> dict[str, Any]:
    """Reconstruct one photo into a bundle folder; see ``Engine.reconstruct``."""
    opts = options or ReconstructOptions()
    return get_engine(opts).reconstruct(photo, out_dir, opts, progress, cancel)
