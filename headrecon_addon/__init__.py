"""Pure-Python core of the HeadRecon Blender extension: no bpy, no torch (numpy allowed).

Modules: ``bundle`` (read and validate a result bundle), ``naming`` (names of shape keys,
bones and properties), ``rig`` (bone frames, skin weights and corrective-driver math),
``client`` (connection to the reconstruction backend). Modules import each other
relatively, so the package works both inside the extension and as a top-level package.
"""
