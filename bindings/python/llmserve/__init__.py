"""libllmserve for Python: ctypes bindings, no compiled extension.

    import llmserve
    with llmserve.Model("model.gguf") as model, model.session() as s:
        for piece in s.stream("The robot", max_tokens=32, temperature=0):
            print(piece, end="", flush=True)

    # Many requests batched together (thread-safe submit, asyncio-friendly):
    with llmserve.Model("model.gguf") as model, llmserve.Scheduler(model) as sched:
        req = sched.submit("The robot", max_tokens=32, temperature=0)
        print(req.result().text)

The shared library is found through $LLMS_LIBRARY, else the repository's
lib/ folder when run from a checkout, else the system loader.
"""

from . import _lib
from ._version import VERSION_NUMBER, __version__
from .errors import *  # noqa: F401,F403 (the exception classes are API)
from .errors import LlmsVersionError, Status, error_class
from ._api import (BACKEND_AUTO, BACKEND_CPU, BACKEND_VULKAN, LOG_DEBUG, LOG_ERROR,  # noqa: F401
                   LOG_INFO, LOG_WARN, SPECIAL_BOS, SPECIAL_EOS, SPECIAL_EOT, SPECIAL_NL,
                   SPECIAL_PAD, SPECIAL_SEP, SPECIAL_UNK, Context, Model, ModelInfo, Session,
                   Step, build_features, status_string, version)
from ._scheduler import Request, Result, Scheduler  # noqa: F401

library_path = _lib.lib_path


def _check_version():
    # Structs only grow by appending and functions are only added, so a
    # library of the same major version and at least this package's version
    # serves these bindings; an older library may lack what they call, and
    # another major version may have changed layouts.
    have = _lib.llms_version_number()
    if have // 1000000 != VERSION_NUMBER // 1000000 or have < VERSION_NUMBER:
        raise LlmsVersionError(
            Status.ERR_VERSION,
            "library %s (%s) is not compatible with the llmserve %s bindings"
            % (_lib.llms_version_string().decode(), library_path, __version__),
            "LLMS_ERR_VERSION")


_check_version()
