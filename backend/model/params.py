"""The parameters a fit produces, shared by fitting stages, texture, detail and bundle writing."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import BadInputError


@dataclass
class Camera:
    """Pinhole camera in the view frame (see docs/ARCHITECTURE.md): -Z forward, +Y up."""

    focal: float  # pixels of the fitted image
    cx: float
    cy: float
    width: int
    height: int

    def scaled(self, s: float) -> "Camera":
        """The same camera for the image resized by factor ``s`` (e.g. back to the input photo)."""
        return Camera(self.focal * s, self.cx * s, self.cy * s,
                      int(round(self.width * s)), int(round(self.height * s)))

    def for_photo(self, image: np.ndarray) -> "Camera":
        """This camera for ``image``, the fitted photo at another resolution.

        Args:
            image: (H, W, 3) uint8 RGB.
        Returns:
            The camera scaled by ``W / width``, exactly W x H pixels.
        Raises:
            BadInputError: not such an image, or one of another aspect ratio.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise BadInputError("The photo must be an (H, W, 3) uint8 RGB image.")
        H, W = image.shape[:2]
        s = W / self.width
        if abs(self.height * s - H) > 1.0:
            raise BadInputError("The photo and the camera have different aspect ratios.")
        return Camera(self.focal * s, self.cx * s, self.cy * s, W, H)


@dataclass
class FitParams:
    """FLAME coefficients, pose, translation and lighting of one head (batch size 1).

    Attributes:
        shape: (1, S) identity coefficients.
        expression: (1, E) expression coefficients.
        pose: (1, J, 3) axis-angle per joint (root, neck, jaw, eye_L, eye_R).
        translation: (1, 3) view-frame translation in metres.
        sh: (1, 9, 3) second-order spherical-harmonics lighting (RGB).
        eyelids: (1, 2) blink weights (subject's left, right), 0 = open, 1 = closed.
    """

    shape: torch.Tensor
    expression: torch.Tensor
    pose: torch.Tensor
    translation: torch.Tensor
    camera: Camera
    sh: torch.Tensor = field(default_factory=lambda: torch.zeros(1, 9, 3))
    eyelids: torch.Tensor = field(default_factory=lambda: torch.zeros(1, 2))

    @staticmethod
    def zeros(n_shape: int, n_expr: int, n_joints: int, camera: Camera,
              device: torch.device | str = "cpu") -> "FitParams":
        sh = torch.zeros(1, 9, 3, device=device)
        sh[:, 0] = 1.0 / 0.886227  # ambient white such that shading == 1 for any normal
        return FitParams(
            shape=torch.zeros(1, n_shape, device=device),
            expression=torch.zeros(1, n_expr, device=device),
            pose=torch.zeros(1, n_joints, 3, device=device),
            translation=torch.tensor([[0.0, 0.0, -1.0]], device=device),
            camera=camera,
            sh=sh,
            eyelids=torch.zeros(1, 2, device=device),
        )

    def detached(self) -> "FitParams":
        return FitParams(*(t.detach().clone() if isinstance(t, torch.Tensor) else t for t in (
            self.shape, self.expression, self.pose, self.translation, self.camera, self.sh, self.eyelids)))

    def numpy(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k).detach().cpu().numpy()[0]
                for k in ("shape", "expression", "pose", "translation", "sh", "eyelids")}
