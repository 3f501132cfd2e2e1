"""Shared helpers for the tests: where the project lives and which scenarios it has."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scenarios._record import ROOT, scenario_names

__all__ = ["ROOT", "run_script", "scenario_module", "scenario_names"]


def scenario_module(name: str):
    return importlib.import_module(f"scenarios.{name}")


def run_script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a scenario script the way a person does: python scenarios/<name>.py ..."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def fashion_data(tmp_path_factory) -> Path:
    """A data folder with the FashionMNIST stand-in in it, written once per test session."""
    from scenarios._fashion import STANDIN_FOLDER, write_standin

    data = tmp_path_factory.mktemp("data")
    write_standin(data / STANDIN_FOLDER)
    return data
