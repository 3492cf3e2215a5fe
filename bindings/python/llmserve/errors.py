"""Status codes and the exceptions that carry them.

Every failing library call raises an LlmsError subclass chosen by the status
number (frozen in C), so callers catch a category (LlmsModelFileError for any
hostile-file error) or one status (LlmsContextFullError) without comparing
integers.
"""

import enum


class Status(enum.IntEnum):
    OK = 0
    TOKEN = 1
    DONE = 2
    AGAIN = 3
    ERR_INVALID_ARGUMENT = -1
    ERR_NO_MEMORY = -2
    ERR_IO = -3
    ERR_BUFFER_TOO_SMALL = -4
    ERR_NOT_FOUND = -5
    ERR_UNSUPPORTED = -6
    ERR_INTERNAL = -7
    ERR_VERSION = -8
    ERR_STATE = -9
    ERR_GGUF_MAGIC = -20
    ERR_GGUF_VERSION = -21
    ERR_GGUF_TRUNCATED = -22
    ERR_GGUF_OVERFLOW = -23
    ERR_GGUF_LIMIT = -24
    ERR_GGUF_TYPE = -25
    ERR_GGUF_DUPLICATE = -26
    ERR_GGUF_ALIGNMENT = -27
    ERR_GGUF_TENSOR_TYPE = -28
    ERR_GGUF_SHAPE = -29
    ERR_GGUF_BOUNDS = -30
    ERR_MODEL_TENSOR = -40
    ERR_MODEL_METADATA = -41
    ERR_TOKENIZER = -42
    ERR_TOKEN_RANGE = -50
    ERR_CONTEXT_FULL = -51
    ERR_PROMPT_TOO_LONG = -52
    ERR_TEMPLATE = -53
    ERR_BUSY = -54
    ERR_RATE_LIMITED = -55
    ERR_CANCELLED = -56
    ERR_TIMEOUT = -57
    ERR_BACKEND = -70
    ERR_DEVICE_LOST = -71
    ERR_DEVICE_MEMORY = -72


class LlmsError(Exception):
    """A library call failed. `status` is the negative status number (an int,
    also available as the Status enum in `status_enum` when known), `message`
    the detail the library gave (may be empty)."""

    def __init__(self, status, message="", name=None):
        self.status = int(status)
        self.message = message or ""
        self.name = name or ""
        text = self.name or ("status %d" % self.status)
        if self.message:
            text += " (" + self.message + ")"
        super().__init__(text)

    @property
    def status_enum(self):
        try:
            return Status(self.status)
        except ValueError:
            return None


class LlmsInvalidArgumentError(LlmsError, ValueError):
    pass


class LlmsOutOfMemoryError(LlmsError, MemoryError):
    pass


class LlmsIOError(LlmsError, OSError):
    pass


class LlmsBufferTooSmallError(LlmsError):
    pass


class LlmsNotFoundError(LlmsError, LookupError):
    pass


class LlmsUnsupportedError(LlmsError):
    pass


class LlmsInternalError(LlmsError):
    pass


class LlmsVersionError(LlmsError):
    pass


class LlmsStateError(LlmsError):
    pass


class LlmsModelFileError(LlmsError):
    """The GGUF file is malformed (any LLMS_ERR_GGUF_*)."""


class LlmsModelError(LlmsError):
    """The file is well-formed but not a usable model (tensor, metadata, tokenizer)."""


class LlmsRequestError(LlmsError):
    """A request cannot be served as asked (tokens, context, template, limits)."""


class LlmsTokenRangeError(LlmsRequestError):
    pass


class LlmsContextFullError(LlmsRequestError):
    pass


class LlmsPromptTooLongError(LlmsRequestError):
    pass


class LlmsTemplateError(LlmsRequestError):
    pass


class LlmsBusyError(LlmsRequestError):
    pass


class LlmsRateLimitedError(LlmsRequestError):
    pass


class LlmsCancelledError(LlmsRequestError):
    pass


class LlmsTimeoutError(LlmsRequestError, TimeoutError):
    pass


class LlmsBackendError(LlmsError):
    """The compute backend failed (any LLMS_ERR_BACKEND/DEVICE_*)."""


_BY_STATUS = {
    -1: LlmsInvalidArgumentError, -2: LlmsOutOfMemoryError, -3: LlmsIOError,
    -4: LlmsBufferTooSmallError, -5: LlmsNotFoundError, -6: LlmsUnsupportedError,
    -7: LlmsInternalError, -8: LlmsVersionError, -9: LlmsStateError,
    -40: LlmsModelError, -41: LlmsModelError, -42: LlmsModelError,
    -50: LlmsTokenRangeError, -51: LlmsContextFullError, -52: LlmsPromptTooLongError,
    -53: LlmsTemplateError, -54: LlmsBusyError, -55: LlmsRateLimitedError,
    -56: LlmsCancelledError, -57: LlmsTimeoutError,
}


def error_class(status):
    """The exception class for a status number."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if -30 <= status <= -20:
        return LlmsModelFileError
    if -79 <= status <= -70:
        return LlmsBackendError
    return LlmsError
