"""Landmark sources and their FLAME embeddings: MediaPipe's 478-point mesh, the large-pose
68-point network, the 68/105-point embeddings on FLAME, their calibration, iBUG-68 scoring."""
