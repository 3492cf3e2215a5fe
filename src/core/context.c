#include "context.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "error.h"
#include "params.h"
#include "../backend/vulkan/vk_ctx.h"

/* From OpenBLAS (cblas.h declares it too, but only this one is needed). */
void openblas_set_num_threads(int num_threads);

LLMS_API void llms_context_params_init(llms_context_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->backend = LLMS_BACKEND_AUTO;
    p->device_index = -1;
    p->n_threads = 0;
    p->log_level = LLMS_LOG_WARN;
}

static int online_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (n > 256 ? 256 : (int)n);
}

LLMS_API llms_status llms_context_create(const llms_context_params *params, llms_context **out) {
    if (!out) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_context_create: out is NULL");
    *out = NULL;
    llms_context_params p;
    llms_context_params_init(&p);
    if (!params_merge(&p, sizeof p, params))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_context_params: struct_size too small");
    if (p.backend < LLMS_BACKEND_AUTO || p.backend > LLMS_BACKEND_VULKAN)
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "unknown backend %d", (int)p.backend);
    if (p.n_threads < 0 || p.n_threads > 1024)
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "n_threads %d out of range", (int)p.n_threads);

    lalloc a = lalloc_libc;
    if (p.allocator) {
        const llms_allocator *h = p.allocator;
        if (h->struct_size < sizeof *h || !h->malloc_fn || !h->realloc_fn || !h->free_fn)
            return err_set(LLMS_ERR_INVALID_ARGUMENT,
                           "allocator: struct_size too small or a function is NULL");
        a.user = h->user;
        a.malloc_fn = h->malloc_fn;
        a.realloc_fn = h->realloc_fn;
        a.free_fn = h->free_fn;
    }
    llms_context *ctx = xcalloc(&a, 1, sizeof *ctx);
    if (!ctx) return ERR_OOM();
    ctx->alloc = a;
    ctx->params = p;
    ctx->params.allocator = NULL;  /* the host's struct need not outlive this call */
    ctx->n_threads = p.n_threads ? p.n_threads : online_cores();
    ctx->backend = LLMS_BACKEND_CPU;
    if (pthread_mutex_init(&ctx->log_lock, NULL) != 0) {
        xfree(&a, ctx);
        return err_set(LLMS_ERR_INTERNAL, "pthread_mutex_init failed");
    }
    /* An explicit Vulkan request that cannot be met fails here with the
     * reason; AUTO falls back to the CPU (see vk_ctx_open). */
    llms_status st = vk_ctx_open(ctx);
    if (st != LLMS_OK) {
        pthread_mutex_destroy(&ctx->log_lock);
        xfree(&a, ctx);
        return st;
    }
    st = pool_create(&ctx->alloc, ctx->n_threads, &ctx->pool);
    if (st != LLMS_OK) {
        vk_ctx_close(ctx->vk);
        pthread_mutex_destroy(&ctx->log_lock);
        xfree(&a, ctx);
        return st;
    }
    /* OpenBLAS runs on its own threads while ours sleep between regions;
     * cap it at the same count so the two never oversubscribe the cores. */
    openblas_set_num_threads(ctx->n_threads);
    *out = ctx;
    return LLMS_OK;
}

LLMS_API void llms_context_destroy(llms_context *ctx) {
    if (!ctx) return;
    pool_destroy(ctx->pool);
    vk_ctx_close(ctx->vk);
    pthread_mutex_destroy(&ctx->log_lock);
    lalloc a = ctx->alloc;
    xfree(&a, ctx);
}

LLMS_API int32_t llms_context_backend(const llms_context *ctx) { return ctx ? ctx->backend : 0; }
LLMS_API int32_t llms_context_n_threads(const llms_context *ctx) { return ctx ? ctx->n_threads : 0; }

int ctx_log_content(const llms_context *ctx) {
    return ctx && (ctx->params.flags & LLMS_CONTEXT_LOG_CONTENT);
}

void ctx_log(llms_context *ctx, int32_t level, const char *fmt, ...) {
    if (!ctx || !ctx->params.log_fn || level > ctx->params.log_level) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&ctx->log_lock);
    ctx->params.log_fn(ctx->params.log_user, level, buf);
    pthread_mutex_unlock(&ctx->log_lock);
}
