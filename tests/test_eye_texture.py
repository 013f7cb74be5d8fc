"""The bundle's eye texture (backend/appearance/eye_texture.py) and its layout on FLAME's
eyeballs (headrecon_addon/eye_layout.py), without Blender: tint hue and fibre detail, the pick
of the nearest texture, the setup copy, and the texture sampled through the eye UVs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.appearance import eye_texture as et
from backend.errors import ModelFileError
from backend.model.flame import load_flame
from headrecon_addon import eye_layout, naming

TARGETS = {  # iris colours (sRGB 0..1) as iris.py measures them on photos
    "blue": (0.30, 0.45, 0.60),
    "hazel": (0.35, 0.22, 0.12),
    "green": (0.25, 0.35, 0.20),
    "dark brown": (0.15, 0.10, 0.07),
    "amber": (0.60, 0.40, 0.20),
}
HUE_TOL_DEG = 3.0


@pytest.fixture(scope="module")
def eyes_dir(assets_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The eye textures installed by the real setup step into a private weights folder."""
    return et.setup_eye_textures(assets_dir, tmp_path_factory.mktemp("weights") / "eyes")


def _source_ring(eyes_dir: Path, name: str) -> np.ndarray:
    rgb = np.asarray(Image.open(eyes_dir / name).convert("RGB"))
    return et.iris_ring_lab(rgb)


@pytest.mark.parametrize("label", list(TARGETS))
def test_tinted_iris_has_the_target_hue_and_keeps_its_fibres(eyes_dir: Path, label: str) -> None:
    """The iris ring's median takes the target's hue (CIELAB) and lightness; its texels keep
    their spread (fibres), the sclera is untouched."""
    target = TARGETS[label]
    rgb, info = et.eye_texture(list(target), eyes_dir)
    assert rgb.shape == (et.SIZE, et.SIZE, 3) and rgb.dtype == np.uint8
    ring = et.iris_ring_lab(rgb)
    median, goal = np.median(ring, axis=0), et.srgb_to_lab(np.asarray(target))
    assert et.hue_difference_deg(et.hue_deg(median), et.hue_deg(goal)) < HUE_TOL_DEG
    assert abs(median[0] - goal[0]) < 2.0
    source = _source_ring(eyes_dir, info["source"])
    gain = goal[0] / np.median(source[:, 0])
    assert ring[:, 0].std() > 0.6 * gain * source[:, 0].std()  # fibre contrast kept
    assert ring[:, 0].std() > 2.0
    original = np.asarray(Image.open(eyes_dir / info["source"]).convert("RGBA"))
    sclera = (et.iris_radius_map() > 0.14) & (original[..., 3] > 0)
    assert np.abs(rgb[sclera].astype(int) - original[..., :3][sclera]).max() <= 1


def test_the_nearest_texture_is_tinted(eyes_dir: Path) -> None:
    picks = {label: et.eye_texture(list(c), eyes_dir)[1]["source"] for label, c in TARGETS.items()}
    assert picks["blue"] == "blue_eye.png" and picks["green"] == "green_eye.png"
    assert picks["dark brown"] == "brown_eye.png"
    assert picks["hazel"] in ("brown_eye.png", "brownlight_eye.png")


def test_no_iris_colour_gives_the_brown_texture_as_drawn(eyes_dir: Path) -> None:
    rgb, info = et.eye_texture(None, eyes_dir)
    assert info["source"] == et.DEFAULT_TEXTURE and info["tinted_to"] is None
    original = np.asarray(Image.open(eyes_dir / et.DEFAULT_TEXTURE).convert("RGBA"))
    opaque = original[..., 3] > 0
    assert np.array_equal(rgb[opaque], original[..., :3][opaque])


def test_setup_is_idempotent_and_checks_the_pins(assets_dir: Path, eyes_dir: Path,
                                                 tmp_path: Path, capsys) -> None:
    et.setup_eye_textures(assets_dir, eyes_dir)
    assert capsys.readouterr().out.count("is up to date") == len(et.EYE_FILES)
    fake = tmp_path / "assets"
    shutil.copytree(assets_dir / "eyes", fake / "eyes")
    (fake / "eyes" / "blue_eye.png").chmod(0o644)
    with (fake / "eyes" / "blue_eye.png").open("ab") as fh:
        fh.write(b"x")
    with pytest.raises(ModelFileError, match="blue_eye.png"):
        et.setup_eye_textures(fake, tmp_path / "out")


def test_without_the_textures_no_eye_png_and_a_warning(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HEADRECON_WEIGHTS", str(tmp_path / "empty_weights"))
    files, info, warnings = et.write_eye_texture(tmp_path, [0.3, 0.4, 0.5])
    assert files == {} and info is None and not (tmp_path / et.EYE_PNG).exists()
    assert len(warnings) == 1 and "setup-weights" in warnings[0]


def test_write_eye_texture(eyes_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HEADRECON_WEIGHTS", str(eyes_dir.parent))
    files, info, warnings = et.write_eye_texture(tmp_path, [0.3, 0.45, 0.6])
    assert files == {"eye": "eye.png"} and warnings == [] and info["source"] == "blue_eye.png"
    assert Image.open(tmp_path / "eye.png").size == (et.SIZE, et.SIZE)


# ----------------------------------------------------------------------------- layout


@pytest.fixture(scope="module")
def flame_eyes(dev_model_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(verts (V,3) FLAME frame, faces, corner UVs (F,3,2), limbus angles (2,))."""
    model = load_flame(dev_model_path)
    verts = model.v_template.astype(np.float64)
    uv, iris_deg = eye_layout.eye_texture_uv(verts, model.faces, naming.EYEBALL_VERTEX_RANGES)
    return verts, model.faces, uv, iris_deg


def _sample(rgb: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(N, 3) texels of ``rgb`` at UVs (N, 2) (origin bottom-left, nearest texel)."""
    size = rgb.shape[0]
    col = np.clip((uv[:, 0] * size).astype(int), 0, size - 1)
    row = np.clip(((1.0 - uv[:, 1]) * size).astype(int), 0, size - 1)
    return rgb[row, col]


def test_iris_lands_on_the_eyeball_front_with_its_real_size(flame_eyes) -> None:
    """Per eyeball: the front pole on its disc's pupil centre, every vertex within 0.9 of the
    iris radius (11.7 mm / 2 from the forward axis) inside the texture's limbus, every vertex
    beyond 1.1 of it outside; faces well behind the iris never reach into it."""
    verts, faces, uv, iris_deg = flame_eyes
    assert np.all((iris_deg > 20.0) & (iris_deg < 32.0))
    for k, (start, stop) in enumerate(naming.EYEBALL_VERTEX_RANGES):
        centre, radius = eye_layout.fit_sphere(verts[start:stop])
        assert 0.011 < radius < 0.014
        corner_v = faces.reshape(-1)
        corner_uv = uv.reshape(-1, 2)
        mine = (corner_v >= start) & (corner_v < stop)
        d = verts[corner_v[mine]] - centre
        off_axis = np.hypot(d[:, 0], d[:, 1])  # distance from the forward axis (metres)
        front = d[:, 2] > 0
        r_tex = np.linalg.norm(corner_uv[mine] - np.asarray(eye_layout.DISC_CENTRES[k]), axis=1)
        half_iris = eye_layout.IRIS_DIAMETER_M / 2.0
        assert r_tex[front & (off_axis < 0.9 * half_iris)].max() < eye_layout.IRIS_RADIUS
        assert r_tex[~front | (off_axis > 1.1 * half_iris)].min() > eye_layout.IRIS_RADIUS
        pole = np.argmax(d[:, 2])
        assert r_tex[pole] < 0.005
        temporal = front & (off_axis < half_iris) & ((d[:, 0] > 0) if k == 0 else (d[:, 0] < 0))
        assert (corner_uv[mine][temporal, 0] > eye_layout.DISC_CENTRES[k][0]).all()  # +U temporal
        up = front & (off_axis < half_iris) & (d[:, 1] > 0.002)
        assert (corner_uv[mine][up, 1] > eye_layout.DISC_CENTRES[k][1]).all()  # +V up


def test_texture_through_the_uvs_shows_pupil_iris_and_sclera(flame_eyes, eyes_dir: Path) -> None:
    """A blue-tinted texture sampled at the eyeball vertices' UVs: dark at the pole, blue
    (the target's hue) on the iris, light sclera at 45 degrees and on the hidden back."""
    verts, faces, uv, iris_deg = flame_eyes
    target = TARGETS["blue"]
    rgb, _ = et.eye_texture(list(target), eyes_dir)
    for k, (start, stop) in enumerate(naming.EYEBALL_VERTEX_RANGES):
        centre, _ = eye_layout.fit_sphere(verts[start:stop])
        corner_v, corner_uv = faces.reshape(-1), uv.reshape(-1, 2)
        mine = (corner_v >= start) & (corner_v < stop)
        d = verts[corner_v[mine]] - centre
        theta = np.degrees(np.arccos(np.clip(d[:, 2] / np.linalg.norm(d, axis=1), -1, 1)))
        texels = _sample(rgb, corner_uv[mine]).astype(np.float64) / 255.0
        assert texels[theta < 1.0].max() < 0.15  # pupil
        iris = (theta > 0.45 * iris_deg[k]) & (theta < 0.8 * iris_deg[k])
        lab = et.srgb_to_lab(np.median(texels[iris], axis=0))
        goal = et.srgb_to_lab(np.asarray(target))
        assert et.hue_difference_deg(et.hue_deg(lab), et.hue_deg(goal)) < 10.0
        sclera = (theta > 40.0) & (theta < 50.0)
        assert np.median(texels[sclera].mean(axis=1)) > 0.5
        assert texels[theta > 120.0].mean(axis=1).min() > 0.4  # the back: sclera, no iris
