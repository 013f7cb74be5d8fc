"""The head model: FLAME loading and LBS, fit parameters and camera, UV layout, ARKit shapes,
where model files live (assets, weights) and how they are pinned."""
