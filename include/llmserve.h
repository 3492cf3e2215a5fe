/*
 * libllmserve: an embeddable LLM serving library with a stable C ABI.
 *
 * This header is the whole contract: nothing outside it is API.
 *
 * Conventions (see README.md, "API conventions"):
 *  - Every object is an opaque handle. Constructors return an llms_status and
 *    write the handle through an out-pointer; destructors accept NULL.
 *  - Status codes: 0 is success, positive values are non-error statuses,
 *    negative values are errors. The numbers are frozen forever.
 *  - Detail for the last failure is available as text from llms_errmsg()
 *    (per calling thread) and, for sessions, llms_session_errmsg().
 *  - No struct is passed or returned by value. Parameter structs begin with
 *    their own size (`struct_size`) and have an `_init` function that fills
 *    the defaults; fields are only ever appended, and the library reads only
 *    the first `struct_size` bytes, using defaults for the rest. Output
 *    structs work the same way: the library writes only the fields that fit
 *    in the caller's `struct_size`.
 *  - Fixed-width integer types; no bool; no variadic functions.
 *  - The library never aborts, exits or prints. Diagnostics go to the log
 *    callback of the context, which is silent by default and never receives
 *    prompt or generated text unless the host sets LLMS_CONTEXT_LOG_CONTENT.
 *  - "Threads:" on every function says who may call it concurrently.
 *    "Since:" gives the version in which it arrived.
 *
 * Object model:
 *    llms_context    runtime: backend choice, worker threads, allocator, log.
 *    llms_model      an immutable loaded model (weights, vocabulary,
 *                    metadata); shareable between threads and sessions.
 *    llms_session    one conversation: KV cache (fixed-size blocks),
 *                    position, sampler state. Used by one thread at a time.
 *    llms_scheduler  batches many sessions into shared forward passes
 *                    (continuous batching) with admission control, tenants,
 *                    priorities and metrics.
 *    llms_cache      a reusable store of KV blocks keyed by token prefixes,
 *                    shared by sessions and schedulers of one model.
 *  Lifetimes nest: a context outlives its models, a model outlives its
 *  sessions, schedulers and caches.
 */
#ifndef LLMSERVE_H
#define LLMSERVE_H

#include <stddef.h>
#include <stdint.h>

#include "llmserve_version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define LLMS_API __declspec(dllimport)
#elif defined(__GNUC__)
#define LLMS_API __attribute__((visibility("default")))
#else
#define LLMS_API
#endif

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */
/* ------------------------------------------------------------------------ */

typedef int32_t llms_status;

enum {
    LLMS_OK = 0,

    /* Non-error statuses (positive). */
    LLMS_TOKEN = 1,            /* llms_session_step produced a token */
    LLMS_DONE = 2,             /* generation ended; see the finish reason */
    LLMS_AGAIN = 3,            /* nothing available yet; try again later */

    /* Errors (negative). Frozen numbers: never renumbered, never reused. */
    LLMS_ERR_INVALID_ARGUMENT = -1,  /* NULL handle, bad value, NaN, ... */
    LLMS_ERR_NO_MEMORY = -2,         /* an allocation failed */
    LLMS_ERR_IO = -3,                /* open/read/map failed */
    LLMS_ERR_BUFFER_TOO_SMALL = -4,  /* output buffer too small; size reported */
    LLMS_ERR_NOT_FOUND = -5,         /* no such key, tensor or token */
    LLMS_ERR_UNSUPPORTED = -6,       /* architecture, type or feature not supported */
    LLMS_ERR_INTERNAL = -7,          /* a bug in the library */
    LLMS_ERR_VERSION = -8,           /* header/library version mismatch */
    LLMS_ERR_STATE = -9,             /* call not valid in the object's state */

    /* Model file (GGUF) errors: the file is untrusted. */
    LLMS_ERR_GGUF_MAGIC = -20,       /* not a GGUF file */
    LLMS_ERR_GGUF_VERSION = -21,     /* GGUF version not 2 or 3 */
    LLMS_ERR_GGUF_TRUNCATED = -22,   /* file ends inside a section */
    LLMS_ERR_GGUF_OVERFLOW = -23,    /* a count/size/offset overflows or exceeds the file */
    LLMS_ERR_GGUF_LIMIT = -24,       /* a string, array or count above a sane cap */
    LLMS_ERR_GGUF_TYPE = -25,        /* unknown value type, or a key of the wrong type */
    LLMS_ERR_GGUF_DUPLICATE = -26,   /* duplicate key or tensor name */
    LLMS_ERR_GGUF_ALIGNMENT = -27,   /* general.alignment 0, not a power of two, or huge */
    LLMS_ERR_GGUF_TENSOR_TYPE = -28, /* unknown tensor type */
    LLMS_ERR_GGUF_SHAPE = -29,       /* bad dimension count, dimension or row length */
    LLMS_ERR_GGUF_BOUNDS = -30,      /* tensor data outside the data section */

    /* Model semantics. */
    LLMS_ERR_MODEL_TENSOR = -40,     /* a required tensor is missing or misshapen */
    LLMS_ERR_MODEL_METADATA = -41,   /* a required metadata key is missing or invalid */
    LLMS_ERR_TOKENIZER = -42,        /* vocabulary missing or inconsistent */

    /* Requests and generation. */
    LLMS_ERR_TOKEN_RANGE = -50,      /* a token id outside the vocabulary */
    LLMS_ERR_CONTEXT_FULL = -51,     /* the session's context window is full */
    LLMS_ERR_PROMPT_TOO_LONG = -52,  /* the prompt cannot fit in the context */
    LLMS_ERR_TEMPLATE = -53,         /* chat template unknown or not applicable */
    LLMS_ERR_BUSY = -54,             /* queue full: rejected at once, retry later */
    LLMS_ERR_RATE_LIMITED = -55,     /* a tenant limit was hit */
    LLMS_ERR_CANCELLED = -56,        /* cancelled by the host */
    LLMS_ERR_TIMEOUT = -57,          /* a deadline passed */

    /* Compute backends. */
    LLMS_ERR_BACKEND = -70,          /* backend failed to initialise or run */
    LLMS_ERR_DEVICE_LOST = -71,      /* the GPU device was lost */
    LLMS_ERR_DEVICE_MEMORY = -72     /* out of device memory / over the device budget */
};

/* A static, human-readable name for a status ("LLMS_ERR_NO_MEMORY: ...").
 * Never NULL; unknown codes give "unknown status".
 * Threads: any. Lifetime: static. Since: 0.1. */
LLMS_API const char *llms_status_string(llms_status status);

/* Detail of the last failure on the calling thread (any handle), e.g. the
 * key or tensor a GGUF error is about. Empty string if none.
 * Threads: any; each thread has its own. Lifetime: until the calling
 * thread's next failing library call. Since: 0.1. */
LLMS_API const char *llms_errmsg(void);

/* ------------------------------------------------------------------------ */
/* Version and build features                                                */
/* ------------------------------------------------------------------------ */

/* Run-time version of the library as "MAJOR.MINOR.PATCH".
 * Threads: any. Lifetime: static. Since: 0.1. */
LLMS_API const char *llms_version_string(void);

/* Run-time LLMS_VERSION_NUMBER of the library. Compare with the compile-time
 * macro to detect a header/library mismatch. Threads: any. Since: 0.1. */
LLMS_API uint32_t llms_version_number(void);

/* Build features as a space-separated list ("cpu openblas avx2 vulkan ...").
 * Threads: any. Lifetime: static. Since: 0.1. */
LLMS_API const char *llms_build_features(void);

/* ------------------------------------------------------------------------ */
/* Opaque handles                                                            */
/* ------------------------------------------------------------------------ */

typedef struct llms_context llms_context;
typedef struct llms_model llms_model;
typedef struct llms_session llms_session;
typedef struct llms_scheduler llms_scheduler;
typedef struct llms_cache llms_cache;

/* ------------------------------------------------------------------------ */
/* Context                                                                   */
/* ------------------------------------------------------------------------ */

/* A host-replaceable allocator. Every allocation the library makes for its
 * own objects goes through it (model files are memory-mapped where possible,
 * which is not an allocation). All three functions are required.
 * realloc_fn(ptr=NULL) must behave like malloc_fn; free_fn(NULL) must be a
 * no-op. Returned memory must be aligned for any standard type. The library
 * copies this struct; the functions must stay callable, from any thread,
 * until the context is destroyed. */
typedef struct llms_allocator {
    uint32_t struct_size;
    void *user;
    void *(*malloc_fn)(void *user, size_t size);
    void *(*realloc_fn)(void *user, void *ptr, size_t size);
    void (*free_fn)(void *user, void *ptr);
} llms_allocator;

/* Log levels. */
enum {
    LLMS_LOG_ERROR = 1,
    LLMS_LOG_WARN = 2,
    LLMS_LOG_INFO = 3,
    LLMS_LOG_DEBUG = 4
};

/* Log callback. `message` is one line without a newline, valid only during
 * the call. May be called from any library thread, never concurrently for
 * the same context. */
typedef void (*llms_log_fn)(void *user, int32_t level, const char *message);

/* Compute backend choice. */
enum {
    LLMS_BACKEND_AUTO = 0,   /* a discrete or integrated GPU, else the CPU */
    LLMS_BACKEND_CPU = 1,
    LLMS_BACKEND_VULKAN = 2  /* Vulkan even if the only device is a CPU driver */
};

/* Context flags. */
enum {
    /* Let log messages include prompt and generated text (off by default). */
    LLMS_CONTEXT_LOG_CONTENT = 1u << 0
};

typedef struct llms_context_params {
    uint32_t struct_size;
    int32_t backend;          /* LLMS_BACKEND_*; default AUTO */
    int32_t device_index;     /* Vulkan device index, -1 = automatic (default) */
    int32_t n_threads;        /* CPU worker threads; 0 = number of cores (default) */
    uint32_t flags;           /* LLMS_CONTEXT_* */
    int32_t log_level;        /* most verbose level delivered; default LLMS_LOG_WARN */
    llms_log_fn log_fn;       /* NULL = silent (default) */
    void *log_user;
    const llms_allocator *allocator; /* NULL = the C library's malloc (default); copied */
    uint64_t device_memory_budget;   /* bytes of device memory to use; 0 = all */
} llms_context_params;

/* Fill `params` with defaults (and struct_size).
 * Threads: any. Since: 0.1. */
LLMS_API void llms_context_params_init(llms_context_params *params);

/* Create a runtime context. `params` may be NULL for defaults.
 * Threads: any. Since: 0.1. */
LLMS_API llms_status llms_context_create(const llms_context_params *params,
                                         llms_context **out);

/* Destroy a context; all its models must have been destroyed. NULL is a no-op.
 * Threads: one thread, with no other call on the context in progress. Since: 0.1. */
LLMS_API void llms_context_destroy(llms_context *ctx);

/* The backend actually in use (LLMS_BACKEND_CPU or LLMS_BACKEND_VULKAN).
 * Threads: any. Since: 0.1. */
LLMS_API int32_t llms_context_backend(const llms_context *ctx);

/* Number of CPU worker threads the context uses.
 * Threads: any. Since: 0.1. */
LLMS_API int32_t llms_context_n_threads(const llms_context *ctx);

/* ------------------------------------------------------------------------ */
/* Model loading and metadata                                                */
/* ------------------------------------------------------------------------ */

/* Tensor element types (numbers as in GGUF). */
enum {
    LLMS_TYPE_F32 = 0,
    LLMS_TYPE_F16 = 1,
    LLMS_TYPE_Q4_0 = 2,
    LLMS_TYPE_Q4_1 = 3,
    LLMS_TYPE_Q5_0 = 6,
    LLMS_TYPE_Q5_1 = 7,
    LLMS_TYPE_Q8_0 = 8,
    LLMS_TYPE_Q8_1 = 9,
    LLMS_TYPE_Q2_K = 10,
    LLMS_TYPE_Q3_K = 11,
    LLMS_TYPE_Q4_K = 12,
    LLMS_TYPE_Q5_K = 13,
    LLMS_TYPE_Q6_K = 14,
    LLMS_TYPE_Q8_K = 15,
    LLMS_TYPE_I8 = 24,
    LLMS_TYPE_I16 = 25,
    LLMS_TYPE_I32 = 26,
    LLMS_TYPE_I64 = 27,
    LLMS_TYPE_F64 = 28,
    LLMS_TYPE_BF16 = 30
};

/* Name of a tensor type ("Q4_K"), or NULL if the library does not know it.
 * Threads: any. Lifetime: static. Since: 0.1. */
LLMS_API const char *llms_type_name(int32_t type);

/* Model flags. */
enum {
    LLMS_MODEL_NO_MMAP = 1u << 0,    /* read the file into memory instead of mapping it */
    LLMS_MODEL_VOCAB_ONLY = 1u << 1, /* load metadata and vocabulary, no weights */
    /* CPU backend: stream the matrices it does not repack (F16/F32, and
     * the K-quants' single-token decode) from the file mapping, shared
     * with other processes, instead of a private copy on huge pages (the
     * default for a mapped file: about 10% faster decode, the copy's
     * memory private to this process; weights read into a buffer, with
     * LLMS_MODEL_NO_MMAP or from memory, are never copied). Since: 0.2. */
    LLMS_MODEL_MAPPED_WEIGHTS = 1u << 2
};

typedef struct llms_model_params {
    uint32_t struct_size;
    uint32_t flags;           /* LLMS_MODEL_* */
} llms_model_params;

/* Threads: any. Since: 0.1. */
LLMS_API void llms_model_params_init(llms_model_params *params);

/* Load a GGUF model file. The file is treated as untrusted: any
 * inconsistency is an error (LLMS_ERR_GGUF_*, LLMS_ERR_MODEL_*,
 * LLMS_ERR_UNSUPPORTED) with detail in llms_errmsg(). `params` may be NULL.
 * Threads: any (concurrent loads on one context are allowed). Since: 0.1. */
LLMS_API llms_status llms_model_load(llms_context *ctx, const char *path,
                                     const llms_model_params *params,
                                     llms_model **out);

/* Load a model from a GGUF image in memory. The library does not copy
 * `data`: it must stay valid and unchanged until the model is destroyed.
 * Threads: any. Since: 0.1. */
LLMS_API llms_status llms_model_load_from_memory(llms_context *ctx,
                                                 const void *data, size_t size,
                                                 const llms_model_params *params,
                                                 llms_model **out);

/* Destroy a model; its sessions must have been destroyed. NULL is a no-op.
 * Threads: one thread, with no other call on the model in progress. Since: 0.1. */
LLMS_API void llms_model_destroy(llms_model *model);

/* The backend this model's passes run on: the context's, except that on a
 * GPU chosen by LLMS_BACKEND_AUTO a model the GPU kernels do not cover (a
 * weight type without a shader, say) runs on the CPU instead (a warning
 * goes to the log). Threads: any. Since: 0.2. */
LLMS_API int32_t llms_model_backend(const llms_model *model);

/* Summary of a model. Strings point into the model and live as long as it. */
typedef struct llms_model_info {
    uint32_t struct_size;
    uint32_t gguf_version;
    const char *architecture;   /* general.architecture */
    const char *name;           /* general.name, or "" */
    uint64_t n_params;          /* total elements of all tensors */
    uint64_t n_bytes;           /* bytes of tensor data */
    uint32_t n_tensors;
    uint32_t n_metadata;        /* number of metadata keys */
    uint32_t n_vocab;
    uint32_t n_ctx_train;       /* context length the model was trained with */
    uint32_t n_embd;
    uint32_t n_layer;
    uint32_t n_head;
    uint32_t n_head_kv;
    uint32_t n_ff;
    uint32_t file_type;         /* general.file_type, or 0 */
    double rope_freq_base;
    double rms_norm_eps;
} llms_model_info;

/* Threads: any. Since: 0.1. */
LLMS_API void llms_model_info_init(llms_model_info *info);

/* Fill `info` (set info->struct_size first, e.g. with llms_model_info_init).
 * Threads: any. Since: 0.1. */
LLMS_API llms_status llms_model_get_info(const llms_model *model, llms_model_info *info);

/* One tensor of the model file. `name` lives as long as the model. */
typedef struct llms_tensor_info {
    uint32_t struct_size;
    int32_t type;               /* LLMS_TYPE_* */
    uint32_t n_dims;            /* 1..4 */
    int64_t dims[4];            /* dims[0] is the row length; unused dims are 1 */
    uint64_t offset;            /* byte offset in the file */
    uint64_t n_bytes;
    const char *name;
} llms_tensor_info;

/* Threads: any. Since: 0.1. */
LLMS_API void llms_tensor_info_init(llms_tensor_info *info);

/* Tensor `index` (0 <= index < n_tensors) in file order.
 * Threads: any. Since: 0.1. */
LLMS_API llms_status llms_model_tensor(const llms_model *model, uint32_t index,
                                       llms_tensor_info *info);

/* Metadata value types (numbers as in GGUF). */
enum {
    LLMS_META_UINT8 = 0,
    LLMS_META_INT8 = 1,
    LLMS_META_UINT16 = 2,
    LLMS_META_INT16 = 3,
    LLMS_META_UINT32 = 4,
    LLMS_META_INT32 = 5,
    LLMS_META_FLOAT32 = 6,
    LLMS_META_BOOL = 7,
    LLMS_META_STRING = 8,
    LLMS_META_ARRAY = 9,
    LLMS_META_UINT64 = 10,
    LLMS_META_INT64 = 11,
    LLMS_META_FLOAT64 = 12
};

/* Key of metadata entry `index` (file order), NUL-terminated.
 * Threads: any. Lifetime: the model's. Since: 0.1. */
LLMS_API llms_status llms_model_meta_key(const llms_model *model, uint32_t index,
                                         const char **key);

/* Type of the value under `key` (LLMS_META_*); for arrays, also the element
 * type and length (either pointer may be NULL). LLMS_ERR_NOT_FOUND if absent.
 * Threads: any. Since: 0.1. */
LLMS_API llms_status llms_model_meta_type(const llms_model *model, const char *key,
                                          int32_t *type, int32_t *elem_type,
                                          uint64_t *n_elems);

/* Typed getters. Integers of any width convert when the value fits;
 * otherwise LLMS_ERR_GGUF_TYPE. Strings are NUL-terminated and may contain
 * embedded NULs (their length is written to *len if len is not NULL).
 * Threads: any. Lifetime of strings: the model's. Since: 0.1. */
LLMS_API llms_status llms_model_meta_int(const llms_model *model, const char *key,
                                         int64_t *value);
LLMS_API llms_status llms_model_meta_float(const llms_model *model, const char *key,
                                           double *value);
LLMS_API llms_status llms_model_meta_string(const llms_model *model, const char *key,
                                            const char **value, size_t *len);

/* Any value as text (arrays abbreviated after `max_elems` elements), written
 * NUL-terminated to `buf`. If `cap` is too small: LLMS_ERR_BUFFER_TOO_SMALL,
 * and *len holds the size needed without the NUL. Threads: any. Since: 0.1. */
LLMS_API llms_status llms_model_meta_format(const llms_model *model, const char *key,
                                            uint32_t max_elems, char *buf, size_t cap,
                                            size_t *len);

/* The model's chat template (tokenizer.chat_template) or NULL if it has none.
 * Threads: any. Lifetime: the model's. Since: 0.1. */
LLMS_API const char *llms_model_chat_template(const llms_model *model);

/* ------------------------------------------------------------------------ */
/* Vocabulary and tokenization                                               */
/* ------------------------------------------------------------------------ */

/* Special tokens. */
enum {
    LLMS_SPECIAL_BOS = 0,
    LLMS_SPECIAL_EOS = 1,
    LLMS_SPECIAL_EOT = 2,
    LLMS_SPECIAL_PAD = 3,
    LLMS_SPECIAL_UNK = 4,
    LLMS_SPECIAL_SEP = 5,
    LLMS_SPECIAL_NL = 6
};

/* The id of a special token, or -1 if the model has none.
 * Threads: any. Since: 0.1. */
LLMS_API int32_t llms_model_special_token(const llms_model *model, int32_t which);

/* Vocabulary size. Threads: any. Since: 0.1. */
LLMS_API int32_t llms_model_n_vocab(const llms_model *model);

/* 1 if `token` ends generation (EOS, EOT or another end-of-generation
 * token), else 0. Threads: any. Since: 0.1. */
LLMS_API int32_t llms_model_token_is_eog(const llms_model *model, int32_t token);

/* Tokenize flags. */
enum {
    LLMS_TOKENIZE_ADD_BOS = 1u << 0,       /* prepend BOS (if the model has one) */
    LLMS_TOKENIZE_PARSE_SPECIAL = 1u << 1, /* recognise special-token text such as "<|im_end|>" */
    LLMS_TOKENIZE_MODEL_DEFAULTS = 1u << 2 /* add BOS/EOS as the model's metadata says */
};

/* Tokenize UTF-8 (or arbitrary bytes) `text` of `len` bytes into `tokens`.
 * Without flags, no BOS/EOS is added and special-token text is plain text.
 * If `cap` is too small: LLMS_ERR_BUFFER_TOO_SMALL and *n_tokens holds the
 * number needed (call again with a larger buffer). Linear time in `len`.
 * Threads: any. Since: 0.1. */
LLMS_API llms_status llms_tokenize(const llms_model *model, const char *text, size_t len,
                                   uint32_t flags, int32_t *tokens, size_t cap,
                                   size_t *n_tokens);

/* The bytes of one token as they appear in text (byte tokens give their
 * byte, which may be part of a UTF-8 character). Not NUL-terminated.
 * LLMS_ERR_BUFFER_TOO_SMALL with *len = needed if `cap` is too small.
 * Threads: any. Since: 0.1. */
LLMS_API llms_status llms_token_to_piece(const llms_model *model, int32_t token,
                                         char *buf, size_t cap, size_t *len);

/* Detokenize flags. */
enum {
    LLMS_DETOKENIZE_SPECIAL = 1u << 0,        /* render control tokens' text */
    LLMS_DETOKENIZE_KEEP_LEADING_SPACE = 1u << 1 /* SentencePiece: keep the space of the first token */
};

/* Concatenated text of `n` tokens, NUL-terminated in `buf`. Byte tokens and
 * multi-byte characters split over tokens join correctly.
 * LLMS_ERR_BUFFER_TOO_SMALL with *len = needed (without NUL) if too small.
 * Threads: any. Since: 0.1. */
LLMS_API llms_status llms_detokenize(const llms_model *model, const int32_t *tokens,
                                     size_t n, uint32_t flags, char *buf, size_t cap,
                                     size_t *len);

/* ------------------------------------------------------------------------ */
/* Chat templates                                                            */
/* ------------------------------------------------------------------------ */

/* One chat message. This struct is frozen (it is used in arrays). */
typedef struct llms_chat_message {
    const char *role;      /* "system", "user", "assistant" */
    const char *content;
} llms_chat_message;

/* Template families recognised from a template's text. */
enum {
    LLMS_CHAT_UNKNOWN = 0,
    LLMS_CHAT_CHATML = 1,
    LLMS_CHAT_LLAMA2 = 2,
    LLMS_CHAT_LLAMA3 = 3,
    LLMS_CHAT_MISTRAL = 4,
    LLMS_CHAT_PHI3 = 5,
    LLMS_CHAT_GEMMA = 6,
    LLMS_CHAT_ZEPHYR = 7
};

/* The family of a template text (a Jinja template from GGUF metadata, or a
 * family name such as "chatml"). Threads: any. Since: 0.1. */
LLMS_API int32_t llms_chat_template_family(const char *template_text);

/* Render `messages` with the model's chat template (or `template_text` if
 * not NULL). With `add_assistant` non-zero, end with the assistant prefix so
 * that generation continues as the assistant. Unknown templates are
 * LLMS_ERR_TEMPLATE, never a guess. Output NUL-terminated; too small a
 * buffer gives LLMS_ERR_BUFFER_TOO_SMALL and *len = needed.
 * Threads: any. Since: 0.1. */
LLMS_API llms_status llms_chat_apply_template(const llms_model *model,
                                              const char *template_text,
                                              const llms_chat_message *messages,
                                              size_t n_messages, int32_t add_assistant,
                                              char *buf, size_t cap, size_t *len);

/* ------------------------------------------------------------------------ */
/* Sessions                                                                  */
/* ------------------------------------------------------------------------ */

/* Session flags. */
enum {
    /* When the context is full, keep the first n_keep tokens, drop the oldest
     * half of the rest and continue, instead of returning CONTEXT_FULL. */
    LLMS_SESSION_CONTEXT_SHIFT = 1u << 0
};

typedef struct llms_session_params {
    uint32_t struct_size;
    uint32_t n_ctx;           /* context window in tokens; 0 = the model's (default) */
    uint32_t flags;           /* LLMS_SESSION_* */
    uint32_t n_keep;          /* tokens kept at the start on a context shift */
} llms_session_params;

/* Threads: any. Since: 0.1. */
LLMS_API void llms_session_params_init(llms_session_params *params);

/* Create a session on a model. `params` may be NULL.
 * Threads: any (the model is shared). Since: 0.1. */
LLMS_API llms_status llms_session_create(llms_model *model, const llms_session_params *params,
                                         llms_session **out);

/* NULL is a no-op. Threads: the session's thread. Since: 0.1. */
LLMS_API void llms_session_destroy(llms_session *session);

/* Copy a session: its tokens, KV cache and sampler state.
 * Threads: the source session's thread. Since: 0.1. */
LLMS_API llms_status llms_session_fork(const llms_session *session, llms_session **out);

/* Forget everything (position 0). Threads: the session's thread. Since: 0.1. */
LLMS_API llms_status llms_session_reset(llms_session *session);

/* Keep only the first `n_tokens` tokens. Threads: the session's thread. Since: 0.1. */
LLMS_API llms_status llms_session_truncate(llms_session *session, uint32_t n_tokens);

/* Number of tokens in the session (its position).
 * Threads: the session's thread. Since: 0.1. */
LLMS_API uint32_t llms_session_n_tokens(const llms_session *session);

/* Context window of the session. Threads: the session's thread. Since: 0.1. */
LLMS_API uint32_t llms_session_n_ctx(const llms_session *session);

/* The session's tokens (valid until the next call that changes the session).
 * Threads: the session's thread. Since: 0.1. */
LLMS_API const int32_t *llms_session_tokens(const llms_session *session);

/* Detail of the session's last failure ("" if none).
 * Threads: the session's thread. Lifetime: until the next call on it. Since: 0.1. */
LLMS_API const char *llms_session_errmsg(const llms_session *session);

/* 1 if the session can still be used; 0 after an error that left it
 * inconsistent (reset it to use it again). Threads: the session's thread. */
LLMS_API int32_t llms_session_usable(const llms_session *session);

/* Evaluate tokens (prefill as matrix products). On error nothing is added
 * and the session stays as it was (LLMS_ERR_TOKEN_RANGE,
 * LLMS_ERR_PROMPT_TOO_LONG, LLMS_ERR_CONTEXT_FULL...).
 * Threads: the session's thread. Since: 0.1. */
LLMS_API llms_status llms_session_feed_tokens(llms_session *session, const int32_t *tokens,
                                              size_t n);

/* Like llms_session_feed_tokens, and also writes the logits after every
 * fed token: n * n_vocab floats to `logits` (teacher forcing, scoring,
 * perplexity). Threads: the session's thread. Since: 0.1. */
LLMS_API llms_status llms_session_feed_tokens_logits(llms_session *session, const int32_t *tokens,
                                                     size_t n, float *logits);

/* Tokenize (flags as llms_tokenize) and evaluate text.
 * Threads: the session's thread. Since: 0.1. */
LLMS_API llms_status llms_session_feed_text(llms_session *session, const char *text,
                                            size_t len, uint32_t flags);

/* Logits after the last evaluated token (n_vocab floats), or NULL if none.
 * Threads: the session's thread. Lifetime: until the next call that changes
 * the session. Since: 0.1. */
LLMS_API const float *llms_session_logits(const llms_session *session);

/* A logit bias entry (frozen; used in arrays). */
typedef struct llms_logit_bias {
    int32_t token;
    float bias;               /* added to the logit; -INFINITY bans the token */
} llms_logit_bias;

/* Sampling flags. */
enum {
    LLMS_SAMPLE_IGNORE_EOG = 1u << 0  /* never stop at end-of-generation tokens */
};

typedef struct llms_sampling_params {
    uint32_t struct_size;
    float temperature;        /* 0 = greedy; default 0.8 */
    int32_t top_k;            /* 0 = off; default 40 */
    float top_p;              /* 1 = off; default 0.95 */
    float min_p;              /* 0 = off; default 0.05 */
    float repeat_penalty;     /* 1 = off (default) */
    float frequency_penalty;  /* 0 = off (default) */
    float presence_penalty;   /* 0 = off (default) */
    int32_t penalty_last_n;   /* window for the penalties; default 64; -1 = whole context */
    uint64_t seed;            /* same seed and inputs give the same output */
    int32_t max_tokens;       /* -1 = until the context is full (default) */
    int32_t min_tokens;       /* end-of-generation suppressed before this; default 0 */
    const char *const *stop;  /* stop strings (copied at generate_begin) */
    uint32_t n_stop;
    const llms_logit_bias *logit_bias; /* copied at generate_begin */
    uint32_t n_logit_bias;
    int32_t n_logprobs;       /* top-n log-probabilities per token; 0 = off; max 20 */
    uint32_t flags;           /* LLMS_SAMPLE_* */
} llms_sampling_params;

/* Threads: any. Since: 0.1. */
LLMS_API void llms_sampling_params_init(llms_sampling_params *params);

/* Why generation ended. */
enum {
    LLMS_FINISH_NONE = 0,
    LLMS_FINISH_EOG = 1,          /* an end-of-generation token */
    LLMS_FINISH_STOP = 2,         /* a stop string (not included in the text) */
    LLMS_FINISH_LENGTH = 3,       /* max_tokens reached */
    LLMS_FINISH_CONTEXT_FULL = 4, /* the context window is full */
    LLMS_FINISH_ERROR = 5,
    LLMS_FINISH_CANCELLED = 6,
    LLMS_FINISH_TIMEOUT = 7
};

/* A token and its log-probability (frozen; used in arrays). */
typedef struct llms_token_logprob {
    int32_t token;
    float logprob;
} llms_token_logprob;

/* What one llms_session_step produced. Pointers are valid until the next
 * call on the session. */
typedef struct llms_step_result {
    uint32_t struct_size;
    int32_t token;            /* the sampled token, or -1 */
    int32_t finish_reason;    /* LLMS_FINISH_* (with LLMS_DONE) */
    float logprob;            /* log-probability of `token` under the model's distribution
                                 after bias and penalties, before temperature/truncation */
    const char *text;         /* text that may be shown now: never a partial UTF-8
                                 character, never a possible start of a stop string */
    size_t text_len;
    const llms_token_logprob *top_logprobs;
    uint32_t n_top_logprobs;
    uint32_t n_generated;     /* tokens generated so far */
} llms_step_result;

/* Threads: any. Since: 0.1. */
LLMS_API void llms_step_result_init(llms_step_result *result);

/* Start generating after what was fed. Copies `params` (NULL = defaults).
 * Threads: the session's thread. Since: 0.1. */
LLMS_API llms_status llms_session_generate_begin(llms_session *session,
                                                 const llms_sampling_params *params);

/* Sample the next token, append it to the session and evaluate it.
 * Returns LLMS_TOKEN with the token and the text it releases, or LLMS_DONE
 * with result->finish_reason (any held-back text is released then), or an
 * error. Threads: the session's thread. Since: 0.1. */
LLMS_API llms_status llms_session_step(llms_session *session, llms_step_result *result);

/* ------------------------------------------------------------------------ */
/* Model files: quantization and synthetic models                            */
/* ------------------------------------------------------------------------ */

/* Whole-file quantization schemes (the general.file_type numbers GGUF
 * files use). The _M mixes keep sensitive tensors at more bits: Q6_K for
 * the output matrix (and the token embedding when it is tied) and, for
 * Q4_K_M/Q5_K_M, Q6_K for half of the attn_v and ffn_down matrices (the
 * first and last eighth of the layers and every third one between). Rows
 * whose length is not a multiple of 256 fall back from K-quants to
 * Q4_0/Q5_0/Q5_1/Q8_0. 1-D tensors (norms, biases) stay F32. */
enum {
    LLMS_FTYPE_F32 = 0,
    LLMS_FTYPE_F16 = 1,
    LLMS_FTYPE_Q4_0 = 2,
    LLMS_FTYPE_Q4_1 = 3,
    LLMS_FTYPE_Q8_0 = 7,
    LLMS_FTYPE_Q5_0 = 8,
    LLMS_FTYPE_Q5_1 = 9,
    LLMS_FTYPE_Q2_K = 10,
    LLMS_FTYPE_Q3_K_M = 12,
    LLMS_FTYPE_Q4_K_M = 15,
    LLMS_FTYPE_Q5_K_M = 17,
    LLMS_FTYPE_Q6_K = 18
};

/* The scheme for a name ("Q4_K_M", "q8_0", "F16", "Q3_K" = Q3_K_M, ...), or
 * -1. Threads: any. Since: 0.2. */
LLMS_API int32_t llms_ftype_from_name(const char *name);
/* Canonical name of a scheme, or NULL. Threads: any. Since: 0.2. */
LLMS_API const char *llms_ftype_name(int32_t ftype);

typedef struct llms_quantize_params {
    uint32_t struct_size;
    int32_t ftype;            /* LLMS_FTYPE_*; default LLMS_FTYPE_Q8_0 */
} llms_quantize_params;

/* Threads: any. Since: 0.2. */
LLMS_API void llms_quantize_params_init(llms_quantize_params *params);

/* Convert a GGUF model with float (F32/F16/BF16) or quantized matrices
 * into `out_path` with the scheme's types, copying every key/value (and
 * setting general.file_type). Uses the context's threads and allocator.
 * Threads: any; the context's workers are shared. Since: 0.2. */
LLMS_API llms_status llms_model_quantize(llms_context *ctx, const char *in_path, const char *out_path,
                                         const llms_quantize_params *params);

/* A model shape for llms_model_write_random. */
typedef struct llms_random_model_params {
    uint32_t struct_size;
    const char *arch;          /* "llama" (default) or "qwen2" */
    const char *name;          /* general.name; default "random" */
    uint32_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab;  /* defaults: a tiny llama */
    uint32_t n_ctx_train;      /* default 2048 */
    float rope_freq_base;      /* default 10000 */
    float rms_eps;             /* default 1e-5 */
    int32_t tied;              /* 1: no output.weight, the embedding is reused */
    int32_t qkv_bias;          /* 1: attn_q/k/v biases (qwen2 style) */
    int32_t ftype;             /* LLMS_FTYPE_*; default LLMS_FTYPE_F16 */
    uint64_t seed;             /* default 1 */
} llms_random_model_params;

/* Threads: any. Since: 0.2. */
LLMS_API void llms_random_model_params_init(llms_random_model_params *params);

/* Write a GGUF model of the given shape with deterministic random weights
 * (scaled so activations stay finite) and a SentencePiece vocabulary of
 * n_vocab pieces (<unk>, <s>, </s>, the 256 byte tokens, filler pieces),
 * for benchmarks and tests. n_vocab must be at least 259.
 * Threads: any; the context's workers are shared. Since: 0.2. */
LLMS_API llms_status llms_model_write_random(llms_context *ctx, const llms_random_model_params *params,
                                             const char *out_path);

/* ------------------------------------------------------------------------ */
/* Prefix cache                                                              */
/* ------------------------------------------------------------------------ */

/* Full KV blocks of prompt tokens, keyed by a hash chain over (model,
 * sharing group, every token so far), shared between the requests of the
 * schedulers that use the cache. Blocks no request uses stay cached and are
 * evicted least-recently-used when the cache is over its budget or the
 * KV memory of a scheduler runs out. A request only ever hits blocks of its
 * own sharing group (by default its tenant), so neither hits nor reported
 * cached tokens reveal another tenant's prompts. */
typedef struct llms_cache_params {
    uint32_t struct_size;
    uint64_t budget_bytes;    /* bytes of KV blocks the cache may keep; 0 = 256 MiB (default) */
} llms_cache_params;

/* Threads: any. Since: 0.2. */
LLMS_API void llms_cache_params_init(llms_cache_params *params);

/* Create a prefix cache for `model`. `params` may be NULL.
 * Threads: any. Since: 0.2. */
LLMS_API llms_status llms_cache_create(llms_model *model, const llms_cache_params *params,
                                       llms_cache **out);

/* Destroy a cache; the schedulers using it must have been destroyed first.
 * NULL is a no-op. Threads: one thread, no other call on it in progress. Since: 0.2. */
LLMS_API void llms_cache_destroy(llms_cache *cache);

typedef struct llms_cache_stats {
    uint32_t struct_size;
    uint64_t blocks_used;     /* blocks held by the cache */
    uint64_t blocks_pinned;   /* of which pinned */
    uint64_t bytes_used;
    uint64_t hit_tokens;      /* prompt tokens served from the cache */
    uint64_t miss_tokens;     /* prompt tokens looked up and not found */
    uint64_t evictions;       /* blocks evicted */
    uint64_t inserts;         /* blocks added */
} llms_cache_stats;

/* Threads: any. Since: 0.2. */
LLMS_API void llms_cache_stats_init(llms_cache_stats *stats);

/* Fill `stats` (set stats->struct_size first). Threads: any. Since: 0.2. */
LLMS_API llms_status llms_cache_get_stats(llms_cache *cache, llms_cache_stats *stats);

/* Pin the cached full blocks of a token prefix in `sharing_group` (the tenant
 * name or sharing group its requests use; NULL or "" = the default tenant),
 * so they are never evicted; *n_pinned (may be NULL) receives the number of
 * tokens pinned (a multiple of 16; 0 if the prefix was never computed:
 * submit a request with it first). Pins nest; unpin with the same tokens.
 * Threads: any. Since: 0.2. */
LLMS_API llms_status llms_cache_pin(llms_cache *cache, const char *sharing_group,
                                    const int32_t *tokens, size_t n_tokens, size_t *n_pinned);
LLMS_API llms_status llms_cache_unpin(llms_cache *cache, const char *sharing_group,
                                      const int32_t *tokens, size_t n_tokens);

/* Drop every block no request is using (pinned ones too, and their pins).
 * Threads: any. Since: 0.2. */
LLMS_API llms_status llms_cache_clear(llms_cache *cache);

/* ------------------------------------------------------------------------ */
/* Scheduler                                                                 */
/* ------------------------------------------------------------------------ */

/* Why a request ended, in addition to LLMS_FINISH_*. */
enum {
    LLMS_FINISH_REJECTED = 8      /* refused after submission (a tenant limit changed...) */
};

/* Event types. */
enum {
    LLMS_EVENT_TOKEN = 1,         /* one generated token and the text it releases */
    LLMS_EVENT_FINISHED = 2,      /* terminal: finish_reason says why; status is 0, or
                                     LLMS_ERR_CANCELLED / LLMS_ERR_TIMEOUT / the rejection */
    LLMS_EVENT_ERROR = 3          /* terminal: the request failed with `status` */
};

/* One scheduler event. For llms_scheduler_poll the caller sets struct_size,
 * text_buf and text_cap; the library fills the rest and copies the text
 * NUL-terminated into text_buf. In the event callback, text_buf points to
 * the library's copy, valid only during the call. */
typedef struct llms_event {
    uint32_t struct_size;
    int32_t type;                 /* LLMS_EVENT_* */
    uint64_t request_id;
    uint64_t user_tag;            /* from llms_request_params */
    int32_t finish_reason;        /* LLMS_FINISH_* for FINISHED and ERROR events */
    llms_status status;
    int32_t token;                /* the token of a TOKEN event (else -1, or the stop token) */
    uint32_t n_generated;         /* tokens generated so far */
    char *text_buf;               /* in (poll): buffer for the text; out (callback): the text */
    size_t text_cap;              /* in (poll): its size in bytes */
    size_t text_len;              /* out: bytes of text, without the NUL (or needed, with
                                     LLMS_ERR_BUFFER_TOO_SMALL) */
    uint32_t prompt_tokens;       /* usage, in terminal events */
    uint32_t cached_tokens;       /* prompt tokens served from the prefix cache */
    uint32_t completion_tokens;
} llms_event;

/* Event callback: called from the thread that runs the step (the worker
 * thread, or the host's llms_scheduler_step caller), in order per request,
 * never concurrently. It must not call llms_scheduler_step or destroy. With
 * a callback, events are not queued for llms_scheduler_poll. */
typedef void (*llms_event_fn)(void *user, const llms_event *event);

/* Scheduler flags. */
enum {
    LLMS_SCHEDULER_OWN_THREAD = 1u << 0,    /* a library worker thread runs the steps */
    LLMS_SCHEDULER_DETERMINISTIC = 1u << 1  /* a request's greedy output is bit-identical
                                               whatever else is in the batch and whether
                                               or not it was preempted (CPU; slower prefill) */
};

typedef struct llms_scheduler_params {
    uint32_t struct_size;
    uint32_t flags;               /* LLMS_SCHEDULER_* */
    uint32_t max_batch_tokens;    /* tokens per forward pass; default 256 */
    uint32_t max_running;         /* requests generating at once; default 64 */
    uint32_t queue_capacity;      /* waiting requests before BUSY; default 256 */
    uint32_t n_ctx;               /* context per request; 0 = the model's (default) */
    uint64_t kv_budget_bytes;     /* KV memory of the model's block pool; 0 = unlimited */
    llms_event_fn event_fn;       /* NULL = queue events for llms_scheduler_poll */
    void *event_user;
    llms_cache *cache;            /* prefix cache to use; NULL = none */
    uint32_t aging_ms;            /* a request gains one priority level per aging_ms
                                     since submission, up to the highest priority
                                     waiting or running (so it is never starved, and
                                     age never outranks the fair share between
                                     tenants of equal priority); default 5000 */
} llms_scheduler_params;

/* Threads: any. Since: 0.2. */
LLMS_API void llms_scheduler_params_init(llms_scheduler_params *params);

/* Create a scheduler for `model` (NULL params = defaults).
 * Threads: any. Since: 0.2. */
LLMS_API llms_status llms_scheduler_create(llms_model *model, const llms_scheduler_params *params,
                                           llms_scheduler **out);

/* Stop the worker thread, drop every request without further events, and
 * free the scheduler. NULL is a no-op. Threads: one thread, no other call
 * on it in progress (and not from the event callback). Since: 0.2. */
LLMS_API void llms_scheduler_destroy(llms_scheduler *sched);

/* Request flags. */
enum {
    LLMS_REQUEST_ADD_BOS = 1u << 0,       /* as LLMS_TOKENIZE_ADD_BOS */
    LLMS_REQUEST_PARSE_SPECIAL = 1u << 1, /* as LLMS_TOKENIZE_PARSE_SPECIAL */
    LLMS_REQUEST_MODEL_DEFAULTS = 1u << 2 /* as LLMS_TOKENIZE_MODEL_DEFAULTS */
};

typedef struct llms_request_params {
    uint32_t struct_size;
    uint32_t flags;               /* LLMS_REQUEST_* (tokenization of `prompt`) */
    const char *prompt;           /* UTF-8 text, tokenized at submit; may be NULL */
    size_t prompt_len;
    const int32_t *tokens;        /* tokens after the text; may be NULL */
    size_t n_tokens;
    const llms_sampling_params *sampling; /* copied; NULL = defaults */
    const char *tenant;           /* registered with llms_scheduler_set_tenant; NULL = default */
    int32_t priority;             /* higher runs first; default 0 */
    uint32_t deadline_ms;         /* from submission; 0 = none */
    uint64_t user_tag;            /* returned in every event */
} llms_request_params;

/* Threads: any. Since: 0.2. */
LLMS_API void llms_request_params_init(llms_request_params *params);

/* Queue a request; writes its id (never 0). Returns at once:
 * LLMS_ERR_BUSY when the queue is full, LLMS_ERR_RATE_LIMITED when the
 * tenant's token bucket is empty, LLMS_ERR_PROMPT_TOO_LONG when the prompt
 * exceeds the tenant's limit or the context, LLMS_ERR_NOT_FOUND for an
 * unregistered tenant. Bad sampling parameters fail here too. A request
 * whose submit failed gets no events; every accepted one gets exactly one
 * terminal event. Each queued request holds its session's buffers (context
 * tokens, two logit rows, sampler scratch).
 * Threads: any. Since: 0.2. */
LLMS_API llms_status llms_scheduler_submit(llms_scheduler *sched, const llms_request_params *req,
                                           uint64_t *id);

/* Cancel a request: its terminal event (FINISHED, LLMS_FINISH_CANCELLED) and
 * the release of its memory come with the next step. LLMS_ERR_NOT_FOUND if
 * it already ended. Threads: any. Since: 0.2. */
LLMS_API llms_status llms_scheduler_cancel(llms_scheduler *sched, uint64_t id);

/* Run one scheduling step (one batched forward pass) and deliver its events.
 * *n_events (may be NULL) receives the number of events produced. Returns
 * LLMS_OK, LLMS_AGAIN when there was nothing to do, or LLMS_ERR_STATE with
 * LLMS_SCHEDULER_OWN_THREAD. Threads: any; steps are serialised. Since: 0.2. */
LLMS_API llms_status llms_scheduler_step(llms_scheduler *sched, int32_t *n_events);

/* Take the next queued event: LLMS_OK with *ev filled, or LLMS_AGAIN if none
 * arrived within timeout_ms (0 = do not wait, -1 = wait forever). If the
 * text does not fit in ev->text_buf (with its NUL): LLMS_ERR_BUFFER_TOO_SMALL,
 * ev->text_len = the bytes needed without the NUL, and the event stays
 * queued (an event without text needs no buffer).
 * Threads: any. Since: 0.2. */
LLMS_API llms_status llms_scheduler_poll(llms_scheduler *sched, llms_event *ev, int32_t timeout_ms);

typedef struct llms_tenant_params {
    uint32_t struct_size;
    const char *name;             /* copied; "" is the default tenant */
    uint32_t max_concurrent;      /* requests running at once; 0 = no limit */
    uint32_t tokens_per_minute;   /* prompt + generated tokens (token bucket); 0 = no limit */
    uint32_t max_prompt_tokens;   /* 0 = no limit */
    uint32_t max_output_tokens;   /* caps max_tokens; 0 = no limit */
    uint32_t weight;              /* share against the other tenants with work, among
                                     requests of equal (aged) priority: of each step's
                                     prompt-token budget (after the decode tokens, which
                                     count against it; service is measured in tokens
                                     computed, prompt and generated, and idle time
                                     earns no credit), and of the max_running slots;
                                     default 1 (0 = 1) */
    const char *sharing_group;    /* prefix-cache group; NULL = the tenant's own */
} llms_tenant_params;

/* Threads: any. Since: 0.2. */
LLMS_API void llms_tenant_params_init(llms_tenant_params *params);

/* Register or update a tenant. Threads: any. Since: 0.2. */
LLMS_API llms_status llms_scheduler_set_tenant(llms_scheduler *sched, const llms_tenant_params *params);

/* A snapshot of the scheduler's metrics (histograms as count and sum). */
typedef struct llms_scheduler_stats {
    uint32_t struct_size;
    uint64_t requests_submitted;
    uint64_t requests_finished;   /* FINISHED with reason EOG, STOP, LENGTH or CONTEXT_FULL */
    uint64_t requests_cancelled;
    uint64_t requests_timed_out;
    uint64_t requests_rejected;   /* submit refused (BUSY, RATE_LIMITED, too long) or REJECTED */
    uint64_t requests_failed;
    uint64_t prompt_tokens;
    uint64_t cached_tokens;
    uint64_t generated_tokens;
    uint64_t preemptions;
    uint64_t steps;
    uint32_t queue_depth;
    uint32_t running;
    uint32_t last_batch_tokens;
    uint32_t kv_blocks_used;      /* blocks alive in the model's pool */
    uint32_t kv_blocks_free;      /* under the budget (0 without a budget) */
    uint64_t ttft_count;          /* time to first token */
    double ttft_sum_s;
    uint64_t e2e_count;           /* end-to-end latency */
    double e2e_sum_s;
} llms_scheduler_stats;

/* Threads: any. Since: 0.2. */
LLMS_API void llms_scheduler_stats_init(llms_scheduler_stats *stats);

/* Fill `stats` (set stats->struct_size first). Threads: any. Since: 0.2. */
LLMS_API llms_status llms_scheduler_get_stats(llms_scheduler *sched, llms_scheduler_stats *stats);

/* All metrics (counters, gauges, histograms of queue time, time to first
 * token, time between tokens, end-to-end latency and batch size, per tenant
 * where it makes sense) in the Prometheus text exposition format, NUL-
 * terminated. LLMS_ERR_BUFFER_TOO_SMALL with *len = needed (without the NUL)
 * if `cap` is too small. Threads: any. Since: 0.2. */
LLMS_API llms_status llms_scheduler_metrics_prometheus(llms_scheduler *sched, char *buf, size_t cap,
                                                       size_t *len);

/* ------------------------------------------------------------------------ */
/* Compute devices (Vulkan)                                                  */
/* ------------------------------------------------------------------------ */

/* Device types (llms_device_info.type). */
enum {
    LLMS_DEVICE_OTHER = 0,
    LLMS_DEVICE_DISCRETE = 1,    /* a discrete GPU */
    LLMS_DEVICE_INTEGRATED = 2,  /* a GPU sharing the host's memory */
    LLMS_DEVICE_VIRTUAL = 3,     /* a virtualised GPU */
    LLMS_DEVICE_CPU = 4          /* a CPU driver (lavapipe): functional, not fast */
};

/* Device features (llms_device_info.features, a bit set). */
enum {
    LLMS_DEVICE_FEATURE_FP16 = 1u << 0,            /* float16 arithmetic in shaders */
    LLMS_DEVICE_FEATURE_INT8 = 1u << 1,            /* int8 arithmetic in shaders */
    LLMS_DEVICE_FEATURE_STORAGE_16BIT = 1u << 2,   /* 16-bit storage buffers */
    LLMS_DEVICE_FEATURE_STORAGE_8BIT = 1u << 3,    /* 8-bit storage buffers */
    LLMS_DEVICE_FEATURE_SUBGROUP_ARITH = 1u << 4,  /* subgroup arithmetic in compute */
    /* cooperative matrices (VK_NV_cooperative_matrix, 16x16x16 f16 with f32
     * sums) that the prefill matmul can use; whether a context uses them is
     * decided by a self-check at context creation (see its log). Since: 0.2. */
    LLMS_DEVICE_FEATURE_COOPMAT = 1u << 5
};

/* One Vulkan device (an output struct: set struct_size, or call
 * llms_device_info_init, before llms_device_get_info). */
typedef struct llms_device_info {
    uint32_t struct_size;
    int32_t type;                /* LLMS_DEVICE_* */
    char name[256];              /* NUL-terminated */
    uint32_t vendor_id, device_id;
    uint32_t api_version;        /* VK_MAKE_API_VERSION encoding */
    uint32_t subgroup_size;
    uint64_t memory_bytes;       /* size of the device-local memory heaps */
    uint32_t features;           /* LLMS_DEVICE_FEATURE_* */
    uint32_t max_workgroup_size; /* invocations per workgroup */
} llms_device_info;

/* Threads: any. Since: 0.2. */
LLMS_API void llms_device_info_init(llms_device_info *info);

/* Number of Vulkan 1.2 devices; their indices are 0..count-1 and are what
 * llms_context_params.device_index takes. *count is 0 on failure:
 * LLMS_ERR_BACKEND when there is no Vulkan loader or instance (detail in
 * llms_errmsg()). Threads: any. Since: 0.2. */
LLMS_API llms_status llms_device_count(int32_t *count);

/* Describes device `index`. LLMS_ERR_NOT_FOUND for an index out of range,
 * LLMS_ERR_BACKEND as for llms_device_count. Threads: any. Since: 0.2. */
LLMS_API llms_status llms_device_get_info(int32_t index, llms_device_info *info);

#ifdef __cplusplus
}
#endif

#endif /* LLMSERVE_H */
