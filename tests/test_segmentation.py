"""Skin-only appearance (issue 14 part 1): the segmenter on real photos, its fallbacks, and the
texture/albedo sampling that leaves hair out.

Real models (weights/segmentation, copied by setup-weights), real eval photos, real pipeline
runs (quality fast, no detail stage, to keep the file under two minutes).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.appearance.segmentation import (HAIR, HAIR_FILE, LABELS, NOT_HAIR, PARSER_FILE,
                                             SEGMENTATION_SUBDIR, Segmenter, load_segmenter)
from backend.appearance.texture import sample_photo_texture
from backend.appearance.uvmaps import region_mask
from backend.fit.render import rasterize
from backend.model.assets import weights_dir
from backend.model.params import Camera
from backend.model.uv import load_uv_layout
from backend.options import ReconstructOptions

BANGS = "expression_1.jpg"  # heavy bangs over the whole forehead, long hair over the cheeks
BALD = "alfw2.png"  # bald head: no hair above the brows
NOSE = 4  # MediaPipe face-mesh point on the nose


@pytest.fixture(scope="module")
def seg_folder() -> Path:
    folder = weights_dir() / SEGMENTATION_SUBDIR
    for pin in (PARSER_FILE, HAIR_FILE):
        assert (folder / pin.name).is_file(), f"{folder / pin.name} missing: run ./setup.sh"
    return folder


def _photo(eval_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 photo and its (478, 2) MediaPipe points."""
    from backend.landmarks.mediapipe_mesh import detect_face

    rgb = np.asarray(Image.open(eval_dir / "photos" / name).convert("RGB"))
    face, _ = detect_face(rgb)
    return rgb, face.points[:, :2]


def _top_band(points: np.ndarray) -> tuple[slice, slice]:
    """Top 15 % of the face-mesh box, middle half of its width (the upper forehead)."""
    (x0, y0), (x1, y1) = points.min(0), points.max(0)
    w, h = x1 - x0, y1 - y0
    return slice(int(y0), int(y0 + 0.15 * h)), slice(int(x0 + 0.25 * w), int(x1 - 0.25 * w))


@pytest.mark.parametrize("model", ["face_parser", "hair"])
def test_segmenter_labels_hair_and_skin_on_real_photos(model: str, seg_folder: Path,
                                                       eval_dir: Path) -> None:
    seg = Segmenter(seg_folder / PARSER_FILE.name, None) if model == "face_parser" \
        else Segmenter(None, seg_folder / HAIR_FILE.name)
    assert seg.model == model
    for name, hair_expected in ((BANGS, True), (BALD, False)):
        rgb, pts = _photo(eval_dir, name)
        out = seg.segment(rgb, pts)
        assert out.labels.shape == rgb.shape[:2] and out.labels.dtype == np.uint8
        band = _top_band(pts)
        hair = float((out.labels[band] == HAIR).mean())
        skin = out.skin_mask()
        nx, ny = pts[NOSE].astype(int)
        assert skin[ny, nx], f"{name}: the nose is not skin"
        if model == "face_parser":
            assert LABELS[out.labels[ny, nx]] in ("nose", "skin")
            assert set(np.unique(out.labels)) <= set(range(len(LABELS)))
        else:
            assert set(np.unique(out.labels)) <= {HAIR, NOT_HAIR}
        if hair_expected:
            assert hair > 0.9, f"{name}: only {hair:.2f} of the forehead band is hair"
            assert skin[band].mean() < 0.05
        else:
            assert hair < 0.05, f"{name}: {hair:.2f} of a bald forehead called hair"
            assert skin[band].mean() > 0.9
        # Erosion: the allowed area is the label area shrunk by 2 px.
        raw = out.skin_mask(erode_px=0)
        assert skin.sum() < raw.sum() and not (skin & ~raw).any()
    # Same photo, same labels (single-threaded interpreter).
    rgb, pts = _photo(eval_dir, BANGS)
    np.testing.assert_array_equal(seg.segment(rgb, pts).labels, seg.segment(rgb, pts).labels)


def test_hands_over_the_face_are_not_skin(seg_folder: Path, eval_dir: Path) -> None:
    """alfw1: a hand holds a phone against the cheek (the parser calls the hand skin);
    MediaPipe's hand landmarker finds it and its pixels leave the skin mask. No hand is
    invented on a photo without one; the labels repeat exactly."""
    from backend.appearance.hands import HandDetector
    from backend.appearance.segmentation import HAND

    plain = Segmenter(seg_folder / PARSER_FILE.name, None)
    with_hands = Segmenter(seg_folder / PARSER_FILE.name, None, hands=HandDetector())
    rgb, pts = _photo(eval_dir, "alfw1.png")
    before, after = plain.segment(rgb, pts), with_hands.segment(rgb, pts)
    assert before.hands is None and after.hands == 1
    hand = after.labels == HAND
    assert 0.05 < hand.mean() < 0.4
    # Inside the hand, the parser had said skin for a good part: those pixels are now excluded.
    was_skin = before.skin_mask() & hand
    assert was_skin.sum() > 200 and not (after.skin_mask() & hand).any()
    # The face itself (nose) stays skin; the hand lies to the subject's left of the face.
    nx, ny = pts[NOSE].astype(int)
    assert after.skin_mask()[ny, nx] and np.nonzero(hand)[1].mean() > nx
    assert after.describe()["hands"]["found"] == 1
    np.testing.assert_array_equal(with_hands.segment(rgb, pts).labels, after.labels)
    rgb, pts = _photo(eval_dir, BANGS)
    assert with_hands.segment(rgb, pts).hands == 0


def test_load_segmenter_prefers_parser_then_hair_then_none(seg_folder: Path, tmp_path: Path) -> None:
    seg, warnings = load_segmenter()
    assert seg is not None and seg.model == "face_parser" and warnings == []
    assert seg.hand_detector is not None
    describe_keys = {"model", "labels", "licence"}
    only_hair = tmp_path / "hair_only"
    (only_hair / SEGMENTATION_SUBDIR).mkdir(parents=True)
    shutil.copyfile(seg_folder / HAIR_FILE.name, only_hair / SEGMENTATION_SUBDIR / HAIR_FILE.name)
    seg, warnings = load_segmenter(only_hair)
    assert seg is not None and seg.model == "hair" and seg.hand_detector is None
    assert any("face parser is missing" in w for w in warnings)
    assert any("Hand model file(s)" in w for w in warnings)
    empty = tmp_path / "empty"
    empty.mkdir()
    seg, warnings = load_segmenter(empty)
    assert seg is None and any("No segmentation model" in w for w in warnings)
    broken = tmp_path / "broken"
    (broken / SEGMENTATION_SUBDIR).mkdir(parents=True)
    (broken / SEGMENTATION_SUBDIR / PARSER_FILE.name).write_bytes(b"not a model")
    shutil.copyfile(seg_folder / HAIR_FILE.name, broken / SEGMENTATION_SUBDIR / HAIR_FILE.name)
    seg, warnings = load_segmenter(broken)
    assert seg is not None and seg.model == "hair"
    assert any("unusable" in w for w in warnings)
    from backend.appearance.segmentation import Segmentation

    assert describe_keys <= set(Segmentation(np.zeros((2, 2), np.uint8), "face_parser").describe())
    assert "non-commercial" in Segmentation(np.zeros((2, 2), np.uint8), "face_parser").describe()["licence"]


def test_texture_treats_hair_pixels_as_unseen(assets_dir: Path, dev_model_path: Path) -> None:
    """Synthetic: the dev head rendered in skin colour, 'hair' painted over its upper third.
    With the hair excluded by the mask, no texel takes the hair colour and the painted texels
    are unseen; without it, the forehead texels are hair-coloured."""
    size, tex_size = 384, 256
    cam = Camera(focal=800.0, cx=size / 2, cy=size / 2, width=size, height=size)
    data = np.load(dev_model_path)
    verts = data["v_template"].astype(np.float64) + np.array([0.0, 0.0, -0.6])
    faces = data["f"].astype(np.int64)
    frags = rasterize(torch.tensor(verts)[None], torch.from_numpy(faces), cam.focal, cam.cx,
                      cam.cy, size, size)
    head = frags.mask[0].numpy()
    rows = np.nonzero(head.any(1))[0]
    skin_rgb, hair_rgb = np.array([200, 150, 130], np.uint8), np.array([60, 40, 20], np.uint8)
    photo = np.zeros((size, size, 3), np.uint8)
    photo[head] = skin_rgb
    hair = head & (np.arange(size)[:, None] < rows[0] + (rows[-1] - rows[0]) // 3)
    photo[hair] = hair_rgb
    layout = load_uv_layout(assets_dir)
    plain = sample_photo_texture(photo, verts, faces, layout, cam, size=tex_size)
    masked = sample_photo_texture(photo, verts, faces, layout, cam, size=tex_size, skin_mask=~hair)

    def hairy(tex: np.ndarray) -> np.ndarray:
        seen = tex[..., 3] == 255
        return seen & (np.abs(tex[..., :3].astype(int) - hair_rgb).sum(-1) < 60)

    forehead = region_mask(assets_dir, ("forehead",), tex_size)
    assert hairy(plain)[forehead].mean() > 0.3  # the painted band does reach the forehead
    assert not hairy(masked).any()
    seen_plain, seen_masked = plain[..., 3] == 255, masked[..., 3] == 255
    assert not (seen_masked & ~seen_plain).any()
    lost = seen_plain & ~seen_masked
    assert lost[forehead].mean() > 0.3 and (masked[lost, :3] == 0).all()
    # Texels on the skin part keep their colour.
    np.testing.assert_array_equal(masked[seen_masked], plain[seen_masked])


# --------------------------------------------------------------------------- pipeline


def _weights_without_segmentation(tmp: Path) -> Path:
    """A weights folder holding every entry of weights/ except segmentation/ (links)."""
    tmp.mkdir()
    for entry in weights_dir().iterdir():
        if entry.name != SEGMENTATION_SUBDIR:
            (tmp / entry.name).symlink_to(entry)
    return tmp


@pytest.fixture(scope="module")
def bangs_runs(eval_dir: Path, dev_model_path: Path, seg_folder: Path,
               tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    """The bangs photo reconstructed with the face parser and with no segmentation model."""
    from backend.pipeline import Engine

    base = tmp_path_factory.mktemp("seg_pipeline")
    opts = ReconstructOptions(quality="fast", detail=False, flame=str(dev_model_path))
    photo = eval_dir / "photos" / BANGS
    runs: dict[str, tuple[Path, dict]] = {}
    engine = Engine(opts)
    runs["parser"] = (base / "parser", engine.reconstruct(photo, base / "parser", opts))
    old = os.environ.get("HEADRECON_WEIGHTS")
    os.environ["HEADRECON_WEIGHTS"] = str(_weights_without_segmentation(base / "weights"))
    try:
        bare = Engine(opts)
    finally:
        if old is None:
            del os.environ["HEADRECON_WEIGHTS"]
        else:
            os.environ["HEADRECON_WEIGHTS"] = old
    assert bare.segmenter is None
    runs["none"] = (base / "none", bare.reconstruct(photo, base / "none", opts))
    return runs


def test_pipeline_without_segmentation_warns_and_works(bangs_runs) -> None:
    out, result = bangs_runs["none"]
    assert any("No segmentation model" in w for w in result["warnings"])
    assert result["segmentation"] == {"model": None}
    assert not (out / "segmentation.png").exists() and "segmentation" not in result["files"]
    assert "segmentation" not in result["timings"]
    for f in ("texture.png", "albedo.png", "mesh.obj", "rig.npz"):
        assert (out / f).is_file()


def test_pipeline_writes_segmentation_and_keeps_hair_off_the_forehead(
        bangs_runs, eval_dir: Path, assets_dir: Path) -> None:
    out, result = bangs_runs["parser"]
    seg = result["segmentation"]
    assert seg["model"].startswith("BiSeNetV2") and "non-commercial" in seg["licence"]
    assert seg["labels"] == list(LABELS)
    assert json.loads((out / "result.json").read_text())["segmentation"] == seg
    with Image.open(out / "segmentation.png") as im:
        assert im.mode == "P"
        labels = np.asarray(im)
    photo = Image.open(eval_dir / "photos" / BANGS)
    assert labels.shape == (photo.height, photo.width)
    assert (labels == HAIR).mean() > 0.2 and (labels == LABELS.index("skin")).mean() > 0.05
    assert result["timings"]["segmentation"] > 0

    # The subject's skin colour: median photo colour of the parser's skin pixels.
    rgb = np.asarray(photo.convert("RGB"))
    skin_rgb = np.median(rgb[labels == LABELS.index("skin")], axis=0)
    none_out = bangs_runs["none"][0]
    tex = {k: np.asarray(Image.open(d / "texture.png")) for k, d in (("new", out), ("old", none_out))}
    alb = {k: np.asarray(Image.open(d / "albedo.png").convert("RGB")).astype(float)
           for k, d in (("new", out), ("old", none_out))}
    size = tex["new"].shape[0]
    forehead = region_mask(assets_dir, ("forehead",), size)
    # The bangs cover the forehead: no forehead texel is taken from the photo any more
    # (before, most were, in hair colour).
    assert (tex["old"][..., 3][forehead] == 255).mean() > 0.5
    assert (tex["new"][..., 3][forehead] == 255).mean() < 0.05
    old_d = np.linalg.norm(tex["old"][..., :3][forehead & (tex["old"][..., 3] == 255)] - skin_rgb, axis=-1)
    assert old_d.mean() > 100  # hair colour, far from the skin
    # The completed albedo's forehead is much closer to the subject's (de-lit) skin.
    seen_skin = (tex["new"][..., 3] == 255) & region_mask(assets_dir, ("face",), size)
    ref = np.median(alb["new"][seen_skin], axis=0)
    d_old = np.linalg.norm(alb["old"][forehead] - ref, axis=-1).mean()
    d_new = np.linalg.norm(alb["new"][forehead] - ref, axis=-1).mean()
    assert d_new < 0.7 * d_old, (d_old, d_new)
    assert math.isfinite(d_new)
