"""The code and the contract stay lint-clean: ruff over the Python, buf lint over the protos."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.servers import ROOT

BIN = Path(sys.executable).parent


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [BIN / "ruff", "check", "services", "tests", "scripts", "bench"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_buf_lint_is_clean() -> None:
    result = subprocess.run([BIN / "buf", "lint"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
