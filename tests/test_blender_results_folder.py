"""Issue 12 item 4: where Reconstruct keeps its bundles (the imported heads' textures), in real
Blender (bpy 5.0.1): never inside the extension or its user folder, which Blender deletes on
uninstall (bl_pkg's blender_ext.py removes ``extensions/.user/<repo>/<pkg>`` with the package).
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest

from tests.blender_face_support import (EXT_MODULE, REPO_MODULE, bpy, built_and_installed, enabled,
                                        import_head)
from backend.files.bundle import write_dev_bundle


@pytest.fixture(scope="module")
def ext_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_and_installed(tmp_path_factory)


def _results_dir() -> Path:
    return importlib.import_module(f"{EXT_MODULE}.operators.reconstruct").results_dir(bpy.context)


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def test_results_beside_the_blend_or_in_user_data(ext_dir: Path, tmp_path: Path) -> None:
    with enabled(ext_dir):
        ext_user = Path(bpy.utils.extension_path_user(EXT_MODULE))
        unsaved = _results_dir()
        datafiles = Path(bpy.utils.user_resource('DATAFILES'))
        assert _inside(unsaved, datafiles) and unsaved.is_dir()
        assert not _inside(unsaved, ext_dir) and not _inside(unsaved, ext_user)
        blend = tmp_path / "work" / "scene.blend"
        blend.parent.mkdir()
        bpy.ops.wm.save_as_mainfile(filepath=str(blend))
        assert _results_dir() == blend.parent / "scene_headrecon"
        prefs = bpy.context.preferences.addons[EXT_MODULE].preferences
        prefs.results_folder = str(tmp_path / "chosen")
        assert _results_dir() == tmp_path / "chosen"
        prefs.results_folder = ""


# Last in the module: it uninstalls the module's copy of the extension.
def test_textures_survive_uninstalling_the_extension(ext_dir: Path, tmp_path: Path,
                                                     assets_dir: Path) -> None:
    """A head imported from the results folder keeps its texture file after the extension is
    uninstalled (before: the bundles lived in the extension's user folder, deleted with it)."""
    with enabled(ext_dir):
        blend = tmp_path / "scene.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(blend))
        bundle = _results_dir() / "0123456789abcdef"  # what a finished job leaves there
        write_dev_bundle(bundle, seed=4, assets=assets_dir)
        import_head(bundle)
        textures = [Path(bpy.path.abspath(im.filepath)) for im in bpy.data.images if im.filepath]
        assert textures and all(t.is_file() for t in textures)
        repo_index = next(i for i, r in enumerate(bpy.context.preferences.extensions.repos)
                          if r.module == REPO_MODULE)
        user_dir = Path(bpy.utils.extension_path_user(EXT_MODULE, create=True))
        try:
            assert bpy.ops.extensions.package_uninstall(repo_index=repo_index,
                                                        pkg_id="headrecon") == {'FINISHED'}
            assert not (ext_dir / "headrecon").exists()  # Blender deleted the extension...
            assert not user_dir.exists()  # ...and its user folder
            assert all(t.is_file() for t in textures), textures  # not the heads' textures
        finally:
            shutil.rmtree(bundle.parent, ignore_errors=True)
