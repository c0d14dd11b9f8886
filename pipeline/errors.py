"""One error hierarchy. Each message says what to change; the CLI prints it without a traceback."""

from __future__ import annotations


class BasewatchError(Exception):
    """Base of every error basewatch raises on purpose."""


class ConfigError(BasewatchError):
    """A config, AOI or scenario file is malformed; the message names file, line/field and problem."""


class SourceError(BasewatchError):
    """An imagery source failed (network, service error, corrupt download)."""


class AuthError(SourceError):
    """Credentials are missing or were refused; the message says which variables or file to set."""


class SceneError(BasewatchError):
    """A raster is not a usable scene (wrong CRS, missing bands, unreadable, all cloud)."""


class ModelError(BasewatchError):
    """A checkpoint is missing or does not match the pipeline (classes, bands, version)."""


class StoreError(BasewatchError):
    """The store is unusable (newer schema, locked, corrupt)."""
