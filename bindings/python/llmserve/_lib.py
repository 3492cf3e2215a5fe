"""Low level: finding libllmserve, ctypes mirrors of the public structs and
the prototypes of the public functions. Nothing here is Pythonic on purpose;
the classes in llmserve/_api.py build on it.

Every struct below mirrors include/llmserve.h field for field, with the C
field names, so that tests/test_layout.py can generate a C program from these
definitions and compare sizeof/offsetof with ctypes.sizeof/Field.offset.
"""

import ctypes
import ctypes.util
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_double, c_float,
                    c_int32, c_size_t, c_uint32, c_uint64, c_int64, c_void_p)

from . import _version

# ---------------------------------------------------------------------------
# Structs (append-only in C; append here in the same order).
# ---------------------------------------------------------------------------

MALLOC_FN = CFUNCTYPE(c_void_p, c_void_p, c_size_t)
REALLOC_FN = CFUNCTYPE(c_void_p, c_void_p, c_void_p, c_size_t)
FREE_FN = CFUNCTYPE(None, c_void_p, c_void_p)
LOG_FN = CFUNCTYPE(None, c_void_p, c_int32, c_char_p)


class llms_allocator(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("user", c_void_p),
        ("malloc_fn", MALLOC_FN),
        ("realloc_fn", REALLOC_FN),
        ("free_fn", FREE_FN),
    ]


class llms_context_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("backend", c_int32),
        ("device_index", c_int32),
        ("n_threads", c_int32),
        ("flags", c_uint32),
        ("log_level", c_int32),
        ("log_fn", LOG_FN),
        ("log_user", c_void_p),
        ("allocator", POINTER(llms_allocator)),
        ("device_memory_budget", c_uint64),
    ]


class llms_model_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
    ]


class llms_model_info(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("gguf_version", c_uint32),
        ("architecture", c_char_p),
        ("name", c_char_p),
        ("n_params", c_uint64),
        ("n_bytes", c_uint64),
        ("n_tensors", c_uint32),
        ("n_metadata", c_uint32),
        ("n_vocab", c_uint32),
        ("n_ctx_train", c_uint32),
        ("n_embd", c_uint32),
        ("n_layer", c_uint32),
        ("n_head", c_uint32),
        ("n_head_kv", c_uint32),
        ("n_ff", c_uint32),
        ("file_type", c_uint32),
        ("rope_freq_base", c_double),
        ("rms_norm_eps", c_double),
    ]


class llms_tensor_info(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("type", c_int32),
        ("n_dims", c_uint32),
        ("dims", c_int64 * 4),
        ("offset", c_uint64),
        ("n_bytes", c_uint64),
        ("name", c_char_p),
    ]


class llms_chat_message(Structure):
    _fields_ = [
        ("role", c_char_p),
        ("content", c_char_p),
    ]


class llms_session_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("n_ctx", c_uint32),
        ("flags", c_uint32),
        ("n_keep", c_uint32),
    ]


class llms_logit_bias(Structure):
    _fields_ = [
        ("token", c_int32),
        ("bias", c_float),
    ]


class llms_sampling_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("temperature", c_float),
        ("top_k", c_int32),
        ("top_p", c_float),
        ("min_p", c_float),
        ("repeat_penalty", c_float),
        ("frequency_penalty", c_float),
        ("presence_penalty", c_float),
        ("penalty_last_n", c_int32),
        ("seed", c_uint64),
        ("max_tokens", c_int32),
        ("min_tokens", c_int32),
        ("stop", POINTER(c_char_p)),
        ("n_stop", c_uint32),
        ("logit_bias", POINTER(llms_logit_bias)),
        ("n_logit_bias", c_uint32),
        ("n_logprobs", c_int32),
        ("flags", c_uint32),
    ]


class llms_token_logprob(Structure):
    _fields_ = [
        ("token", c_int32),
        ("logprob", c_float),
    ]


class llms_step_result(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("token", c_int32),
        ("finish_reason", c_int32),
        ("logprob", c_float),
        # c_void_p rather than c_char_p: the text is not NUL-terminated at
        # text_len and may contain NULs, so it is read with ctypes.string_at.
        ("text", c_void_p),
        ("text_len", c_size_t),
        ("top_logprobs", POINTER(llms_token_logprob)),
        ("n_top_logprobs", c_uint32),
        ("n_generated", c_uint32),
    ]


# Structs of the model-file tools, the prefix cache, the scheduler and the
# devices: mirrored for the layout test; the scheduler's are used by
# _scheduler.Scheduler (poll API only: no event callback is ever set).

class llms_quantize_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("ftype", c_int32),
    ]


class llms_random_model_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("arch", c_char_p),
        ("name", c_char_p),
        ("n_embd", c_uint32),
        ("n_layer", c_uint32),
        ("n_head", c_uint32),
        ("n_head_kv", c_uint32),
        ("n_ff", c_uint32),
        ("n_vocab", c_uint32),
        ("n_ctx_train", c_uint32),
        ("rope_freq_base", c_float),
        ("rms_eps", c_float),
        ("tied", c_int32),
        ("qkv_bias", c_int32),
        ("ftype", c_int32),
        ("seed", c_uint64),
    ]


class llms_cache_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("budget_bytes", c_uint64),
    ]


class llms_cache_stats(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("blocks_used", c_uint64),
        ("blocks_pinned", c_uint64),
        ("bytes_used", c_uint64),
        ("hit_tokens", c_uint64),
        ("miss_tokens", c_uint64),
        ("evictions", c_uint64),
        ("inserts", c_uint64),
    ]


class llms_event(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("type", c_int32),
        ("request_id", c_uint64),
        ("user_tag", c_uint64),
        ("finish_reason", c_int32),
        ("status", c_int32),
        ("token", c_int32),
        ("n_generated", c_uint32),
        ("text_buf", c_void_p),
        ("text_cap", c_size_t),
        ("text_len", c_size_t),
        ("prompt_tokens", c_uint32),
        ("cached_tokens", c_uint32),
        ("completion_tokens", c_uint32),
    ]


EVENT_FN = CFUNCTYPE(None, c_void_p, POINTER(llms_event))


class llms_scheduler_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("max_batch_tokens", c_uint32),
        ("max_running", c_uint32),
        ("queue_capacity", c_uint32),
        ("n_ctx", c_uint32),
        ("kv_budget_bytes", c_uint64),
        ("event_fn", EVENT_FN),
        ("event_user", c_void_p),
        ("cache", c_void_p),
        ("aging_ms", c_uint32),
    ]


class llms_request_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("prompt", c_char_p),
        ("prompt_len", c_size_t),
        ("tokens", POINTER(c_int32)),
        ("n_tokens", c_size_t),
        ("sampling", POINTER(llms_sampling_params)),
        ("tenant", c_char_p),
        ("priority", c_int32),
        ("deadline_ms", c_uint32),
        ("user_tag", c_uint64),
    ]


class llms_tenant_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("name", c_char_p),
        ("max_concurrent", c_uint32),
        ("tokens_per_minute", c_uint32),
        ("max_prompt_tokens", c_uint32),
        ("max_output_tokens", c_uint32),
        ("weight", c_uint32),
        ("sharing_group", c_char_p),
    ]


class llms_scheduler_stats(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("requests_submitted", c_uint64),
        ("requests_finished", c_uint64),
        ("requests_cancelled", c_uint64),
        ("requests_timed_out", c_uint64),
        ("requests_rejected", c_uint64),
        ("requests_failed", c_uint64),
        ("prompt_tokens", c_uint64),
        ("cached_tokens", c_uint64),
        ("generated_tokens", c_uint64),
        ("preemptions", c_uint64),
        ("steps", c_uint64),
        ("queue_depth", c_uint32),
        ("running", c_uint32),
        ("last_batch_tokens", c_uint32),
        ("kv_blocks_used", c_uint32),
        ("kv_blocks_free", c_uint32),
        ("ttft_count", c_uint64),
        ("ttft_sum_s", c_double),
        ("e2e_count", c_uint64),
        ("e2e_sum_s", c_double),
    ]


class llms_device_info(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("type", c_int32),
        ("name", c_char * 256),
        ("vendor_id", c_uint32),
        ("device_id", c_uint32),
        ("api_version", c_uint32),
        ("subgroup_size", c_uint32),
        ("memory_bytes", c_uint64),
        ("features", c_uint32),
        ("max_workgroup_size", c_uint32),
    ]


# Every public struct, by its C name; the layout test walks this and also
# checks that the header declares no struct missing from it.
STRUCTS = {cls.__name__: cls for cls in (
    llms_allocator, llms_context_params, llms_model_params, llms_model_info,
    llms_tensor_info, llms_chat_message, llms_session_params, llms_logit_bias,
    llms_sampling_params, llms_token_logprob, llms_step_result, llms_quantize_params,
    llms_random_model_params, llms_cache_params, llms_cache_stats, llms_event,
    llms_scheduler_params, llms_request_params, llms_tenant_params, llms_scheduler_stats,
    llms_device_info)}

# ---------------------------------------------------------------------------
# Finding and loading the library.
# ---------------------------------------------------------------------------


def _candidates():
    env = os.environ.get("LLMS_LIBRARY")
    if env:
        # An explicit choice is the only candidate: silently falling back
        # to another copy would hide the mistake.
        return [env]
    out = []
    # Running from the repository: bindings/python/llmserve -> <repo>/lib.
    here = os.path.dirname(os.path.abspath(__file__))
    tree = os.path.normpath(os.path.join(here, "..", "..", "..", "lib", "libllmserve.so"))
    if os.path.exists(tree):
        out.append(tree)
    out.append("libllmserve.so.%d" % _version.VERSION_MAJOR)
    found = ctypes.util.find_library("llmserve")
    if found:
        out.append(found)
    return out


def _open():
    errors = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            errors.append("%s: %s" % (path, e))
    raise OSError("libllmserve not found (set LLMS_LIBRARY to its path): " + "; ".join(errors))


lib, lib_path = _open()

# ---------------------------------------------------------------------------
# Prototypes. restype/argtypes for every function the bindings call, so a
# wrong argument is a Python TypeError instead of memory corruption.
# ---------------------------------------------------------------------------

_p = c_void_p  # opaque handles
_status = c_int32


def _fn(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    globals()[name] = f


_fn("llms_status_string", c_char_p, _status)
_fn("llms_errmsg", c_char_p)
_fn("llms_version_string", c_char_p)
_fn("llms_version_number", c_uint32)
_fn("llms_build_features", c_char_p)

_fn("llms_context_params_init", None, POINTER(llms_context_params))
_fn("llms_context_create", _status, POINTER(llms_context_params), POINTER(_p))
_fn("llms_context_destroy", None, _p)
_fn("llms_context_backend", c_int32, _p)
_fn("llms_context_n_threads", c_int32, _p)

_fn("llms_type_name", c_char_p, c_int32)
_fn("llms_model_params_init", None, POINTER(llms_model_params))
_fn("llms_model_load", _status, _p, c_char_p, POINTER(llms_model_params), POINTER(_p))
_fn("llms_model_load_from_memory", _status, _p, c_void_p, c_size_t,
    POINTER(llms_model_params), POINTER(_p))
_fn("llms_model_destroy", None, _p)
_fn("llms_model_backend", c_int32, _p)
_fn("llms_model_info_init", None, POINTER(llms_model_info))
_fn("llms_model_get_info", _status, _p, POINTER(llms_model_info))
_fn("llms_tensor_info_init", None, POINTER(llms_tensor_info))
_fn("llms_model_tensor", _status, _p, c_uint32, POINTER(llms_tensor_info))
_fn("llms_model_meta_key", _status, _p, c_uint32, POINTER(c_char_p))
_fn("llms_model_meta_type", _status, _p, c_char_p, POINTER(c_int32), POINTER(c_int32),
    POINTER(c_uint64))
_fn("llms_model_meta_int", _status, _p, c_char_p, POINTER(c_int64))
_fn("llms_model_meta_float", _status, _p, c_char_p, POINTER(c_double))
_fn("llms_model_meta_string", _status, _p, c_char_p, POINTER(c_void_p), POINTER(c_size_t))
_fn("llms_model_meta_format", _status, _p, c_char_p, c_uint32, c_void_p, c_size_t,
    POINTER(c_size_t))
_fn("llms_model_chat_template", c_char_p, _p)

_fn("llms_model_special_token", c_int32, _p, c_int32)
_fn("llms_model_n_vocab", c_int32, _p)
_fn("llms_model_token_is_eog", c_int32, _p, c_int32)
_fn("llms_tokenize", _status, _p, c_char_p, c_size_t, c_uint32, POINTER(c_int32), c_size_t,
    POINTER(c_size_t))
_fn("llms_token_to_piece", _status, _p, c_int32, c_void_p, c_size_t, POINTER(c_size_t))
_fn("llms_detokenize", _status, _p, POINTER(c_int32), c_size_t, c_uint32, c_void_p, c_size_t,
    POINTER(c_size_t))

_fn("llms_chat_template_family", c_int32, c_char_p)
_fn("llms_chat_apply_template", _status, _p, c_char_p, POINTER(llms_chat_message), c_size_t,
    c_int32, c_void_p, c_size_t, POINTER(c_size_t))

_fn("llms_session_params_init", None, POINTER(llms_session_params))
_fn("llms_session_create", _status, _p, POINTER(llms_session_params), POINTER(_p))
_fn("llms_session_destroy", None, _p)
_fn("llms_session_fork", _status, _p, POINTER(_p))
_fn("llms_session_reset", _status, _p)
_fn("llms_session_truncate", _status, _p, c_uint32)
_fn("llms_session_n_tokens", c_uint32, _p)
_fn("llms_session_n_ctx", c_uint32, _p)
_fn("llms_session_tokens", POINTER(c_int32), _p)
_fn("llms_session_errmsg", c_char_p, _p)
_fn("llms_session_usable", c_int32, _p)
_fn("llms_session_feed_tokens", _status, _p, POINTER(c_int32), c_size_t)
_fn("llms_session_feed_tokens_logits", _status, _p, POINTER(c_int32), c_size_t, POINTER(c_float))
_fn("llms_session_feed_text", _status, _p, c_char_p, c_size_t, c_uint32)
_fn("llms_session_logits", POINTER(c_float), _p)
_fn("llms_sampling_params_init", None, POINTER(llms_sampling_params))
_fn("llms_step_result_init", None, POINTER(llms_step_result))
_fn("llms_session_generate_begin", _status, _p, POINTER(llms_sampling_params))
_fn("llms_session_step", _status, _p, POINTER(llms_step_result))

_fn("llms_scheduler_params_init", None, POINTER(llms_scheduler_params))
_fn("llms_scheduler_create", _status, _p, POINTER(llms_scheduler_params), POINTER(_p))
_fn("llms_scheduler_destroy", None, _p)
_fn("llms_request_params_init", None, POINTER(llms_request_params))
_fn("llms_scheduler_submit", _status, _p, POINTER(llms_request_params), POINTER(c_uint64))
_fn("llms_scheduler_cancel", _status, _p, c_uint64)
_fn("llms_scheduler_poll", _status, _p, POINTER(llms_event), c_int32)
_fn("llms_tenant_params_init", None, POINTER(llms_tenant_params))
_fn("llms_scheduler_set_tenant", _status, _p, POINTER(llms_tenant_params))
_fn("llms_scheduler_stats_init", None, POINTER(llms_scheduler_stats))
_fn("llms_scheduler_get_stats", _status, _p, POINTER(llms_scheduler_stats))
_fn("llms_scheduler_metrics_prometheus", _status, _p, c_void_p, c_size_t, POINTER(c_size_t))
