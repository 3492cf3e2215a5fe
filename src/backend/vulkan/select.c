/*
 * Device selection: what the shaders require of a device, the policy that
 * picks one (a pure function, so tests can feed it made-up device lists),
 * AUTO's per-process choice, and the test hooks that let CI (lavapipe only)
 * run the GPU branches of the policy.
 */
#include <pthread.h>
#include <string.h>

#include "vk.h"
#include "../../core/error.h"

/* ---- test hooks ---------------------------------------------------------- */

static pthread_mutex_t g_sel_lock = PTHREAD_MUTEX_INITIALIZER;
static int32_t g_force_type = -1;
static uint32_t g_mask;
static int g_fail_create;
static int g_auto_done;
static int32_t g_auto_idx = -1;

void vk_debug_select(int32_t force_type, uint32_t mask, int fail_create) {
    pthread_mutex_lock(&g_sel_lock);
    g_force_type = force_type;
    g_mask = mask;
    g_fail_create = fail_create;
    g_auto_done = 0;
    pthread_mutex_unlock(&g_sel_lock);
}

void vk_debug_selection(int32_t *force_type, uint32_t *mask, int *fail_create) {
    pthread_mutex_lock(&g_sel_lock);
    if (force_type) *force_type = g_force_type;
    if (mask) *mask = g_mask;
    if (fail_create) *fail_create = g_fail_create;
    pthread_mutex_unlock(&g_sel_lock);
}

/* ---- requirements -------------------------------------------------------- */

const char *vk_req_name(uint32_t missing) {
    if (missing & VK_REQ_API_1_2) return "Vulkan 1.2";
    if (missing & VK_REQ_COMPUTE_QUEUE) return "a compute queue";
    if (missing & VK_REQ_WORKGROUP) return "compute workgroups of 256 invocations (16x16)";
    if (missing & VK_REQ_SHARED_MEMORY) return "4 KiB of compute shared memory";
    if (missing & VK_OPT_SUBGROUP_ARITH) return "subgroup arithmetic (optional)";
    if (missing & VK_OPT_COOPMAT) return "cooperative matrices (optional)";
    return "";
}

static int has_device_ext(vk_inst *vi, VkPhysicalDevice pd, const char *name) {
    uint32_t n = 0;
    if (vi->vkEnumerateDeviceExtensionProperties(pd, NULL, &n, NULL) != VK_SUCCESS || n == 0) return 0;
    VkExtensionProperties *ep = xcalloc(vi->a, n, sizeof *ep);
    if (!ep) return 0;   /* out of memory: taken as absent (the portable path) */
    int found = 0;
    if (vi->vkEnumerateDeviceExtensionProperties(pd, NULL, &n, ep) >= 0)
        for (uint32_t i = 0; i < n && !found; i++) found = !strcmp(ep[i].extensionName, name);
    xfree(vi->a, ep);
    return found;
}

/* The NV extension rather than the KHR one: Debian 12's glslang (12.0.0)
 * compiles GL_NV_cooperative_matrix only, and NVIDIA's drivers expose it.
 * The checks follow what matmul_coopmat.comp's SPIR-V declares. */
const char *vk_coopmat_lack(vk_inst *vi, VkPhysicalDevice pd) {
    VkPhysicalDeviceSubgroupProperties sg = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sg};
    vi->vkGetPhysicalDeviceProperties2(pd, &p2);
    if (p2.properties.apiVersion < VK_API_VERSION_1_2) return "Vulkan 1.2";
    if (!has_device_ext(vi, pd, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME))
        return "no " VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME;
    if (!vi->coopmat_props) return "no vkGetPhysicalDeviceCooperativeMatrixPropertiesNV";
    /* Only queried once the extension is known: the structures belong to it. */
    VkPhysicalDeviceCooperativeMatrixFeaturesNV cmf = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
    VkPhysicalDeviceVulkan12Features f12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
                                            .pNext = &cmf};
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f12};
    vi->vkGetPhysicalDeviceFeatures2(pd, &f2);
    if (!cmf.cooperativeMatrix) return "the cooperativeMatrix feature is off";
    if (!f12.shaderFloat16) return "no shaderFloat16";
    if (!f12.vulkanMemoryModel) return "no vulkanMemoryModel";
    VkPhysicalDeviceCooperativeMatrixPropertiesNV cmp = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_PROPERTIES_NV};
    VkPhysicalDeviceProperties2 p2c = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &cmp};
    vi->vkGetPhysicalDeviceProperties2(pd, &p2c);
    if (!(cmp.cooperativeMatrixSupportedStages & VK_SHADER_STAGE_COMPUTE_BIT))
        return "no cooperative matrices in compute shaders";
    /* The shader's workgroup is 4 subgroups of 32 (gl_SubgroupID picks the
     * quarter of the tile). */
    if (sg.subgroupSize != 32) return "subgroup size is not 32";
    if (!(sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) ||
        !(sg.supportedOperations & VK_SUBGROUP_FEATURE_BASIC_BIT))
        return "no basic subgroup operations in compute shaders";
    const VkPhysicalDeviceLimits *lim = &p2.properties.limits;
    if (lim->maxComputeSharedMemorySize < VK_COOPMAT_SHARED_BYTES || lim->maxComputeWorkGroupInvocations < 128 ||
        lim->maxComputeWorkGroupSize[0] < 128)
        return "too little shared memory or too small workgroups";
    uint32_t n = 0;
    if (vi->coopmat_props(pd, &n, NULL) != VK_SUCCESS || n == 0) return "no cooperative matrix shapes";
    VkCooperativeMatrixPropertiesNV *cp = xcalloc(vi->a, n, sizeof *cp);
    if (!cp) return "out of memory listing cooperative matrix shapes";
    for (uint32_t i = 0; i < n; i++) cp[i].sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV;
    int found = 0;
    if (vi->coopmat_props(pd, &n, cp) >= 0)
        for (uint32_t i = 0; i < n && !found; i++)
            found = cp[i].MSize == 16 && cp[i].NSize == 16 && cp[i].KSize == 16 &&
                    cp[i].AType == VK_COMPONENT_TYPE_FLOAT16_NV && cp[i].BType == VK_COMPONENT_TYPE_FLOAT16_NV &&
                    cp[i].CType == VK_COMPONENT_TYPE_FLOAT32_NV && cp[i].DType == VK_COMPONENT_TYPE_FLOAT32_NV &&
                    cp[i].scope == VK_SCOPE_SUBGROUP_NV;
    xfree(vi->a, cp);
    return found ? NULL : "no 16x16x16 f16*f16+f32 subgroup shape";
}

void vk_inst_desc(vk_inst *vi, uint32_t index, vk_dev_desc *out) {
    VkPhysicalDevice pd = vi->phys[index];
    VkPhysicalDeviceSubgroupProperties sg = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sg};
    vi->vkGetPhysicalDeviceProperties2(pd, &p2);
    const VkPhysicalDeviceLimits *lim = &p2.properties.limits;
    memset(out, 0, sizeof *out);
    out->type = vk_device_type(p2.properties.deviceType);
    out->api_version = p2.properties.apiVersion;
    if (out->api_version < VK_API_VERSION_1_2) out->missing |= VK_REQ_API_1_2;
    uint32_t nq = 0;
    vi->vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, NULL);
    VkQueueFamilyProperties qf[16];
    if (nq > 16) nq = 16;
    vi->vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, qf);
    int compute = 0;
    for (uint32_t i = 0; i < nq; i++) compute |= (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) != 0;
    if (!compute) out->missing |= VK_REQ_COMPUTE_QUEUE;
    /* Vulkan's minimum is 128 invocations; matmul.comp uses 256. */
    if (lim->maxComputeWorkGroupInvocations < 256 || lim->maxComputeWorkGroupSize[0] < 64 ||
        lim->maxComputeWorkGroupSize[1] < 16)
        out->missing |= VK_REQ_WORKGROUP;
    if (lim->maxComputeSharedMemorySize < VK_SHARED_BYTES) out->missing |= VK_REQ_SHARED_MEMORY;
    if (!(sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) ||
        !(sg.supportedOperations & VK_SUBGROUP_FEATURE_BASIC_BIT) ||
        !(sg.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT))
        out->missing |= VK_OPT_SUBGROUP_ARITH;
    if (vk_coopmat_lack(vi, pd)) out->missing |= VK_OPT_COOPMAT;
    int32_t force;
    uint32_t mask;
    vk_debug_selection(&force, &mask, NULL);
    if (force >= 0) out->type = force;
    out->missing |= mask;
}

/* ---- policy -------------------------------------------------------------- */

/* Lower is better; -1 = never. A virtual GPU comes after the host's own
 * GPUs (it is a slice of one behind a hypervisor) but before the CPU
 * backend: it still runs on GPU hardware. A CPU driver loses to our own CPU
 * backend (lavapipe runs the same arithmetic through a shader JIT), so
 * only an explicit request takes it. */
static int rank(int32_t type, int explicit_req) {
    switch (type) {
    case LLMS_DEVICE_DISCRETE: return 0;
    case LLMS_DEVICE_INTEGRATED: return 1;
    case LLMS_DEVICE_VIRTUAL: return 2;
    case LLMS_DEVICE_CPU: return explicit_req ? 3 : -1;
    default: return explicit_req ? 4 : -1;
    }
}

int32_t vk_select(const vk_dev_desc *devs, uint32_t n, int explicit_req) {
    int32_t best = -1;
    int best_rank = 0;
    for (uint32_t i = 0; i < n; i++) {
        int r = rank(devs[i].type, explicit_req);
        if (r < 0 || devs[i].api_version < VK_API_VERSION_1_2 || (devs[i].missing & VK_REQ_ALL)) continue;
        if (best < 0 || r < best_rank) {
            best = (int32_t)i;
            best_rank = r;
        }
    }
    return best;
}

/* vk_select over the instance; LLMS_ERR_NO_MEMORY if the list cannot be
 * built (then *idx is -1 but says nothing about the devices). */
static llms_status pick(vk_inst *vi, int explicit_req, int32_t *idx) {
    *idx = -1;
    if (vi->n_phys == 0) return LLMS_OK;
    vk_dev_desc *dd = xcalloc(vi->a, vi->n_phys, sizeof *dd);
    if (!dd) return ERR_OOM();
    for (uint32_t i = 0; i < vi->n_phys; i++) vk_inst_desc(vi, i, &dd[i]);
    *idx = vk_select(dd, vi->n_phys, explicit_req);
    xfree(vi->a, dd);
    return LLMS_OK;
}

int32_t vk_inst_pick(vk_inst *vi, int allow_any) {
    int32_t idx;
    pick(vi, allow_any, &idx);
    return idx;
}

int32_t vk_auto_device(void) {
    pthread_mutex_lock(&g_sel_lock);
    int done = g_auto_done;
    int32_t idx = g_auto_idx;
    pthread_mutex_unlock(&g_sel_lock);
    if (done) return idx;
    /* Probed outside the lock (the hooks take it); two first contexts
     * racing both probe and store the same answer. The answer is the
     * process's, not a context's, so the probe's short-lived allocations
     * go to libc rather than to the first context's allocator (whose
     * fail-the-N-th tests would otherwise see a different count for the
     * first context than for the others). */
    vk_inst *vi;
    llms_status st = vk_inst_create(&lalloc_libc, &vi);
    if (st == LLMS_OK) {
        st = pick(vi, 0, &idx);
        vk_inst_destroy(vi);
    }
    err_clear();   /* no Vulkan is an answer here, not an error */
    /* Out of memory says nothing about the devices: ask again next time. */
    if (st == LLMS_ERR_NO_MEMORY) return -1;
    pthread_mutex_lock(&g_sel_lock);
    g_auto_idx = idx;
    g_auto_done = 1;
    pthread_mutex_unlock(&g_sel_lock);
    return idx;
}
