"""The folder of trained model versions that taggers serve from (`model_dir`, a claim every
tagger pod reads in Kubernetes) and the training jobs write into.

A version is a sub-folder holding `meta.json`; the newest is the one whose meta.json was written
last. Training writes a version into `.partial-<name>` and renames it to `<name>` only once it is
complete, so a tagger polling the folder never sees half a version: folders whose name starts
with "." are never served. The folder must be on one file system (the rename is atomic there).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import logging
import os
import shutil
import unicodedata
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("vitrine.tagger.model_store")

PARTIAL_PREFIX = ".partial-"
# A version is a folder name: most file systems allow 255 bytes.
MAX_VERSION_BYTES = 255


def version_problem(name: str) -> str:
    """Why `name` cannot be a version (a folder directly in model_dir); '' when it can."""
    if not name:
        return "is empty: give a version name (a folder in model_dir)"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_VERSION_BYTES:
        return f"is {size} bytes long: at most {MAX_VERSION_BYTES} (it names a folder in model_dir)"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name):
        return f"{name!r} contains control characters: use letters, digits, '-', '_' and '.'"
    if "/" in name or "\\" in name:
        return f"{name!r} contains a path separator: give the name of a folder directly in model_dir"
    if name.startswith("."):
        return f"{name!r} starts with '.': such folders (e.g. unfinished trainings) are never served"
    return ""


def default_version_name(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime("v-%Y%m%d-%H%M%S")


def is_version(folder: Path) -> bool:
    return not folder.name.startswith(".") and (folder / "meta.json").is_file()


def versions(model_dir: Path) -> list[Path]:
    """The servable versions in `model_dir`, oldest first (by their meta.json's time)."""
    found = [p.parent for p in model_dir.glob("*/meta.json") if is_version(p.parent)]
    stamped = []
    for folder in found:
        try:
            stamped.append(((folder / "meta.json").stat().st_mtime, folder.name, folder))
        except OSError:
            continue  # removed while we looked
    return [folder for _, _, folder in sorted(stamped)]


def newest_version(model_dir: Path) -> Path | None:
    """The most recently trained version folder (by its meta.json's time), if any."""
    found = versions(model_dir)
    return found[-1] if found else None


def stamp(folder: Path) -> tuple[str, float]:
    """What tells one arrival of a version from another: its name and its meta.json's time."""
    return folder.name, (folder / "meta.json").stat().st_mtime


class VersionExists(ValueError):
    pass


@contextlib.contextmanager
def writing_version(out_dir: Path, name: str) -> Iterator[Path]:
    """The folder to write version `name` into (`out_dir/.partial-<name>`); once the block
    completes it is renamed `out_dir/<name>` in one step, and removed if the block fails.
    Refused when the name is not allowed or taken, or while another training writes it (a file
    lock). An unfinished folder that a killed training left (a Job's pod restarted with the
    same name) is started afresh."""
    problem = version_problem(name)
    if problem:
        raise ValueError(f"--version {problem}")
    out_dir.mkdir(parents=True, exist_ok=True)
    final, partial = out_dir / name, out_dir / f"{PARTIAL_PREFIX}{name}"
    lock_path = out_dir / f"{PARTIAL_PREFIX}{name}.lock"
    with lock_path.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise VersionExists(
                    f"another training is writing version {name!r} into {partial} now: "
                    "wait for it, or choose another --version"
                ) from exc
            log.warning("no file locks here: concurrent trainings of one version are not detected", exc_info=exc)
        try:
            if final.exists():
                raise VersionExists(
                    f"{final} already exists: choose another --version (or leave it out for a dated name)"
                )
            if partial.exists():
                log.warning("starting afresh: an interrupted training left %s", partial)
                shutil.rmtree(partial)
            partial.mkdir()
            try:
                yield partial
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            publish(partial, final)
        finally:
            lock_path.unlink(missing_ok=True)


def publish(partial: Path, final: Path) -> None:
    """Make a completely written version visible under its name in one step (a rename on the
    same file system), so taggers never load half of one."""
    if final.exists():
        raise VersionExists(f"{final} appeared while training: the new version stays in {partial}")
    os.replace(partial, final)
