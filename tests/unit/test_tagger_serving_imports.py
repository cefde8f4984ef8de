"""The tagger's container image installs no torch and holds no other service's code: serving
must not import them (training, from the command line, may)."""

from __future__ import annotations

from tests.conftest import ROOT


def test_tagger_image_installs_what_serving_imports() -> None:
    dockerfile = (ROOT / "services" / "tagger" / "Dockerfile").read_text()
    for package in ("scipy", "lightgbm", "omikuji", "pystemmer", "safetensors", "numpy", "libgomp1"):
        assert package in dockerfile, package
