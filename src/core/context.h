/*
 * The runtime context: allocator, worker-thread count, backend choice and
 * the log sink. Everything else is created under a context.
 */
#ifndef LLMS_CORE_CONTEXT_H
#define LLMS_CORE_CONTEXT_H

#include <pthread.h>

#include "llmserve.h"
#include "alloc.h"
#include "threadpool.h"

struct llms_context {
    lalloc alloc;
    llms_context_params params;   /* as merged with the defaults */
    int32_t backend;              /* the backend actually in use */
    int32_t n_threads;
    pthread_mutex_t log_lock;     /* the log callback is never called concurrently */
    threadpool *pool;             /* n_threads - 1 workers plus the calling thread */
    struct vk_dev *vk;            /* the Vulkan device when backend == VULKAN, else NULL */
};

/* Log a message through the context's callback (no-op if silent or above
 * the level). Never pass prompt/output text unless ctx_log_content(ctx). */
void ctx_log(llms_context *ctx, int32_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int ctx_log_content(const llms_context *ctx);

#endif
