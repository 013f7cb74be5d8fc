"""Blender operators of the extension, one per module; registered by the package's __init__."""
