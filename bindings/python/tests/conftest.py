import json
import os
import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[2]
# Tests import the package from the source tree, not an installed copy.
sys.path.insert(0, str(HERE.parent))

FIXTURES = pathlib.Path(os.environ.get("LLMS_FIXTURES", REPO.parent / "shared" / "fixtures"))
MODEL = FIXTURES / "models" / "aidreams260K.gguf"


def golden(prompt):
    data = json.loads((FIXTURES / "models" / "aidreams260K.golden.json").read_text())
    for case in data["cases"]:
        if case["prompt"] == prompt:
            return case
    raise KeyError(prompt)


@pytest.fixture(scope="session")
def repo():
    return REPO


@pytest.fixture(scope="session")
def model_path():
    if not MODEL.exists():
        pytest.skip("fixture model missing: %s (set LLMS_FIXTURES)" % MODEL)
    return MODEL


@pytest.fixture(scope="session")
def model(model_path):
    import llmserve
    m = llmserve.Model(model_path, n_threads=1)
    yield m
    m.close()
