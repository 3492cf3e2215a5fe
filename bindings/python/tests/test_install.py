"""`pip install bindings/python` works offline (no build isolation, so only
the installed setuptools/wheel are used) and the installed copy finds the
library through LLMS_LIBRARY."""

import os
import shutil
import subprocess
import sys

import pytest


def test_pip_install_offline(repo, tmp_path):
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode:
        pytest.skip("pip is not installed for %s" % sys.executable)
    # Build in a copy so the source tree gets no build/ or egg-info.
    src = tmp_path / "src"
    shutil.copytree(repo / "bindings" / "python", src, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation",
                        "--no-deps", "--no-index", "--target", str(target), str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    env = dict(os.environ, PYTHONPATH=str(target), LLMS_LIBRARY=str(repo / "lib" / "libllmserve.so"))
    code = "import llmserve; print(llmserve.__file__); print(llmserve.version())"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(tmp_path),
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0].startswith(str(target)) and out[1] == llmserve_version(repo)


def llmserve_version(repo):
    import llmserve
    return llmserve.__version__
