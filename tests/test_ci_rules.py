"""The suite's own rules, checked by running pytest on small test files."""

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

SKIPPING = """
import pytest

def test_skips():
    pytest.skip("no browser here")

@pytest.mark.gpu
def test_needs_a_gpu():
    pytest.skip("needs a CUDA device")

def test_runs():
    assert True

@pytest.mark.xfail(reason="a known failure", strict=True)
def test_known_to_fail():
    assert False
"""


@pytest.mark.parametrize(("ci", "outcome"), [
    ("true", "1 failed, 1 passed, 1 skipped, 1 xfailed"),  # only gpu tests may skip in CI
    ("", "1 passed, 2 skipped, 1 xfailed"),
])
def test_in_ci_only_gpu_tests_may_skip(tmp_path, ci, outcome):
    (tmp_path / "test_skipping.py").write_text(textwrap.dedent(SKIPPING))
    env = {"PATH": "/usr/bin:/bin", "CI": ci, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    # The project's conftest, loaded as a plugin, rules over a test file outside the tree.
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "--rootdir", str(tmp_path), "-c", "/dev/null", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert outcome in run.stdout.splitlines()[-1], run.stdout
    if ci:
        assert "skipped in CI (only `gpu` tests may skip there)" in run.stdout
