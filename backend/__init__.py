"""HeadRecon reconstruction backend: one photo -> fitted FLAME head bundle.

Runs as its own Python process with torch; never imported inside Blender.
"""

__version__ = "0.1.0"
