"""UV layout, UV rasterization, photo texture sampling and the overlay image.

The "photo" is a synthetic render of the dev FLAME template whose colour is a known smooth
function of UV, so the sampled texture can be compared with that function texel by texel.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.errors import BadInputError, ModelFileError
from backend.appearance.overlay import draw_overlay
from backend.model.params import Camera
from backend.fit.render import interpolate_face_varying, rasterize
from backend.appearance.texture import project_texels, sample_photo_texture
from backend.model.uv import UV_OBJ_RELPATH, load_uv_layout, uv_rasterize

SIZE = 512  # photo side in pixels
TEX = 512  # texture side in texels
CAM = Camera(focal=1000.0, cx=256.0, cy=256.0, width=SIZE, height=SIZE)
YAW_DEG = 30.0


def colour_of_uv(uv: np.ndarray) -> np.ndarray:
    """(..., 2) UV -> (..., 3) RGB in [0, 1], smooth (periods of 1/2 in u and v)."""
    u, v = uv[..., 0], uv[..., 1]
    return np.stack([0.5 + 0.35 * np.sin(4 * np.pi * u), 0.5 + 0.35 * np.cos(4 * np.pi * v),
                     0.3 + 0.4 * u * v], -1)


@pytest.fixture(scope="module")
def layout(assets_dir: Path):
    return load_uv_layout(assets_dir)


@pytest.fixture(scope="module")
def scene(dev_model_path: Path, layout):
    """Dev head turned 30 degrees to its left at 0.6 m, rendered with colour_of_uv."""
    data = np.load(dev_model_path)
    a = math.radians(YAW_DEG)
    rot = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rest = data["v_template"].astype(np.float64)
    verts = rest @ rot.T + np.array([0.0, 0.0, -0.6])
    faces = data["f"].astype(np.int64)
    frags = rasterize(torch.tensor(verts, dtype=torch.float64)[None], torch.from_numpy(faces),
                      CAM.focal, CAM.cx, CAM.cy, SIZE, SIZE)
    uv_img = interpolate_face_varying(torch.from_numpy(layout.face_uvs()).double(), frags)[0].numpy()
    mask = frags.mask[0].numpy()
    photo = np.where(mask[..., None], colour_of_uv(uv_img), 0.0)
    photo8 = np.clip(np.rint(photo * 255), 0, 255).astype(np.uint8)
    return {"rest": rest, "verts": verts, "faces": faces, "photo": photo8, "uv_img": uv_img,
            "depth": frags.depth[0].numpy(), "mask": mask}


def test_uv_layout_matches_flame_faces(assets_dir: Path, dev_model_path: Path, layout) -> None:
    faces = np.load(dev_model_path)["f"].astype(np.int64)
    assert layout.uv_faces.shape == faces.shape
    assert layout.uv.shape == (5118, 2)
    assert layout.uv.min() >= 0.0 and layout.uv.max() <= 1.0
    # Passing the model's faces (same order) changes nothing.
    same = load_uv_layout(assets_dir, model_faces=faces)
    np.testing.assert_array_equal(same.uv_faces, layout.uv_faces)
    # A reordered face list with rotated corners gets the matching UV corners.
    perm = np.random.default_rng(0).permutation(len(faces))
    shuffled = np.roll(faces[perm], 1, axis=1)
    moved = load_uv_layout(assets_dir, model_faces=shuffled)
    np.testing.assert_array_equal(moved.uv_faces, np.roll(layout.uv_faces[perm], 1, axis=1))
    # UV seams: the same vertex can have several UVs, but each UV belongs to one vertex.
    owner = np.full(len(layout.uv), -1)
    owner[layout.uv_faces.ravel()] = faces.ravel()
    assert np.array_equal(owner[layout.uv_faces], faces)


def test_uv_layout_rejects_foreign_faces(assets_dir: Path, dev_model_path: Path) -> None:
    faces = np.load(dev_model_path)["f"].astype(np.int64)
    flipped = faces[:, ::-1].copy()
    with pytest.raises(ModelFileError):
        load_uv_layout(assets_dir, model_faces=flipped)
    with pytest.raises(ModelFileError):
        load_uv_layout(assets_dir, model_faces=faces[:-1])


def test_uv_obj_without_texture_coordinates_is_refused(tmp_path: Path) -> None:
    (tmp_path / "uv").mkdir()
    (tmp_path / UV_OBJ_RELPATH).write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(ModelFileError):
        load_uv_layout(tmp_path)


def test_uv_rasterize_texel_centres(layout) -> None:
    """Barycentrics reproduce each texel centre's UV (row 0 = top, v flipped)."""
    r = uv_rasterize(layout, 256)
    assert r is uv_rasterize(layout, 256)  # cached
    rows, cols = np.nonzero(r.mask)
    assert 0.85 < r.mask.mean() < 0.95  # the FLAME atlas covers about 90 % of the square
    uv = np.einsum("nk,nkc->nc", r.bary[rows, cols], layout.face_uvs()[r.face_idx[rows, cols]])
    expected = np.stack([(cols + 0.5) / 256, 1 - (rows + 0.5) / 256], 1)
    np.testing.assert_allclose(uv, expected, atol=1e-5)
    assert r.bary[rows, cols].min() > -1e-5 and r.bary[rows, cols].max() < 1 + 1e-5
    # The two eyeball islands sit in the top corners of the atlas: top-left texels are covered.
    assert r.mask[18, 18] and not r.mask[0, 64]


def test_sampled_texture_reproduces_the_uv_function(scene, layout) -> None:
    """Visible texels carry colour_of_uv(texel centre). Tolerances: where the 2x2 pixels a
    bilinear lookup reads all lie within 0.005 in UV of the texel (no seam or fold in between),
    every texel is within 3/255 (bilinear interpolation + 8-bit rounding of the photo); over all
    visible texels, 99 % are within 2/255."""
    tex = sample_photo_texture(scene["photo"], scene["verts"], scene["faces"], layout, CAM, TEX)
    assert tex.shape == (TEX, TEX, 4) and tex.dtype == np.uint8
    assert set(np.unique(tex[..., 3])) == {0, 255}
    vis = tex[..., 3] == 255
    rows, cols = np.nonzero(vis)
    uv = np.stack([(cols + 0.5) / TEX, 1 - (rows + 0.5) / TEX], 1)
    err = np.abs(tex[rows, cols, :3] / 255.0 - colour_of_uv(uv)).max(1) * 255
    assert np.percentile(err, 99) <= 2.0

    proj = project_texels(scene["verts"], scene["faces"], layout, CAM, TEX)
    sel = proj.visible
    px = proj.pixels[sel]
    x0 = np.clip(np.floor(px[:, 0] - 0.5).astype(int), 0, SIZE - 2)
    y0 = np.clip(np.floor(px[:, 1] - 0.5).astype(int), 0, SIZE - 2)
    uv_t = np.stack([(proj.cols[sel] + 0.5) / TEX, 1 - (proj.rows[sel] + 0.5) / TEX], 1)
    spread = np.zeros(len(px))
    for dy in (0, 1):
        for dx in (0, 1):
            spread = np.maximum(spread, np.abs(scene["uv_img"][y0 + dy, x0 + dx] - uv_t).max(1))
    smooth = spread < 0.005
    assert smooth.mean() > 0.85
    err_t = np.abs(tex[proj.rows[sel], proj.cols[sel], :3] / 255.0 - colour_of_uv(uv_t)).max(1) * 255
    assert err_t[smooth].max() <= 3.0
    # Invisible texels are transparent black.
    assert (tex[~vis] == 0).all()


def test_visibility_front_back_and_occlusion(scene, layout, assets_dir: Path) -> None:
    proj = project_texels(scene["verts"], scene["faces"], layout, CAM, TEX)
    # Back of the head (rest surface normal pointing backwards, n_z < -0.5) is never visible.
    face = uv_rasterize(layout, TEX).face_idx[proj.rows, proj.cols]
    rest_tri = scene["rest"][scene["faces"][face]]
    rest_n = np.cross(rest_tri[:, 1] - rest_tri[:, 0], rest_tri[:, 2] - rest_tri[:, 0])
    back = rest_n[:, 2] < -0.5 * np.linalg.norm(rest_n, axis=1)
    assert back.sum() > 0.1 * len(back)
    assert not proj.visible[back].any()
    # Most of the face region (UV mask "face") is visible at 30 degrees yaw (72 % measured:
    # the far cheek and the far side of the nose are hidden or grazing).
    masks = np.load(assets_dir / "masks" / "flame_uv_masks_2048.npz")
    step = 2048 // TEX
    face_region = masks["face"][step // 2::step, step // 2::step][proj.rows, proj.cols]
    assert proj.visible[face_region].mean() > 0.65
    # Consistency with the rasterizer: at each visible texel's pixel the depth buffer shows
    # the texel's own depth (within 2 mm).
    vis = proj.visible
    px = np.clip(np.floor(proj.pixels[vis]).astype(int), 0, SIZE - 1)
    zbuf = scene["depth"][px[:, 1], px[:, 0]]
    assert np.percentile(np.abs(zbuf + proj.points[vis, 2]), 99) < 2e-3
    # Occlusion: some texels face the camera and project into the image, yet something nearer
    # (the nose, seen from the side) covers them; they are not visible.
    p = proj.points
    tri = scene["verts"][scene["faces"][face]]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    facing = (normal * p).sum(1) < -0.5 * np.linalg.norm(normal, axis=1) * np.linalg.norm(p, axis=1)
    pix = np.clip(np.floor(proj.pixels).astype(int), 0, SIZE - 1)
    in_front = scene["depth"][pix[:, 1], pix[:, 0]]
    occluded = facing & (in_front > 0) & (in_front < -p[:, 2] - 0.01)
    assert occluded.sum() > 20
    assert not proj.visible[occluded].any()


def test_texture_from_resized_photo_and_bad_input(scene, layout) -> None:
    """The camera of the fit may belong to a smaller copy of the photo: sampling the full
    photo with it matches sampling a 2x photo with the same camera (visibility differs on at
    most 2 % of the texels, only where the bilinear footprint meets a depth edge, whose size
    depends on the resolution; colours agree within 4/255 on 99 % of the common texels)."""
    big = np.repeat(np.repeat(scene["photo"], 2, axis=0), 2, axis=1)
    a = sample_photo_texture(scene["photo"], scene["verts"], scene["faces"], layout, CAM, 256)
    b = sample_photo_texture(big, scene["verts"], scene["faces"], layout, CAM, 256)
    va, vb = a[..., 3] > 0, b[..., 3] > 0
    assert (va != vb).sum() <= 0.02 * va.sum()
    both = va & vb
    diff = np.abs(a[both, :3].astype(int) - b[both, :3].astype(int)).max(1)
    assert np.percentile(diff, 99) <= 4
    with pytest.raises(BadInputError):
        sample_photo_texture(scene["photo"][:, :300], scene["verts"], scene["faces"], layout, CAM, 64)
    with pytest.raises(BadInputError):
        sample_photo_texture(scene["photo"], scene["verts"][:10], scene["faces"], layout, CAM, 64)


def test_overlay_draws_mesh_outline_and_landmarks(scene) -> None:
    photo = np.full((SIZE, SIZE, 3), 30, np.uint8)
    lmk = np.array([[100.0, 100.0], [400.0, 450.0]] + [[256.0, 256.0]] * 66)
    out = draw_overlay(photo, scene["verts"], scene["faces"], CAM, lmk)
    assert out.shape == photo.shape and out.dtype == np.uint8
    mask = scene["mask"]
    changed = (out != photo).any(-1)
    # The mesh is drawn where it covers the photo; the background stays untouched except for
    # the landmark dots (radius about 2 px).
    assert changed[mask].mean() > 0.99
    far = ~mask
    far[90:111, 90:111] = False
    far[440:461, 390:411] = False
    assert not changed[far].any()
    assert tuple(out[100, 100]) == (255, 40, 40)
    assert tuple(out[450, 400]) == (255, 40, 40)
    # Shading: lit (towards +x+y+z) and unlit regions differ in brightness.
    lum = out[mask].astype(float).mean(-1)
    assert lum.max() - lum.min() > 60
    plain = draw_overlay(photo, torch.from_numpy(scene["verts"]), torch.from_numpy(scene["faces"]), CAM)
    assert (plain[100, 100] == 30).all()
    with pytest.raises(BadInputError):
        draw_overlay(photo[..., :2].copy(), scene["verts"], scene["faces"], CAM)
