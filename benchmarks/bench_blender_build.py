"""Blender build benchmark: seconds to build a head from a bundle, stage by stage, and the
cost of one animation frame (armature + driven correctives) while scrubbing.

    .venv/bin/python benchmarks/bench_blender_build.py [--bundle DIR] [--repeats 5] [--frames 100]

Without --bundle a dev bundle is generated (``python -m backend.files.bundle --dev``). The
extension zip is built with build.py and installed into a temporary extensions repository
of a temporary Blender user folder, like the tests. Target: a head in <= 2 s on this CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
REPO_MODULE = "headrecon_bench"
EXT_MODULE = f"bl_ext.{REPO_MODULE}.headrecon"


def _enable_extension(tmp: Path) -> None:
    """Build the zip, install it into a temporary repository and enable it."""
    import addon_utils
    import bpy

    from build import build

    zip_path = build(tmp / "dist")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.extensions.repos.new(
        name="HeadRecon bench", module=REPO_MODULE, custom_directory=str(tmp / "extensions"),
        source='USER')
    bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo=REPO_MODULE,
                                             enable_on_install=False)
    addon_utils.enable(EXT_MODULE, default_set=True)


def _scrub_ms(build, frames: int) -> float:
    """Milliseconds per frame_set over a jaw/neck animation of ``frames`` frames."""
    import bpy

    arm = build.armature_obj
    for frame, (jaw, neck) in ((1, (0.0, 0.0)), (frames, (0.4, 0.3))):
        arm.pose.bones["jaw"].rotation_euler = (jaw, 0.0, 0.0)
        arm.pose.bones["neck"].rotation_euler = (neck, neck, 0.0)
        for bone in ("jaw", "neck"):
            arm.pose.bones[bone].keyframe_insert("rotation_euler", frame=frame)
    scene = bpy.context.scene
    scene.frame_set(1)
    start = time.perf_counter()
    for frame in range(1, frames + 1):
        scene.frame_set(frame)
        build.mesh_obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    return (time.perf_counter() - start) / frames * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None, help="bundle folder (default: dev)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=100)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="headrecon-bench-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["BLENDER_USER_RESOURCES"] = str(tmp / "user")
        bundle_dir = args.bundle
        if bundle_dir is None:
            bundle_dir = tmp / "bundle"
            subprocess.run([sys.executable, "-m", "backend.files.bundle", "--dev", str(bundle_dir)],
                           cwd=REPO, check=True)
        import bpy

        _enable_extension(tmp)
        builder = sys.modules[f"{EXT_MODULE}.builder"]
        load_bundle = sys.modules[f"{EXT_MODULE}.headrecon_addon.bundle"].load_bundle
        rows: dict[str, list[float]] = {}
        for _ in range(args.repeats):  # heads pile up in one scene (named .001, .002, ...)
            start = time.perf_counter()
            bundle = load_bundle(bundle_dir)
            loaded = time.perf_counter()
            build = builder.build_head(bpy.context, bundle)
            end = time.perf_counter()
            rows.setdefault("load_bundle", []).append(loaded - start)
            for stage, seconds in build.timings.items():
                rows.setdefault(stage, []).append(seconds)
            rows.setdefault("TOTAL", []).append(end - start)
        scrub = _scrub_ms(build, args.frames)
        print(f"bundle: {bundle_dir} ({bundle.n_vertices} vertices, {bundle.n_expr} expressions, "
              f"{len(build.mesh_obj.data.shape_keys.key_blocks)} shape keys)")
        print(f"{'stage':<12} {'median s':>9} {'min s':>8}   ({args.repeats} builds)")
        for stage, values in rows.items():
            print(f"{stage:<12} {statistics.median(values):9.4f} {min(values):8.4f}")
        print(f"scrubbing: {scrub:.2f} ms per frame (jaw + neck keyed, 18 driven correctives)")
        print(f"target <= 2 s per head: {'met' if statistics.median(rows['TOTAL']) <= 2.0 else 'MISSED'}")
        sys.modules["addon_utils"].disable(EXT_MODULE, default_set=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
