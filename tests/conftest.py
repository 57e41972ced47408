"""Shared fixtures for the GGUF tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def small_model(tmp_path: Path) -> Path:
    """A small valid little-endian model written by gguf-py (see ``gguf_builders``)."""
    from gguf_builders import write_small_model

    return write_small_model(tmp_path / "small.gguf")
