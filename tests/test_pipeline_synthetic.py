"""The whole pipeline recovers known parameters from synthetic photos of the dev model.

Each photo is a FLAME head with random identity, expression, jaw opening and head pose,
rendered with the mean UV texture under random SH lighting (backend/fit/synthetic.py). MediaPipe
sees the rendered image like a photo; nothing of the truth is given to the fit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from backend.options import ReconstructOptions
from backend.pipeline import Engine
from backend.fit.synthetic import render_synthetic_head
from benchmarks.bench_reconstruct import rigid_align, similarity_align


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(ReconstructOptions(device="cpu"))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 11])
def test_pipeline_recovers_synthetic_head(engine: Engine, tmp_path: Path, assets_dir: Path,
                                          seed: int) -> None:
    rng = np.random.default_rng(seed)
    photo = tmp_path / "synthetic.png"
    truth = render_synthetic_head(engine, photo, rng)
    opts = ReconstructOptions(device="cpu", quality="default", detail=False)
    res = engine.reconstruct(photo, tmp_path / "out", opts)
    assert json.loads((tmp_path / "out" / "result.json").read_text())["landmarks_68"]

    # Head pose: root rotation within 4 degrees per axis, jaw opening within 0.08 rad.
    root = np.asarray(res["pose"]["root"])
    assert np.abs(np.degrees(root - truth["pose"][0])).max() < 4.0, (root, truth["pose"][0])
    assert abs(res["pose"]["jaw"][0] - truth["pose"][2, 0]) < 0.08

    # Neutral face shape. From one photo, head size and distance trade off (a smaller head
    # nearer the camera projects the same), so the shape is scored after a similarity
    # alignment: median face-region error below 2.2 mm. The rigid-alignment error (the
    # benchmark's figure) is bounded loosely. The mean head's error is printed beside it: on
    # some seeds the fit is no closer than the mean head yet (see the benchmark notes).
    face = np.load(assets_dir / "masks" / "flame_vertex_masks.npz")["face"]
    fitted = np.load(tmp_path / "out" / "rig.npz")["v_neutral"][face]
    true = truth["v_neutral"][face]
    mean_head = engine.model.v_template[face]
    sim_mm = np.median(np.linalg.norm(similarity_align(fitted, true) - true, axis=1)) * 1000.0
    mean_mm = np.median(np.linalg.norm(similarity_align(mean_head, true) - true, axis=1)) * 1000.0
    rigid_mm = np.median(np.linalg.norm(rigid_align(fitted, true) - true, axis=1)) * 1000.0
    print(f"seed {seed}: similarity {sim_mm:.2f} mm (mean head {mean_mm:.2f}), rigid {rigid_mm:.2f} mm")
    assert sim_mm < 2.2, (sim_mm, mean_mm)
    assert rigid_mm < 5.0, rigid_mm
    assert np.asarray(res["lighting"]["coefficients"]).shape == (9, 3)
