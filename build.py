"""Build the HeadRecon extension zip and validate it with Blender's own ``blender_ext.py``.

Usage: ``python build.py [--output-dir dist] [--blender-ext PATH]``

The extension's files (``EXTENSION_PATHS``) are copied into a staging folder, packaged by
``blender_ext.py build`` and the zip is checked by ``blender_ext.py validate`` and by
:func:`check_zip` (only extension files: no backend, tests, weights or caches).
``blender_ext.py`` is taken from the installed ``bpy`` wheel unless ``--blender-ext`` names
one (e.g. from a Blender install: ``<blender>/<version>/scripts/addons_core/bl_pkg/cli``).
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent
EXTENSION_PATHS: tuple[str, ...] = (
    "__init__.py", "blender_manifest.toml", "preferences.py", "heads.py",
    "operators", "panels", "builder", "headrecon_addon",
)
FORBIDDEN_PARTS = {"backend", "tests", "weights", "benchmarks", "__pycache__", ".venv"}
FORBIDDEN_SUFFIXES = (".pyc", ".npz", ".pkl", ".pt", ".pth", ".onnx", ".tflite", ".task")


class BuildError(Exception):
    """The zip could not be built or is invalid; the message says why."""


def find_blender_ext() -> Path:
    """``blender_ext.py`` inside the installed bpy wheel (found without importing bpy)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("bpy is not installed; pass --blender-ext PATH to Blender's blender_ext.py.")
    root = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(root.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise BuildError(f"No blender_ext.py under {root}; pass --blender-ext PATH.")
    return found[-1]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd[1:3])} failed: {(proc.stdout + proc.stderr).strip()}")


def _stage(staging: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    for rel in EXTENSION_PATHS:
        src = REPO / rel
        if src.is_dir():
            shutil.copytree(src, staging / rel, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, staging / rel)
        else:
            raise BuildError(f"Extension path {rel} is missing from the repository.")


def check_zip(path: Path) -> list[str]:
    """Names in the zip; BuildError when one is not an extension file."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    for name in names:
        parts = set(Path(name).parts)
        if parts & FORBIDDEN_PARTS or name.endswith(FORBIDDEN_SUFFIXES):
            raise BuildError(f"The extension zip must not contain {name}.")
        if Path(name).parts[0] not in EXTENSION_PATHS:
            raise BuildError(f"The extension zip contains {name}, which is not an extension path.")
    return names


def build(output_dir: Path, blender_ext: Path | None = None) -> Path:
    """Build and validate the extension zip.

    Args:
        output_dir: folder for the zip (created).
        blender_ext: Blender's blender_ext.py (default: from the bpy wheel).
    Returns:
        Path of ``headrecon-<version>.zip``.
    """
    tool = blender_ext or find_blender_ext()
    manifest = tomllib.loads((REPO / "blender_manifest.toml").read_text(encoding="utf-8"))
    output_dir.mkdir(parents=True, exist_ok=True)
    out = output_dir.resolve() / f"{manifest['id']}-{manifest['version']}.zip"
    with tempfile.TemporaryDirectory(prefix="headrecon-ext-") as tmp:
        staging = Path(tmp) / manifest["id"]
        staging.mkdir()
        _stage(staging)
        _run([sys.executable, str(tool), "build", "--source-dir", str(staging),
              "--output-filepath", str(out)])
    _run([sys.executable, str(tool), "validate", str(out)])
    check_zip(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=REPO / "dist", help="default dist/")
    parser.add_argument("--blender-ext", type=Path, default=None, help="Blender's blender_ext.py")
    args = parser.parse_args(argv)
    try:
        path = build(args.output_dir, args.blender_ext)
    except BuildError as exc:
        print(f"build.py: error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
