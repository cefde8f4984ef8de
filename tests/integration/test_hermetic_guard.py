"""The hermetic guard of tests/unit (tests/unit/conftest.py) wired into a real pytest run: a child
pytest over a folder whose conftest is the unit one, and a sibling folder without it. Collection,
setup, the test and teardown are all guarded, a violation the test swallows still fails it, and
folders outside tests/unit are left alone."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT

GUARDED = {
    "conftest.py": "from tests.unit.conftest import *  # noqa: F403 - the unit guard, as is\n",
    "test_clean.py": """
        def test_tmp_path_and_the_repository_are_fine(tmp_path):
            (tmp_path / "x").write_text("ok")
            assert (tmp_path / "x").read_text() == "ok"
        """,
    "test_swallowed.py": """
        import subprocess

        def test_swallows_the_violation():
            try:
                subprocess.run(["true"])
            except Exception:
                pass
        """,
    "test_at_import.py": """
        from tests.conftest import SHARED_DATA

        SUBJECTS = (SHARED_DATA / "tate" / "subjects.jsonl.gz").read_bytes()

        def test_never_runs():
            pass
        """,
    "test_fixtures.py": """
        import os
        import pytest
        from tests.conftest import SHARED_DATA

        @pytest.fixture(scope="module")
        def listing():
            return os.listdir(SHARED_DATA)

        @pytest.fixture
        def spawns():
            yield
            os.system("true")

        def test_setup_reads_shared_data(listing):
            pass

        def test_teardown_starts_a_process(spawns):
            pass
        """,
}
UNGUARDED = {
    "test_elsewhere.py": """
        import subprocess

        def test_integration_tests_may_start_processes():
            assert subprocess.run(["true"]).returncode == 0
        """,
}


def write(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))


def test_the_guard_fails_what_is_not_hermetic_and_only_under_its_folder(tmp_path: Path) -> None:
    write(tmp_path / "guarded", GUARDED)
    write(tmp_path / "unguarded", UNGUARDED)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "--continue-on-collection-errors"),
            *("-o", "asyncio_default_fixture_loop_scope=function", "--rootdir", str(tmp_path), "."),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    outcomes: dict[str, set[str]] = {}  # -rA: "OUTCOME nodeid[ - message]", a teardown error after PASSED
    for line in out.splitlines():
        outcome, _, rest = line.partition(" ")
        if outcome in ("PASSED", "FAILED", "ERROR"):
            outcomes.setdefault(rest.split(" - ")[0], set()).add(outcome)
    assert outcomes == {
        "guarded/test_clean.py::test_tmp_path_and_the_repository_are_fine": {"PASSED"},
        "unguarded/test_elsewhere.py::test_integration_tests_may_start_processes": {"PASSED"},
        "guarded/test_swallowed.py::test_swallows_the_violation": {"FAILED"},
        "guarded/test_at_import.py": {"ERROR"},
        "guarded/test_fixtures.py::test_setup_reads_shared_data": {"ERROR"},
        "guarded/test_fixtures.py::test_teardown_starts_a_process": {"PASSED", "ERROR"},
    }, out
    # Each says which test, in which phase, did what.
    for expected in [
        "guarded/test_swallowed.py::test_swallows_the_violation is not hermetic",
        "starts a child process (subprocess.Popen true",
        "collecting guarded/test_at_import.py is not hermetic",
        "subjects.jsonl.gz (the shared data sets)",
        "test_setup_reads_shared_data (setup) is not hermetic",
        "test_teardown_starts_a_process (teardown) is not hermetic",
        "starts a child process (os.system",
        "move this test to tests/integration",
    ]:
        assert expected in out, f"{expected!r} not in:\n{out}"
