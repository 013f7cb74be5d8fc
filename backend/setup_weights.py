"""``python -m backend setup-weights``: put every model file the backend needs into weights/.

Steps (each idempotent, each prints what it did):

1. MediaPipe face models: copied out of the installed ``mediapipe==0.10.14`` wheel
   (Apache-2.0) into ``weights/mediapipe/`` together with the wheel's licence text;
   every file is checked against its pinned size and SHA-256.
2. ARKit-named expression shapes on FLAME, computed from ICT-FaceKit (MIT) in the assets
   into ``weights/arkit_on_flame.npz`` (backend/model/arkit.py).
3. The large-pose landmark network (3DDFA_V2 MobileNet, MIT) with its licence, copied from the
   assets' ``tddfa/`` into ``weights/tddfa/`` (backend/landmarks/tddfa.py).
4. MediaPipe-105 landmark embedding calibrated on synthetic FLAME renders into
   ``weights/mediapipe_flame_embedding_calibrated.npz`` (backend/landmarks/calibration.py).
5. The segmentation models (face parser, hair model) with a licence notice, copied from the
   assets' ``segmentation/`` into ``weights/segmentation/`` (backend/appearance/segmentation.py),
   and MediaPipe's hand models from the wheel beside them (backend/appearance/hands.py).
6. The CC0 eye textures (MakeHuman) with their licence, copied from the assets' ``eyes/`` into
   ``weights/eyes/`` (backend/appearance/eye_texture.py).
7. Further steps are added below the marked hook by the engineers who own them.
"""

from __future__ import annotations

import os

from .landmarks.mediapipe_files import setup_mediapipe
from .landmarks.tddfa import setup_tddfa
from .model.assets import assets_dir


def setup_weights(assets: str | os.PathLike[str] | None = None) -> None:
    """Run every setup step; ``assets`` is the assets folder for steps that read from it.

    Raises:
        ModelFileError: a source file is missing or has the wrong hash.
    """
    setup_mediapipe()
    # 3DDFA_V2 MobileNet (MIT, trained on 300W-LP): large-pose 68 landmarks and head pose.
    setup_tddfa(assets_dir(assets))
    # ---- HOOK: further setup steps go here (each idempotent, printing what it did). ----

    # Teeth and tongue (MakeHuman, CC0) for the mouth interior (backend/model/mouth.py).
    from .model.mouth import setup_mouth

    setup_mouth(assets_dir(assets))

    # Skin/hair segmentation (face parser, non-commercial weights; hair model, Apache-2.0).
    from .appearance.segmentation import setup_segmentation

    setup_segmentation(assets_dir(assets))
    # MediaPipe's hand models (Apache-2.0, from the wheel): hands over the face stay off the skin.
    from .appearance.hands import setup_hands

    setup_hands()
    # CC0 eye textures (MakeHuman) for the bundle's eye.png (backend/appearance/eye_texture.py).
    from .appearance.eye_texture import setup_eye_textures

    setup_eye_textures(assets_dir(assets))

    # ARKit-named shapes on FLAME, transferred from ICT-FaceKit (backend/model/arkit.py).
    from .model.arkit import ensure_arkit_on_flame

    ensure_arkit_on_flame(assets)

    # MediaPipe-105 embedding re-fitted to MediaPipe's detections on synthetic FLAME renders
    # (backend/landmarks/calibration.py; LandmarkEmbedding.load prefers it).
    from .landmarks.calibration import ensure_calibrated_embedding

    ensure_calibrated_embedding(assets)

    # The fixed 68-point embedding re-fitted to the large-pose network's detections on the same
    # kind of renders (landmarks_68 in AFLW2000-3D's definition; LandmarkEmbedding.load prefers it).
    from .landmarks.calibration import ensure_calibrated_fixed68

    ensure_calibrated_fixed68(assets)
