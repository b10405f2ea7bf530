"""Fixtures shared by the Triton kernel tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def interpreter_errors(request: pytest.FixtureRequest) -> dict:
    """The JSON report printed by the test module run as a script under TRITON_INTERPRET=1.

    TRITON_INTERPRET must be set before the kernels are decorated, and another test may already have
    imported them compiled, so the interpreter cases run in one subprocess per module.
    """
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, request.module.__file__], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
