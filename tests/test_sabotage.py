"""The suite fails when the model or the parser is broken on purpose (scripts/sabotage.py runs all the
sabotages; `python scripts/sabotage.py`).  Two of them here, so a suite that can no longer fail fails."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["badness-ignores-adj", "parser-drop-killed-lines"])
def test_sabotage_is_caught(name: str) -> None:
    p = subprocess.run([sys.executable, "scripts/sabotage.py", name], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0 and " caught " in p.stdout, p.stdout + p.stderr
