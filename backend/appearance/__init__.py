"""What the head looks like: photo texture, de-lit albedo, UV displacement detail, overlay,
UV-space image helpers."""
