"""Shared fixtures. Every test runs with sentinelhub's config and credentials isolated from the user's home."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory, monkeypatch):
    """No test reads or writes ~/.config/sentinelhub, and no real credentials leak in from the environment."""
    home = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.setenv("SH_CONFIG_FILE", str(home / "sentinelhub" / "config.toml"))
    for var in ("SH_CLIENT_ID", "SH_CLIENT_SECRET", "SH_PROFILE", "BASEWATCH_SH_BASE_URL",
                "BASEWATCH_SH_TOKEN_URL", "BASEWATCH_WEBHOOK_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.fixture
def config_copy(tmp_path) -> Path:
    """A config folder of our own (default.yaml and the shipped aois/), so a test may add, break or import AOI
    files without touching configs/."""
    from pipeline.config import DEFAULT_CONFIG

    folder = tmp_path / "configs"
    shutil.copytree(DEFAULT_CONFIG.parent / "aois", folder / "aois")
    shutil.copy(DEFAULT_CONFIG, folder / "default.yaml")
    return folder / "default.yaml"
