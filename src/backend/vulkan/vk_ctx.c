#include "vk_ctx.h"

#include "vk.h"
#include "../../core/context.h"
#include "../../core/error.h"

int vk_forward_ready(void) { return 0; }

llms_status vk_ctx_open(llms_context *ctx) {
    const int explicit_req = ctx->params.backend == LLMS_BACKEND_VULKAN;
    ctx->backend = LLMS_BACKEND_CPU;
    ctx->vk = NULL;
    if (!explicit_req && (ctx->params.backend != LLMS_BACKEND_AUTO || !vk_forward_ready())) return LLMS_OK;
    vk_inst *vi;
    llms_status st = vk_inst_create(&ctx->alloc, &vi);
    if (st != LLMS_OK) {
        if (explicit_req) return st;
        err_clear();
        return LLMS_OK;
    }
    int32_t idx = ctx->params.device_index;
    if (idx < 0) {
        /* AUTO wants a real GPU; an explicit request also takes a CPU
         * driver such as lavapipe. */
        idx = vk_inst_pick(vi, explicit_req);
        if (idx < 0) {
            uint32_t n = vi->n_phys;
            vk_inst_destroy(vi);
            if (!explicit_req) return LLMS_OK;
            return err_set(LLMS_ERR_BACKEND, "no Vulkan 1.2 device (%u found)", n);
        }
    } else if ((uint32_t)idx >= vi->n_phys) {
        uint32_t n = vi->n_phys;
        vk_inst_destroy(vi);
        return err_set(LLMS_ERR_NOT_FOUND, "device_index %d out of range (%u Vulkan devices)", (int)idx, n);
    }
    vk_dev *d;
    st = vk_dev_create(vi, (uint32_t)idx, ctx->params.device_memory_budget, &d);  /* owns vi now */
    if (st != LLMS_OK) {
        if (explicit_req) return st;
        err_clear();
        return LLMS_OK;
    }
    ctx->vk = d;
    ctx->backend = LLMS_BACKEND_VULKAN;
    ctx_log(ctx, LLMS_LOG_INFO, "Vulkan device %d: %s", (int)idx, d->props.deviceName);
    return LLMS_OK;
}

void vk_ctx_close(struct vk_dev *d) { vk_dev_destroy(d); }
