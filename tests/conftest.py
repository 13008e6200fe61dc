"""Shared fixtures: the real-row samples in ../shared/data, and a per-session solar cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SOLAR_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real rows in hub schemas). CI has it; a user's clone does not."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real-row samples not found at {SHARED_DATA} (CI provides ../shared/data; "
                    "set SOLAR_SHARED_DATA to point elsewhere)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One solar cache (tiny tokenizer, tiny world files) shared by every test of the session."""
    path = tmp_path_factory.mktemp("solar-cache")
    os.environ["SOLAR_CACHE"] = str(path)
    return path


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Tests never touch the network: W&B offline, hub lookups fail fast."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
