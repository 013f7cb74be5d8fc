"""``python -m backend setup-weights``: put every model file the backend needs into weights/.

Steps (each idempotent, each prints what it did):

1. MediaPipe face models: copied out of the installed ``mediapipe==0.10.14`` wheel
   (Apache-2.0) into ``weights/mediapipe/`` together with the wheel's licence text;
   every file is checked against its pinned size and SHA-256.
2. ARKit-named expression shapes on FLAME, computed from ICT-FaceKit (MIT) in the assets
   into ``weights/arkit_on_flame.npz`` (backend/arkit.py).
3. MediaPipe-105 landmark embedding calibrated on synthetic FLAME renders into
   ``weights/mediapipe_flame_embedding_calibrated.npz`` (backend/landmark_calibration.py).
4. Further steps are added below the marked hook by the engineers who own them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .assets import weights_dir
from .errors import ModelFileError

MEDIAPIPE_VERSION = "0.10.14"
MEDIAPIPE_SUBDIR = "mediapipe"


@dataclass(frozen=True)
class PinnedFile:
    """One file taken from the mediapipe wheel: where it is in the package, size, SHA-256."""

    name: str  # file name inside weights/mediapipe/
    package_relpath: str  # relative to site-packages/
    size: int
    sha256: str


MEDIAPIPE_FILES: tuple[PinnedFile, ...] = (
    PinnedFile("face_detection_short_range.tflite",
               "mediapipe/modules/face_detection/face_detection_short_range.tflite", 229714,
               "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"),
    PinnedFile("face_detection_full_range_sparse.tflite",
               "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite", 676746,
               "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"),
    PinnedFile("face_landmark_with_attention.tflite",
               "mediapipe/modules/face_landmark/face_landmark_with_attention.tflite", 2495106,
               "e06a804e0144f9929eda782122916b35d60c697c3c9344013ca2bbe76a6ce2b4"),
    PinnedFile("face_landmark.tflite",
               "mediapipe/modules/face_landmark/face_landmark.tflite", 1242398,
               "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"),
    PinnedFile("LICENSE", f"mediapipe-{MEDIAPIPE_VERSION}.dist-info/LICENSE", 12331,
               "8707eef0533987efc5b155d64761eeb6e20793f50b9bd1a68dad1cf4719d0ed8"),
)


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def matches_pin(path: Path, pin: PinnedFile) -> bool:
    """True when ``path`` is a file with the pinned size and SHA-256."""
    return path.is_file() and path.stat().st_size == pin.size and sha256_of(path) == pin.sha256


def mediapipe_site_packages() -> Path:
    """The folder that holds the installed ``mediapipe`` package (site-packages)."""
    try:
        import mediapipe
    except ImportError as exc:
        raise ModelFileError(
            f"The mediapipe package is not installed; run ./setup.sh (needs mediapipe=={MEDIAPIPE_VERSION})."
        ) from exc
    return Path(mediapipe.__file__).resolve().parent.parent


def setup_mediapipe(target: Path | None = None) -> Path:
    """Copy the pinned MediaPipe models and licence into ``target`` (default weights/mediapipe).

    Files already present with the right hash are left alone. Raises ModelFileError when the
    installed wheel does not hold the pinned files (another mediapipe version).

    Returns:
        The folder holding the models.
    """
    dest_dir = Path(target) if target is not None else weights_dir() / MEDIAPIPE_SUBDIR
    dest_dir.mkdir(parents=True, exist_ok=True)
    site = None
    for pin in MEDIAPIPE_FILES:
        dest = dest_dir / pin.name
        if matches_pin(dest, pin):
            print(f"setup-weights: {dest} is up to date")
            continue
        site = site or mediapipe_site_packages()
        src = site / pin.package_relpath
        if not matches_pin(src, pin):
            raise ModelFileError(
                f"{src} is missing or differs from the mediapipe {MEDIAPIPE_VERSION} wheel; "
                f"install mediapipe=={MEDIAPIPE_VERSION} (./setup.sh) and run setup-weights again."
            )
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        print(f"setup-weights: copied {pin.name} -> {dest}")
    return dest_dir


def setup_weights(assets: str | os.PathLike[str] | None = None) -> None:
    """Run every setup step; ``assets`` is the assets folder for steps that read from it.

    Raises:
        ModelFileError: a source file is missing or has the wrong hash.
    """
    setup_mediapipe()
    # ---- HOOK: further setup steps go here (each idempotent, printing what it did). ----

    # ARKit-named shapes on FLAME, transferred from ICT-FaceKit (backend/arkit.py).
    from .arkit import ensure_arkit_on_flame

    ensure_arkit_on_flame(assets)

    # MediaPipe-105 embedding re-fitted to MediaPipe's detections on synthetic FLAME renders
    # (backend/landmark_calibration.py; LandmarkEmbedding.load prefers it).
    from .landmark_calibration import ensure_calibrated_embedding

    ensure_calibrated_embedding(assets)
