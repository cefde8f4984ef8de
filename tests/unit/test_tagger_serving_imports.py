"""The tagger's container image installs no torch and holds no other service's code: serving
must not import them (training, from the command line, may)."""

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


def test_tagger_image_installs_what_serving_imports() -> None:
    dockerfile = (ROOT / "services" / "tagger" / "Dockerfile").read_text()
    for package in ("scipy", "lightgbm", "omikuji", "pystemmer", "safetensors", "numpy", "libgomp1"):
        assert package in dockerfile, package
