"""The tagger's container image installs no torch and holds no other service's code: serving
must not import them (training, from the command line, may). A fresh interpreter tells what
importing the server loads; tests/unit/test_tagger_serving_imports.py checks the image's list."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_tagger_server_imports_neither_torch_nor_search() -> None:
    probe = (
        "import sys, vitrine.tagger.server; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sentence_transformers', 'open_clip') "
        "or m.startswith(('vitrine.search', 'vitrine.embedder'))))"
    )
    found = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"
