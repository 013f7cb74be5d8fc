"""MediaPipe's face models, pinned, and the setup step that copies them out of the wheel.

``mediapipe==0.10.14`` (Apache-2.0) carries its models; ``setup_mediapipe`` copies them with the
wheel's licence into ``weights/mediapipe/`` and checks each against its pinned size and SHA-256.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ModelFileError
from ..model.assets import weights_dir
from ..model.pinned import PinnedFile, install_pinned

MEDIAPIPE_VERSION = "0.10.14"
MEDIAPIPE_SUBDIR = "mediapipe"


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
    return install_pinned(MEDIAPIPE_FILES, mediapipe_site_packages, dest_dir,
                          f"install mediapipe=={MEDIAPIPE_VERSION} (./setup.sh) and run "
                          "setup-weights again.")


def offline_graph_text(graph: str, model_dir: Path, extensions: tuple[str, ...] = ("tflite",)) -> str:
    """Expand the MediaPipe subgraphs of ``graph`` (a CalculatorGraphConfig text) and point every
    packaged file with one of ``extensions`` into ``model_dir``, so the wheel's copies are never
    read.

    Raises:
        ModelFileError: a packaged path is left (another mediapipe version).
    """
    from mediapipe.python._framework_bindings import validated_graph_config

    validated = validated_graph_config.ValidatedGraphConfig()
    validated.initialize(graph_config=graph)
    pattern = r'"mediapipe/modules/[^"]*/([^"/]+\.(?:' + "|".join(extensions) + r'))"'
    text = re.sub(pattern, lambda m: '"' + str((Path(model_dir) / m.group(1)).resolve()) + '"',
                  validated.text_config)
    if "mediapipe/modules/" in text:
        raise ModelFileError("A MediaPipe graph still refers to a packaged file; install "
                             f"mediapipe=={MEDIAPIPE_VERSION}.")
    return text
