#include "error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char tls_message[512];

llms_status err_set(llms_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_message, sizeof tls_message, fmt, ap);
    va_end(ap);
    return status;
}

void err_clear(void) { tls_message[0] = 0; }

const char *err_message(void) { return tls_message; }

LLMS_API const char *llms_errmsg(void) { return tls_message; }

LLMS_API const char *llms_status_string(llms_status s) {
    switch (s) {
    case LLMS_OK: return "LLMS_OK: success";
    case LLMS_TOKEN: return "LLMS_TOKEN: a token was produced";
    case LLMS_DONE: return "LLMS_DONE: generation finished";
    case LLMS_AGAIN: return "LLMS_AGAIN: nothing available yet";
    case LLMS_ERR_INVALID_ARGUMENT: return "LLMS_ERR_INVALID_ARGUMENT: invalid argument";
    case LLMS_ERR_NO_MEMORY: return "LLMS_ERR_NO_MEMORY: out of memory";
    case LLMS_ERR_IO: return "LLMS_ERR_IO: input/output error";
    case LLMS_ERR_BUFFER_TOO_SMALL: return "LLMS_ERR_BUFFER_TOO_SMALL: output buffer too small";
    case LLMS_ERR_NOT_FOUND: return "LLMS_ERR_NOT_FOUND: not found";
    case LLMS_ERR_UNSUPPORTED: return "LLMS_ERR_UNSUPPORTED: not supported";
    case LLMS_ERR_INTERNAL: return "LLMS_ERR_INTERNAL: internal error";
    case LLMS_ERR_VERSION: return "LLMS_ERR_VERSION: version mismatch";
    case LLMS_ERR_STATE: return "LLMS_ERR_STATE: invalid in the current state";
    case LLMS_ERR_GGUF_MAGIC: return "LLMS_ERR_GGUF_MAGIC: not a GGUF file";
    case LLMS_ERR_GGUF_VERSION: return "LLMS_ERR_GGUF_VERSION: unsupported GGUF version";
    case LLMS_ERR_GGUF_TRUNCATED: return "LLMS_ERR_GGUF_TRUNCATED: GGUF file is truncated";
    case LLMS_ERR_GGUF_OVERFLOW: return "LLMS_ERR_GGUF_OVERFLOW: GGUF size or count overflows";
    case LLMS_ERR_GGUF_LIMIT: return "LLMS_ERR_GGUF_LIMIT: GGUF value exceeds a limit";
    case LLMS_ERR_GGUF_TYPE: return "LLMS_ERR_GGUF_TYPE: GGUF value has the wrong type";
    case LLMS_ERR_GGUF_DUPLICATE: return "LLMS_ERR_GGUF_DUPLICATE: duplicate GGUF key or tensor";
    case LLMS_ERR_GGUF_ALIGNMENT: return "LLMS_ERR_GGUF_ALIGNMENT: invalid GGUF alignment";
    case LLMS_ERR_GGUF_TENSOR_TYPE: return "LLMS_ERR_GGUF_TENSOR_TYPE: unknown tensor type";
    case LLMS_ERR_GGUF_SHAPE: return "LLMS_ERR_GGUF_SHAPE: invalid tensor shape";
    case LLMS_ERR_GGUF_BOUNDS: return "LLMS_ERR_GGUF_BOUNDS: tensor data out of bounds";
    case LLMS_ERR_MODEL_TENSOR: return "LLMS_ERR_MODEL_TENSOR: missing or invalid model tensor";
    case LLMS_ERR_MODEL_METADATA: return "LLMS_ERR_MODEL_METADATA: missing or invalid model metadata";
    case LLMS_ERR_TOKENIZER: return "LLMS_ERR_TOKENIZER: invalid tokenizer data";
    case LLMS_ERR_TOKEN_RANGE: return "LLMS_ERR_TOKEN_RANGE: token id out of range";
    case LLMS_ERR_CONTEXT_FULL: return "LLMS_ERR_CONTEXT_FULL: context window is full";
    case LLMS_ERR_PROMPT_TOO_LONG: return "LLMS_ERR_PROMPT_TOO_LONG: prompt longer than the context";
    case LLMS_ERR_TEMPLATE: return "LLMS_ERR_TEMPLATE: unknown or unusable chat template";
    case LLMS_ERR_BUSY: return "LLMS_ERR_BUSY: queue full, try again later";
    case LLMS_ERR_RATE_LIMITED: return "LLMS_ERR_RATE_LIMITED: rate limit reached";
    case LLMS_ERR_CANCELLED: return "LLMS_ERR_CANCELLED: cancelled";
    case LLMS_ERR_TIMEOUT: return "LLMS_ERR_TIMEOUT: deadline passed";
    case LLMS_ERR_BACKEND: return "LLMS_ERR_BACKEND: compute backend failure";
    case LLMS_ERR_DEVICE_LOST: return "LLMS_ERR_DEVICE_LOST: device lost";
    case LLMS_ERR_DEVICE_MEMORY: return "LLMS_ERR_DEVICE_MEMORY: out of device memory";
    default: return "unknown status";
    }
}
