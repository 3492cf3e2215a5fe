import re

import pytest

import llmserve


def test_package_version_matches_header(repo):
    text = (repo / "include" / "llmserve_version.h").read_text()
    nums = [int(re.search(r"#define LLMS_VERSION_%s (\d+)" % k, text).group(1))
            for k in ("MAJOR", "MINOR", "PATCH")]
    assert llmserve.__version__ == "%d.%d.%d" % tuple(nums)


def test_library_version_accepted():
    assert llmserve.version() == llmserve.__version__
    assert "cpu" in llmserve.build_features()


def test_incompatible_library_raises(monkeypatch):
    # Pretend the bindings were built for the next major version.
    monkeypatch.setattr(llmserve, "VERSION_NUMBER", llmserve.VERSION_NUMBER + 1000000)
    with pytest.raises(llmserve.LlmsVersionError) as e:
        llmserve._check_version()
    assert e.value.status == -8


def test_library_from_env(repo, monkeypatch, tmp_path):
    import subprocess
    import sys
    lib = str(repo / "lib" / "libllmserve.so")
    code = "import llmserve; print(llmserve.library_path)"
    env = dict(__import__("os").environ, LLMS_LIBRARY=lib, PYTHONPATH=str(repo / "bindings" / "python"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == lib
    env["LLMS_LIBRARY"] = str(tmp_path / "nope.so")
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "LLMS_LIBRARY" in bad.stderr
