"""Sidebar panels of the extension; registered by the package's __init__."""
