"""Files in and out: reading the photo (EXIF, huge images) and writing the result bundle."""
