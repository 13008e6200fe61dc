"""Shared fixtures: the real-row samples in ../shared/data, and a per-session solar cache."""

from __future__ import annotations

import logging
import os
import sys
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


@pytest.fixture(autouse=True)
def _no_logging_to_closed_captures():
    """A test with capsys that runs a Hydra app or first imports Lightning in this process leaves
    a logging handler on capsys's stream (Hydra's root handler; Lightning's own), which pytest
    closes after that test: every later log line then printed a '--- Logging error ---'
    traceback. Point such handlers back at the real console."""
    yield
    for logger in (logging.getLogger(), logging.getLogger("lightning")):
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and getattr(handler.stream, "closed",
                                                                      False):
                handler.stream = sys.__stderr__  # setStream would flush the closed one
