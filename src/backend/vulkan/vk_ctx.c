#include "vk_ctx.h"

#include "vk.h"
#include "../../core/context.h"
#include "../../core/error.h"

/* The forward pass runs wholly on the device (forward.c), so AUTO may
 * choose a GPU; see vk_select for which. */
int vk_forward_ready(void) { return 1; }

/* Explicit device_index or VULKAN: the reason for an unusable device. */
static llms_status why_unusable(vk_inst *vi, int32_t idx) {
    if (idx >= 0) {
        vk_dev_desc dd;
        vk_inst_desc(vi, (uint32_t)idx, &dd);
        llms_device_info info;
        llms_device_info_init(&info);
        vk_inst_describe(vi, (uint32_t)idx, &info);
        return err_set(LLMS_ERR_UNSUPPORTED, "Vulkan device %d '%s' lacks %s, which the shaders need", (int)idx,
                       info.name, vk_req_name(dd.missing & VK_REQ_ALL));
    }
    /* Name what the first device lacks: with one device (the usual case)
     * that is the whole story. */
    for (uint32_t i = 0; i < vi->n_phys; i++) {
        vk_dev_desc dd;
        vk_inst_desc(vi, i, &dd);
        if (dd.missing & VK_REQ_ALL) return why_unusable(vi, (int32_t)i);
    }
    return err_set(LLMS_ERR_BACKEND, "no Vulkan 1.2 device (%u found)", vi->n_phys);
}

llms_status vk_ctx_open(llms_context *ctx) {
    const int explicit_req = ctx->params.backend == LLMS_BACKEND_VULKAN;
    ctx->backend = LLMS_BACKEND_CPU;
    ctx->vk = NULL;
    if (ctx->params.backend == LLMS_BACKEND_CPU) return LLMS_OK;
    int32_t idx = ctx->params.device_index;
    /* AUTO's answer is cached per process: without a GPU (the common case
     * in tests and on servers without one) a context costs no instance. */
    if (!explicit_req && idx < 0 && (!vk_forward_ready() || vk_auto_device() < 0)) return LLMS_OK;
    vk_inst *vi;
    llms_status st = vk_inst_create(&ctx->alloc, &vi);
    if (st != LLMS_OK) goto fail;
    if (idx < 0) {
        idx = vk_inst_pick(vi, explicit_req);
        if (idx < 0) {
            st = why_unusable(vi, -1);
            vk_inst_destroy(vi);
            goto fail;
        }
    } else if ((uint32_t)idx >= vi->n_phys) {
        uint32_t n = vi->n_phys;
        vk_inst_destroy(vi);
        st = err_set(LLMS_ERR_NOT_FOUND, "device_index %d out of range (%u Vulkan devices)", (int)idx, n);
        goto fail;
    }
    vk_dev *d;
    st = vk_dev_create(vi, (uint32_t)idx, ctx->params.device_memory_budget, &d);  /* owns vi now */
    if (st != LLMS_OK) goto fail;
    ctx->vk = d;
    ctx->backend = LLMS_BACKEND_VULKAN;
    ctx_log(ctx, LLMS_LOG_INFO, "Vulkan device %d: %s%s", (int)idx, d->props.deviceName,
            d->subgroup_arith ? "" : " (no subgroup arithmetic: portable matvec)");
    /* A failed self-check is worth a warning: the device claims more than
     * it delivers (a driver bug, or a shader bug CI could not see). */
    ctx_log(ctx, d->coopmat_failed ? LLMS_LOG_WARN : LLMS_LOG_INFO, "Vulkan device %d: %s", (int)idx,
            d->coopmat_note);
    return LLMS_OK;
fail:
    /* The host's allocator failing is the host's problem on any backend
     * (and what its fail-the-N-th-allocation tests expect to see). */
    if (explicit_req || st == LLMS_ERR_NO_MEMORY) return st;
    /* AUTO: whatever else went wrong, the CPU backend serves; the host
     * hears why through the log. */
    ctx_log(ctx, LLMS_LOG_WARN, "Vulkan unavailable, using the CPU backend: %s", err_message());
    err_clear();
    return LLMS_OK;
}

void vk_ctx_close(struct vk_dev *d) { vk_dev_destroy(d); }
