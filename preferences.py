"""Add-on preferences of the extension, keyed by the extension's package name.

The backend settings say how to start (local Python or command) or reach (remote URL and
token) the reconstruction service; :func:`backend_config` turns them into the client's
:class:`~headrecon_addon.client.BackendConfig`.
"""

from __future__ import annotations

import bpy

from .headrecon_addon.client import BackendConfig

DEVICES = (
    ('auto', "Auto", "CUDA when the backend's PyTorch sees a GPU, else CPU"),
    ('cpu', "CPU", "Always run on the CPU"),
    ('cuda', "CUDA", "Run on the first NVIDIA GPU"),
)


class HeadReconPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    backend_command: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Backend Python or Command", subtype='FILE_PATH',
        description="The Python of the HeadRecon backend's environment (runs 'python -m backend "
                    "serve'), or a command such as 'headrecon'")
    assets_dir: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Assets Folder", subtype='DIR_PATH',
        description="Folder with the model assets (empty: the backend's default)")
    flame_model: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="FLAME Model File", subtype='FILE_PATH',
        description="FLAME model (.pkl, e.g. flame2023_Open.pkl, or .npz); empty: the backend's default")
    device: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Device", items=DEVICES, default='auto')
    remote_url: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Remote URL",
        description="http://host:port of 'headrecon serve --http' on another machine; when set, "
                    "no local backend is started")
    token: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Token", subtype='PASSWORD', description="Bearer token of the remote backend")
    results_folder: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Results Folder", subtype='DIR_PATH',
        description="Where reconstructed heads' bundles and textures are kept (empty: beside the "
                    "saved .blend in <name>_headrecon, else Blender's user data folder "
                    "datafiles/headrecon/results; never inside the extension)")
    job_timeout: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Job Timeout (s)", default=900, min=10, max=86400,
        description="A reconstruction running longer is cancelled and the backend stopped")

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.label(text="Import bundles with File > Import > HeadRecon Bundle or the "
                          "HeadRecon sidebar tab")
        col = layout.column(heading="Local Backend")
        col.prop(self, "backend_command")
        col.prop(self, "assets_dir")
        col.prop(self, "flame_model")
        col.prop(self, "device")
        col = layout.column(heading="Remote Backend")
        col.prop(self, "remote_url")
        col.prop(self, "token")
        layout.prop(self, "results_folder")
        layout.prop(self, "job_timeout")


def get_preferences(context: bpy.types.Context) -> HeadReconPreferences:
    """This extension's preferences."""
    return context.preferences.addons[__package__].preferences


def backend_config(context: bpy.types.Context) -> BackendConfig:
    """The client settings from the preferences (paths made absolute)."""
    prefs = get_preferences(context)
    command = prefs.backend_command.strip()
    return BackendConfig(
        command=bpy.path.abspath(command) if command.startswith("//") else command,
        assets=bpy.path.abspath(prefs.assets_dir) if prefs.assets_dir else "",
        flame=bpy.path.abspath(prefs.flame_model) if prefs.flame_model else "",
        device=prefs.device, remote_url=prefs.remote_url.strip(), token=prefs.token,
        job_timeout_s=float(prefs.job_timeout))


classes = (HeadReconPreferences,)
