"""``headrecon serve``: the job service (JSON lines over stdio, HTTP transport) that Blender
and remote clients talk to (protocol: docs/SERVICE.md)."""
