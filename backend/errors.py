"""Exceptions shared by every backend stage, each mapped to a CLI exit code."""

from __future__ import annotations


class HeadReconError(Exception):
    """Base class; ``exit_code`` is what the CLI returns for it."""

    exit_code: int = 1


class BadInputError(HeadReconError):
    """The photo cannot be used: not an image, unreadable, too large, no face found."""

    exit_code = 2


class ModelFileError(HeadReconError):
    """A model or asset file is missing or invalid (FLAME pickle/npz, embeddings, weights)."""

    exit_code = 3


class Cancelled(HeadReconError):
    """The job was cancelled by the user (service cancel message or Ctrl-C)."""

    exit_code = 130
