/*
 * Vulkan runtime: loader, instance, physical-device listing and the public
 * device API, logical device, buffers, pipelines and submission.
 */
#include <dlfcn.h>
#include <link.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk.h"
#include "shaders.h"
#include "../../core/error.h"
#include "../../core/params.h"

/* ---- validation messages --------------------------------------------- */

static atomic_ullong g_val_errors;
static char g_val_last[512];
static pthread_mutex_t g_val_lock = PTHREAD_MUTEX_INITIALIZER;

uint64_t vk_validation_errors(void) { return atomic_load(&g_val_errors); }
const char *vk_validation_last(void) { return g_val_last; }

/* Counts errors instead of printing: the library never prints, the tests
 * read the count and the last message. */
static VKAPI_ATTR VkBool32 VKAPI_CALL on_debug(VkDebugUtilsMessageSeverityFlagBitsEXT sev,
                                              VkDebugUtilsMessageTypeFlagsEXT type,
                                              const VkDebugUtilsMessengerCallbackDataEXT *data,
                                              void *user) {
    (void)type;
    (void)user;
    if (sev & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) {
        atomic_fetch_add(&g_val_errors, 1);
        pthread_mutex_lock(&g_val_lock);
        snprintf(g_val_last, sizeof g_val_last, "%s", data && data->pMessage ? data->pMessage : "?");
        pthread_mutex_unlock(&g_val_lock);
    }
    return VK_FALSE;
}

llms_status vk_status(VkResult r, const char *what) {
    switch (r) {
    case VK_SUCCESS: return LLMS_OK;
    case VK_ERROR_OUT_OF_HOST_MEMORY: return err_set(LLMS_ERR_NO_MEMORY, "%s: out of host memory", what);
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
        return err_set(LLMS_ERR_DEVICE_MEMORY, "%s: out of device memory", what);
    case VK_ERROR_DEVICE_LOST: return err_set(LLMS_ERR_DEVICE_LOST, "%s: device lost", what);
    default: return err_set(LLMS_ERR_BACKEND, "%s failed (VkResult %d)", what, (int)r);
    }
}

/* ---- device faults ------------------------------------------------------ */

static llms_status lost_error(const vk_dev *d) {
    return err_set(LLMS_ERR_DEVICE_LOST,
                   "Vulkan device '%s' was lost (in %s); destroy its models and context and create new ones "
                   "(the CPU backend is unaffected)",
                   d->props.deviceName, d->lost_in ? d->lost_in : "?");
}

/* The status of a call on `d`. Device loss is final (the driver answers
 * every later submission the same way, and some drivers crash instead), so
 * it is remembered and checked before any further use. */
static llms_status dev_status(vk_dev *d, VkResult r, const char *what) {
    if (r != VK_ERROR_DEVICE_LOST) return vk_status(r, what);
    if (!d->lost) {
        d->lost = 1;
        d->lost_in = what;
    }
    return lost_error(d);
}

/* Allocation failures, host memory included: a device allocation that
 * finds no host memory (lavapipe's and integrated GPUs' device memory is
 * host memory) leaves the host the same choices as a full device: a
 * smaller model or batch, a budget, or the CPU backend. */
static llms_status mem_status(vk_dev *d, VkResult r, const char *what, uint64_t size) {
    if (r != VK_ERROR_OUT_OF_DEVICE_MEMORY && r != VK_ERROR_OUT_OF_HOST_MEMORY && r != VK_ERROR_MEMORY_MAP_FAILED)
        return dev_status(d, r, what);
    return err_set(LLMS_ERR_DEVICE_MEMORY, "%s: out of %s memory for %llu bytes (%llu bytes in use on '%s')", what,
                   r == VK_ERROR_OUT_OF_HOST_MEMORY ? "host" : "device", (unsigned long long)size,
                   (unsigned long long)d->used, d->props.deviceName);
}

void vk_debug_inject(vk_dev *d, int fault, uint32_t after) {
    pthread_mutex_lock(&d->lock);
    d->fault = fault;
    d->fault_after = after;
    pthread_mutex_unlock(&d->lock);
}

/* 1 if the armed fault is `kind` and its countdown has run out. */
static int fault_fires(vk_dev *d, int kind) {
    if (d->fault != kind) return 0;
    if (d->fault_after) {
        d->fault_after--;
        return 0;
    }
    return 1;
}

/* ---- instance ---------------------------------------------------------- */

/* Shared objects loaded in the process, by name. */
typedef struct so_list {
    const lalloc *a;
    char **names;
    size_t n, cap;
    int oom;
} so_list;

static int list_so(struct dl_phdr_info *info, size_t size, void *user) {
    (void)size;
    so_list *l = user;
    if (!info->dlpi_name || !info->dlpi_name[0] || l->oom) return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **nn = xrealloc_array(l->a, l->names, cap, sizeof *nn);
        if (!nn) {
            l->oom = 1;
            return 0;
        }
        l->names = nn;
        l->cap = cap;
    }
    if (!(l->names[l->n] = xstrndup(l->a, info->dlpi_name, strlen(info->dlpi_name)))) {
        l->oom = 1;
        return 0;
    }
    l->n++;
    return 0;
}

static void free_so(so_list *l) {
    for (size_t i = 0; i < l->n; i++) xfree(l->a, l->names[i]);
    xfree(l->a, l->names);
}

/* Keeps the drivers (and layers) the loader opened for this instance
 * resident, as the loader itself is (RTLD_NODELETE below): Mesa's drivers
 * keep per-process state in globals set up once, and unloading them with
 * the last instance loses it (LeakSanitizer reports it in every program
 * that merely probed for a GPU), and reloading them per context costs
 * time. Objects new since `before` are pinned; a library another thread
 * loads meanwhile may be pinned too, which only keeps it loaded. */
static void pin_new_objects(const so_list *before) {
    so_list now = {.a = before->a};
    dl_iterate_phdr(list_so, &now);
    for (size_t i = 0; i < now.n; i++) {
        int seen = 0;
        for (size_t k = 0; k < before->n && !seen; k++) seen = !strcmp(now.names[i], before->names[k]);
        /* NOLOAD: only takes a reference to what is loaded; never closed. */
        if (!seen) dlopen(now.names[i], RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    }
    free_so(&now);
}

static int has_layer(vk_inst *vi, const char *name) {
    uint32_t n = 0;
    if (vi->vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0) return 0;
    VkLayerProperties *lp = xcalloc(vi->a, n, sizeof *lp);
    if (!lp) return 0;
    int found = 0;
    if (vi->vkEnumerateInstanceLayerProperties(&n, lp) == VK_SUCCESS)
        for (uint32_t i = 0; i < n; i++) found |= !strcmp(lp[i].layerName, name);
    xfree(vi->a, lp);
    return found;
}

llms_status vk_inst_create(const lalloc *a, vk_inst **out) {
    *out = NULL;
    vk_inst *vi = xcalloc(a, 1, sizeof *vi);
    if (!vi) return ERR_OOM();
    vi->a = a;
    llms_status st = LLMS_OK;
    /* RTLD_NODELETE: the loader stays resident once loaded. Unloading it
     * with the last instance loses state it keeps for the process (seen as
     * a leak under LeakSanitizer), and reloading it per context is slow. */
    vi->lib = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!vi->lib) {
        st = err_set(LLMS_ERR_BACKEND, "no Vulkan loader (libvulkan.so.1) on this system");
        goto fail;
    }
    /* POSIX guarantees a data-to-function pointer round trip via dlsym. */
    *(void **)&vi->gipa = dlsym(vi->lib, "vkGetInstanceProcAddr");
    if (!vi->gipa) {
        st = err_set(LLMS_ERR_BACKEND, "the Vulkan loader lacks vkGetInstanceProcAddr");
        goto fail;
    }
#define LOAD_G(n) vi->n = (PFN_##n)vi->gipa(NULL, #n); if (!vi->n) { st = err_set(LLMS_ERR_BACKEND, "Vulkan loader: no %s", #n); goto fail; }
    VK_GLOBAL_FNS(LOAD_G)
#undef LOAD_G
    const char *val = getenv("LLMS_VK_VALIDATION");
    int want_val = val && val[0] == '1';
    const char *layers[1] = {"VK_LAYER_KHRONOS_validation"};
    const char *exts[1] = {VK_EXT_DEBUG_UTILS_EXTENSION_NAME};
    if (want_val && !has_layer(vi, layers[0])) {
        st = err_set(LLMS_ERR_BACKEND, "LLMS_VK_VALIDATION=1 but %s is not installed", layers[0]);
        goto fail;
    }
    VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
                             .pApplicationName = "libllmserve",
                             .pEngineName = "libllmserve",
                             .apiVersion = VK_API_VERSION_1_2};
    VkDebugUtilsMessengerCreateInfoEXT mci = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = on_debug};
    VkInstanceCreateInfo ici = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
                                .pApplicationInfo = &app,
                                /* chained so instance creation itself is checked too */
                                .pNext = want_val ? &mci : NULL,
                                .enabledLayerCount = want_val ? 1 : 0,
                                .ppEnabledLayerNames = layers,
                                .enabledExtensionCount = want_val ? 1 : 0,
                                .ppEnabledExtensionNames = exts};
    so_list before = {.a = a};
    dl_iterate_phdr(list_so, &before);
    VkResult r = vi->vkCreateInstance(&ici, NULL, &vi->instance);
    /* Pinning is skipped if the list is incomplete (out of memory): that
     * would pin libraries that were already there. */
    if (!before.oom) pin_new_objects(&before);
    free_so(&before);
    if (r != VK_SUCCESS) {
        st = r == VK_ERROR_INCOMPATIBLE_DRIVER
                 ? err_set(LLMS_ERR_BACKEND, "no Vulkan driver (vkCreateInstance: incompatible driver)")
                 : vk_status(r, "vkCreateInstance");
        if (st == LLMS_ERR_DEVICE_MEMORY || st == LLMS_ERR_DEVICE_LOST) st = LLMS_ERR_BACKEND;
        goto fail;
    }
#define LOAD_I(n) vi->n = (PFN_##n)vi->gipa(vi->instance, #n); if (!vi->n) { st = err_set(LLMS_ERR_BACKEND, "Vulkan: no %s", #n); goto fail; }
    VK_INSTANCE_FNS(LOAD_I)
#undef LOAD_I
    /* Optional: present only where a driver has VK_NV_cooperative_matrix. */
    vi->coopmat_props = (PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV)vi->gipa(
        vi->instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV");
    if (want_val) {
        vi->create_messenger = (PFN_vkCreateDebugUtilsMessengerEXT)vi->gipa(vi->instance, "vkCreateDebugUtilsMessengerEXT");
        vi->destroy_messenger = (PFN_vkDestroyDebugUtilsMessengerEXT)vi->gipa(vi->instance, "vkDestroyDebugUtilsMessengerEXT");
        if (!vi->create_messenger || !vi->destroy_messenger ||
            vi->create_messenger(vi->instance, &mci, NULL, &vi->messenger) != VK_SUCCESS) {
            st = err_set(LLMS_ERR_BACKEND, "cannot create the debug-utils messenger");
            goto fail;
        }
        vi->validation = 1;
    }
    uint32_t n = 0;
    if ((r = vi->vkEnumeratePhysicalDevices(vi->instance, &n, NULL)) != VK_SUCCESS) {
        st = err_set(LLMS_ERR_BACKEND, "vkEnumeratePhysicalDevices failed (%d)", (int)r);
        goto fail;
    }
    VkPhysicalDevice *all = n ? xcalloc(a, n, sizeof *all) : NULL;
    if (n && !all) {
        st = ERR_OOM();
        goto fail;
    }
    if (n && vi->vkEnumeratePhysicalDevices(vi->instance, &n, all) < 0) {
        xfree(a, all);
        st = err_set(LLMS_ERR_BACKEND, "vkEnumeratePhysicalDevices failed");
        goto fail;
    }
    /* Only Vulkan 1.2 devices count: the shaders are SPIR-V 1.5. */
    vi->phys = all;
    for (uint32_t i = 0; i < n; i++) {
        VkPhysicalDeviceProperties p;
        vi->vkGetPhysicalDeviceProperties(all[i], &p);
        if (p.apiVersion >= VK_API_VERSION_1_2) all[vi->n_phys++] = all[i];
    }
    *out = vi;
    return LLMS_OK;
fail:
    vk_inst_destroy(vi);
    return st;
}

void vk_inst_destroy(vk_inst *vi) {
    if (!vi) return;
    if (vi->messenger) vi->destroy_messenger(vi->instance, vi->messenger, NULL);
    if (vi->instance) vi->vkDestroyInstance(vi->instance, NULL);
    xfree(vi->a, vi->phys);
    if (vi->lib) dlclose(vi->lib);
    xfree(vi->a, vi);
}

int32_t vk_device_type(VkPhysicalDeviceType t) {
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return LLMS_DEVICE_DISCRETE;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return LLMS_DEVICE_INTEGRATED;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return LLMS_DEVICE_VIRTUAL;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return LLMS_DEVICE_CPU;
    default: return LLMS_DEVICE_OTHER;
    }
}

void vk_inst_describe(vk_inst *vi, uint32_t index, llms_device_info *info) {
    VkPhysicalDevice pd = vi->phys[index];
    VkPhysicalDeviceSubgroupProperties sg = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sg};
    vi->vkGetPhysicalDeviceProperties2(pd, &p2);
    VkPhysicalDeviceVulkan12Features f12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    VkPhysicalDeviceVulkan11Features f11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES, .pNext = &f12};
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f11};
    vi->vkGetPhysicalDeviceFeatures2(pd, &f2);
    VkPhysicalDeviceMemoryProperties mp;
    vi->vkGetPhysicalDeviceMemoryProperties(pd, &mp);

    llms_device_info d;
    memset(&d, 0, sizeof d);
    d.struct_size = sizeof d;
    d.type = vk_device_type(p2.properties.deviceType);
    snprintf(d.name, sizeof d.name, "%s", p2.properties.deviceName);
    d.vendor_id = p2.properties.vendorID;
    d.device_id = p2.properties.deviceID;
    d.api_version = p2.properties.apiVersion;
    d.subgroup_size = sg.subgroupSize;
    for (uint32_t h = 0; h < mp.memoryHeapCount; h++)
        if (mp.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) d.memory_bytes += mp.memoryHeaps[h].size;
    if (f12.shaderFloat16) d.features |= LLMS_DEVICE_FEATURE_FP16;
    if (f12.shaderInt8) d.features |= LLMS_DEVICE_FEATURE_INT8;
    if (f11.storageBuffer16BitAccess) d.features |= LLMS_DEVICE_FEATURE_STORAGE_16BIT;
    if (f12.storageBuffer8BitAccess) d.features |= LLMS_DEVICE_FEATURE_STORAGE_8BIT;
    if ((sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
        (sg.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT))
        d.features |= LLMS_DEVICE_FEATURE_SUBGROUP_ARITH;
    if (!vk_coopmat_lack(vi, pd)) d.features |= LLMS_DEVICE_FEATURE_COOPMAT;
    d.max_workgroup_size = p2.properties.limits.maxComputeWorkGroupInvocations;
    params_emit(info, &d, sizeof d);
}

/* ---- public device listing -------------------------------------------- */

LLMS_API void llms_device_info_init(llms_device_info *info) {
    if (!info) return;
    memset(info, 0, sizeof *info);
    info->struct_size = sizeof *info;
}

LLMS_API llms_status llms_device_count(int32_t *count) {
    if (!count) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_device_count: count is NULL");
    *count = 0;
    vk_inst *vi;
    llms_status st = vk_inst_create(&lalloc_libc, &vi);
    if (st != LLMS_OK) return st;
    *count = (int32_t)vi->n_phys;
    vk_inst_destroy(vi);
    return LLMS_OK;
}

LLMS_API llms_status llms_device_get_info(int32_t index, llms_device_info *info) {
    if (!info || info->struct_size < sizeof(uint32_t))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_device_get_info: info is NULL or struct_size unset");
    vk_inst *vi;
    llms_status st = vk_inst_create(&lalloc_libc, &vi);
    if (st != LLMS_OK) return st;
    if (index < 0 || (uint32_t)index >= vi->n_phys) {
        uint32_t n = vi->n_phys;
        vk_inst_destroy(vi);
        return err_set(LLMS_ERR_NOT_FOUND, "device index %d out of range (%u devices)", (int)index, n);
    }
    vk_inst_describe(vi, (uint32_t)index, info);
    vk_inst_destroy(vi);
    return LLMS_OK;
}

/* ---- logical device ----------------------------------------------------- */

llms_status vk_dev_create(vk_inst *vi, uint32_t index, uint64_t budget, vk_dev **out) {
    *out = NULL;
    if (index >= vi->n_phys) {
        uint32_t n = vi->n_phys;
        vk_inst_destroy(vi);
        return err_set(LLMS_ERR_NOT_FOUND, "Vulkan device %u out of range (%u devices)", index, n);
    }
    vk_dev *d = xcalloc(vi->a, 1, sizeof *d);
    if (!d) {
        vk_inst_destroy(vi);
        return ERR_OOM();
    }
    d->vi = vi;
    d->a = vi->a;
    d->budget = budget;
    d->phys = vi->phys[index];
    /* Test knob: lavapipe's memory is all host-visible, so without it the
     * staging path that discrete GPUs take would never run in CI. */
    const char *nm = getenv("LLMS_VK_NO_HOST_MAP");
    d->no_host_map = nm && nm[0] == '1';
    if (pthread_mutex_init(&d->lock, NULL) != 0) {
        vk_inst_destroy(vi);
        xfree(d->a, d);
        return err_set(LLMS_ERR_INTERNAL, "pthread_mutex_init failed");
    }
    llms_status st = LLMS_OK;
    vi->vkGetPhysicalDeviceProperties(d->phys, &d->props);
    vi->vkGetPhysicalDeviceMemoryProperties(d->phys, &d->mem_props);
    vk_dev_desc desc;
    vk_inst_desc(vi, index, &desc);
    if (desc.missing & VK_REQ_ALL) {
        st = err_set(LLMS_ERR_UNSUPPORTED, "Vulkan device %u '%s' lacks %s, which the shaders need", index,
                     d->props.deviceName, vk_req_name(desc.missing & VK_REQ_ALL));
        goto fail;
    }
    d->subgroup_arith = !(desc.missing & VK_OPT_SUBGROUP_ARITH);
    /* Cooperative matrices: enabled at creation only where they will be
     * tried (the self-check at the end decides whether they are used). */
    int cm_force;
    vk_debug_coopmat_get(&cm_force, NULL);
    const char *cm_lack = (desc.missing & VK_OPT_COOPMAT) ? vk_coopmat_lack(vi, d->phys) : NULL;
    if ((desc.missing & VK_OPT_COOPMAT) && !cm_lack) cm_lack = "masked by a test hook";
    const int cm_env_off = vk_env_flag("LLMS_VK_NO_COOPMAT");
    int cm_enable = !cm_lack && !cm_env_off;
    d->coopmat_shader = "matmul_coopmat";
    d->coopmat_tile = 64;
    if (cm_force && cm_lack) {
        /* Test hook: matmul.comp stands in, nothing is enabled. */
        d->coopmat_shader = "matmul";
        d->coopmat_tile = 16;
        cm_lack = NULL;
    }

    uint32_t nq = 0;
    vi->vkGetPhysicalDeviceQueueFamilyProperties(d->phys, &nq, NULL);
    VkQueueFamilyProperties qf[16];
    if (nq > 16) nq = 16;
    vi->vkGetPhysicalDeviceQueueFamilyProperties(d->phys, &nq, qf);
    uint32_t fam = UINT32_MAX;
    for (uint32_t i = 0; i < nq && fam == UINT32_MAX; i++)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) fam = i;
    if (fam == UINT32_MAX) {
        st = err_set(LLMS_ERR_UNSUPPORTED, "Vulkan device '%s' has no compute queue", d->props.deviceName);
        goto fail;
    }
    d->queue_family = fam;
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                   .queueFamilyIndex = fam,
                                   .queueCount = 1,
                                   .pQueuePriorities = &prio};
    VkDeviceCreateInfo dci = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                              .queueCreateInfoCount = 1,
                              .pQueueCreateInfos = &qci};
    VkPhysicalDeviceCooperativeMatrixFeaturesNV cmf = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV, .cooperativeMatrix = VK_TRUE};
    VkPhysicalDeviceVulkan12Features f12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
                                            .pNext = &cmf,
                                            .shaderFloat16 = VK_TRUE,
                                            .vulkanMemoryModel = VK_TRUE};
    const char *cm_ext[1] = {VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME};
    if (cm_enable) {
        dci.pNext = &f12;
        dci.enabledExtensionCount = 1;
        dci.ppEnabledExtensionNames = cm_ext;
    }
    int fail_create;
    vk_debug_selection(NULL, NULL, &fail_create);
    VkResult r = fail_create ? VK_ERROR_INITIALIZATION_FAILED : vi->vkCreateDevice(d->phys, &dci, NULL, &d->dev);
    if (r != VK_SUCCESS && r != VK_ERROR_DEVICE_LOST && cm_enable && !fail_create) {
        /* A driver that lists the features but refuses them: the portable
         * path on a plain device. */
        d->dev = VK_NULL_HANDLE;
        cm_enable = 0;
        cm_lack = "vkCreateDevice refused VK_NV_cooperative_matrix";
        dci.pNext = NULL;
        dci.enabledExtensionCount = 0;
        dci.ppEnabledExtensionNames = NULL;
        r = vi->vkCreateDevice(d->phys, &dci, NULL, &d->dev);
    }
    if (r != VK_SUCCESS) {
        st = dev_status(d, r, "vkCreateDevice");
        d->dev = VK_NULL_HANDLE;
        goto fail;
    }
#define LOAD_D(n) d->n = (PFN_##n)vi->vkGetDeviceProcAddr(d->dev, #n); if (!d->n) { st = err_set(LLMS_ERR_BACKEND, "Vulkan: no %s", #n); goto fail; }
    VK_DEVICE_FNS(LOAD_D)
#undef LOAD_D
    d->vkGetDeviceQueue(d->dev, fam, 0, &d->queue);
    VkCommandPoolCreateInfo cpi = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                   .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                   .queueFamilyIndex = fam};
    if ((r = d->vkCreateCommandPool(d->dev, &cpi, NULL, &d->cmd_pool)) != VK_SUCCESS) {
        st = vk_status(r, "vkCreateCommandPool");
        goto fail;
    }
    VkCommandBufferAllocateInfo cai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                       .commandPool = d->cmd_pool,
                                       .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                       .commandBufferCount = 1};
    if ((r = d->vkAllocateCommandBuffers(d->dev, &cai, &d->cmd)) != VK_SUCCESS) {
        st = vk_status(r, "vkAllocateCommandBuffers");
        goto fail;
    }
    VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    if ((r = d->vkCreateFence(d->dev, &fci, NULL, &d->fence)) != VK_SUCCESS) {
        st = vk_status(r, "vkCreateFence");
        goto fail;
    }
    /* One pool sized for a whole forward pass (a few dispatches per layer);
     * a recording that runs out is split by vk_dispatch. */
    enum { SETS = 1024 };
    VkDescriptorPoolSize ps = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, SETS * VK_MAX_BIND};
    VkDescriptorPoolCreateInfo dpi = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                                      .maxSets = SETS,
                                      .poolSizeCount = 1,
                                      .pPoolSizes = &ps};
    if ((r = d->vkCreateDescriptorPool(d->dev, &dpi, NULL, &d->desc_pool)) != VK_SUCCESS) {
        st = vk_status(r, "vkCreateDescriptorPool");
        goto fail;
    }
    d->desc_sets_left = SETS;
    /* Last, once the device can run shaders: the self-check. */
    if ((st = vk_coopmat_setup(d, cm_lack, cm_env_off)) != LLMS_OK) goto fail;
    *out = d;
    return LLMS_OK;
fail:
    vk_dev_destroy(d);
    return st;
}

void vk_dev_destroy(vk_dev *d) {
    if (!d) return;
    if (d->dev) {
        /* Returns promptly on a lost device too (the spec requires it), and
         * retires whatever the loss left pending before it is destroyed. */
        d->vkDeviceWaitIdle(d->dev);
        for (uint32_t i = 0; i < d->n_pipes; i++) {
            vk_pipe *p = &d->pipes[i];
            if (p->pipe) d->vkDestroyPipeline(d->dev, p->pipe, NULL);
            if (p->layout) d->vkDestroyPipelineLayout(d->dev, p->layout, NULL);
            if (p->dsl) d->vkDestroyDescriptorSetLayout(d->dev, p->dsl, NULL);
        }
        if (d->desc_pool) d->vkDestroyDescriptorPool(d->dev, d->desc_pool, NULL);
        if (d->fence) d->vkDestroyFence(d->dev, d->fence, NULL);
        if (d->cmd_pool) d->vkDestroyCommandPool(d->dev, d->cmd_pool, NULL);
        d->vkDestroyDevice(d->dev, NULL);
    }
    pthread_mutex_destroy(&d->lock);
    vk_inst *vi = d->vi;
    xfree(d->a, d);
    vk_inst_destroy(vi);
}

/* ---- buffers ------------------------------------------------------------- */

static int find_mem(const vk_dev *d, uint32_t bits, VkMemoryPropertyFlags want) {
    for (uint32_t i = 0; i < d->mem_props.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (d->mem_props.memoryTypes[i].propertyFlags & want) == want) return (int)i;
    return -1;
}

llms_status vk_buf_create(vk_dev *d, uint64_t size, int host_visible, vk_buf *out) {
    memset(out, 0, sizeof *out);
    if (size == 0) size = 4;
    size = (size + 3) & ~(uint64_t)3;   /* shaders read whole 32-bit words */
    if (d->budget && d->used + size > d->budget)
        return err_set(LLMS_ERR_DEVICE_MEMORY, "device memory budget exceeded (%llu + %llu > %llu bytes)",
                       (unsigned long long)d->used, (unsigned long long)size,
                       (unsigned long long)d->budget);
    if (d->lost) return lost_error(d);
    VkBufferCreateInfo bci = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                              .size = size,
                              .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                       VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                              .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    VkResult r = d->vkCreateBuffer(d->dev, &bci, NULL, &out->buf);
    if (r != VK_SUCCESS) {
        out->buf = VK_NULL_HANDLE;
        return mem_status(d, r, "vkCreateBuffer", size);
    }
    VkMemoryRequirements req;
    d->vkGetBufferMemoryRequirements(d->dev, out->buf, &req);
    int mt = host_visible ? find_mem(d, req.memoryTypeBits,
                                     VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT)
                          : find_mem(d, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    if (mt < 0 && !host_visible) mt = find_mem(d, req.memoryTypeBits, 0);
    llms_status st;
    if (mt < 0) {
        st = err_set(LLMS_ERR_UNSUPPORTED, "no suitable Vulkan memory type");
        goto fail;
    }
    VkMemoryAllocateInfo mai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                                .allocationSize = req.size,
                                .memoryTypeIndex = (uint32_t)mt};
    /* An injected failure replaces the call, as the driver's would. */
    if (fault_fires(d, VK_FAULT_OOM)) r = VK_ERROR_OUT_OF_DEVICE_MEMORY;
    else if (fault_fires(d, VK_FAULT_HOST_OOM)) r = VK_ERROR_OUT_OF_HOST_MEMORY;
    else r = d->vkAllocateMemory(d->dev, &mai, NULL, &out->mem);
    if (r != VK_SUCCESS) {
        out->mem = VK_NULL_HANDLE;
        st = mem_status(d, r, "vkAllocateMemory", req.size);
        goto fail;
    }
    if ((r = d->vkBindBufferMemory(d->dev, out->buf, out->mem, 0)) != VK_SUCCESS) {
        st = mem_status(d, r, "vkBindBufferMemory", req.size);
        goto fail;
    }
    /* Map whatever is host-visible (all of it on lavapipe and on
     * integrated GPUs), so uploads skip the staging copy there. */
    if ((d->mem_props.memoryTypes[mt].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) &&
        (host_visible || !d->no_host_map)) {
        if ((r = d->vkMapMemory(d->dev, out->mem, 0, VK_WHOLE_SIZE, 0, &out->map)) != VK_SUCCESS) {
            st = mem_status(d, r, "vkMapMemory", req.size);
            goto fail;
        }
        if (!(d->mem_props.memoryTypes[mt].propertyFlags & VK_MEMORY_PROPERTY_HOST_COHERENT_BIT))
            out->map = NULL;   /* non-coherent: go through staging, no flushes needed */
    }
    out->size = size;
    d->used += size;
    return LLMS_OK;
fail:
    if (out->mem) d->vkFreeMemory(d->dev, out->mem, NULL);
    d->vkDestroyBuffer(d->dev, out->buf, NULL);
    memset(out, 0, sizeof *out);
    return st;
}

void vk_buf_destroy(vk_dev *d, vk_buf *b) {
    if (!b || !b->buf) return;
    d->vkDestroyBuffer(d->dev, b->buf, NULL);
    d->vkFreeMemory(d->dev, b->mem, NULL);   /* unmaps implicitly */
    d->used -= b->size;
    memset(b, 0, sizeof *b);
}

/* One-off copy between buffers, submitted and waited for. */
static llms_status copy_now(vk_dev *d, vk_buf *src, uint64_t soff, vk_buf *dst, uint64_t doff, uint64_t n) {
    llms_status st = vk_begin(d);
    if (st != LLMS_OK) return st;
    VkBufferCopy c = {soff, doff, n};
    d->vkCmdCopyBuffer(d->cmd, src->buf, dst->buf, 1, &c);
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
                          .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_HOST_READ_BIT};
    d->vkCmdPipelineBarrier(d->cmd, VK_PIPELINE_STAGE_TRANSFER_BIT,
                            VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0,
                            NULL, 0, NULL);
    return vk_submit(d);
}

llms_status vk_buf_write(vk_dev *d, vk_buf *b, uint64_t off, const void *src, uint64_t n) {
    if (off > b->size || n > b->size - off)
        return err_set(LLMS_ERR_INTERNAL, "vk_buf_write out of bounds");
    if (d->lost) return lost_error(d);   /* mapped memory stays valid, but is no longer the device's */
    if (b->map) {
        memcpy((char *)b->map + off, src, n);
        return LLMS_OK;
    }
    /* Staging in chunks bounds the extra host-visible memory for large
     * weight tensors. */
    const uint64_t chunk = 64ull << 20;
    vk_buf s;
    llms_status st = vk_buf_create(d, n < chunk ? n : chunk, 1, &s);
    if (st != LLMS_OK) return st;
    for (uint64_t done = 0; done < n && st == LLMS_OK; done += chunk) {
        uint64_t k = n - done < chunk ? n - done : chunk;
        memcpy(s.map, (const char *)src + done, k);
        st = copy_now(d, &s, 0, b, off + done, k);
    }
    vk_buf_destroy(d, &s);
    return st;
}

llms_status vk_buf_read(vk_dev *d, vk_buf *b, uint64_t off, void *dst, uint64_t n) {
    if (off > b->size || n > b->size - off)
        return err_set(LLMS_ERR_INTERNAL, "vk_buf_read out of bounds");
    if (d->lost) return lost_error(d);   /* the contents are undefined after a loss */
    if (b->map) {
        memcpy(dst, (const char *)b->map + off, n);
        return LLMS_OK;
    }
    vk_buf s;
    llms_status st = vk_buf_create(d, n, 1, &s);
    if (st != LLMS_OK) return st;
    st = copy_now(d, b, off, &s, 0, n);
    if (st == LLMS_OK) memcpy(dst, s.map, n);
    vk_buf_destroy(d, &s);
    return st;
}

/* ---- pipelines ----------------------------------------------------------- */

static const vk_shader_blob *find_blob(const char *name) {
    for (unsigned i = 0; i < vk_shader_blob_count; i++)
        if (!strcmp(vk_shader_blobs[i].name, name)) return &vk_shader_blobs[i];
    return NULL;
}

/* Pipelines are built on first use, one per (shader, type constant). */
static llms_status get_pipe(vk_dev *d, const char *shader, uint32_t spec, uint32_t n_bind, vk_pipe **out) {
    for (uint32_t i = 0; i < d->n_pipes; i++)
        if (!strcmp(d->pipes[i].shader, shader) && d->pipes[i].spec == spec) {
            *out = &d->pipes[i];
            return LLMS_OK;
        }
    if (d->n_pipes == VK_MAX_PIPES) return err_set(LLMS_ERR_INTERNAL, "too many Vulkan pipelines");
    const vk_shader_blob *blob = find_blob(shader);
    if (!blob) return err_set(LLMS_ERR_INTERNAL, "no embedded shader '%s'", shader);
    vk_pipe *p = &d->pipes[d->n_pipes];
    memset(p, 0, sizeof *p);
    VkDescriptorSetLayoutBinding bind[VK_MAX_BIND];
    for (uint32_t i = 0; i < n_bind; i++)
        bind[i] = (VkDescriptorSetLayoutBinding){i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1,
                                                 VK_SHADER_STAGE_COMPUTE_BIT, NULL};
    VkDescriptorSetLayoutCreateInfo dli = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                                           .bindingCount = n_bind,
                                           .pBindings = bind};
    VkResult r;
    llms_status st = LLMS_OK;
    VkShaderModule mod = VK_NULL_HANDLE;
    if ((r = d->vkCreateDescriptorSetLayout(d->dev, &dli, NULL, &p->dsl)) != VK_SUCCESS) {
        st = dev_status(d, r, "vkCreateDescriptorSetLayout");
        goto fail;
    }
    VkPushConstantRange pcr = {VK_SHADER_STAGE_COMPUTE_BIT, 0, VK_PUSH_BYTES};
    VkPipelineLayoutCreateInfo pli = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                      .setLayoutCount = 1,
                                      .pSetLayouts = &p->dsl,
                                      .pushConstantRangeCount = 1,
                                      .pPushConstantRanges = &pcr};
    if ((r = d->vkCreatePipelineLayout(d->dev, &pli, NULL, &p->layout)) != VK_SUCCESS) {
        st = dev_status(d, r, "vkCreatePipelineLayout");
        goto fail;
    }
    VkShaderModuleCreateInfo smi = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                    .codeSize = blob->size,
                                    .pCode = blob->code};
    if ((r = d->vkCreateShaderModule(d->dev, &smi, NULL, &mod)) != VK_SUCCESS) {
        st = dev_status(d, r, "vkCreateShaderModule");
        goto fail;
    }
    VkSpecializationMapEntry me = {0, 0, sizeof(uint32_t)};
    VkSpecializationInfo si = {1, &me, sizeof spec, &spec};
    VkComputePipelineCreateInfo cpi = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                  .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                  .module = mod,
                  .pName = "main",
                  .pSpecializationInfo = &si},
        .layout = p->layout};
    r = d->vkCreateComputePipelines(d->dev, VK_NULL_HANDLE, 1, &cpi, NULL, &p->pipe);
    d->vkDestroyShaderModule(d->dev, mod, NULL);
    if (r != VK_SUCCESS) {
        p->pipe = VK_NULL_HANDLE;
        st = dev_status(d, r, "vkCreateComputePipelines");
        goto fail;
    }
    p->shader = blob->name;  /* static storage, unlike the caller's string */
    p->spec = spec;
    p->n_bind = n_bind;
    d->n_pipes++;
    *out = p;
    return LLMS_OK;
fail:
    if (p->layout) d->vkDestroyPipelineLayout(d->dev, p->layout, NULL);
    if (p->dsl) d->vkDestroyDescriptorSetLayout(d->dev, p->dsl, NULL);
    memset(p, 0, sizeof *p);
    return st;
}

/* ---- recording and submission ---------------------------------------- */

llms_status vk_begin(vk_dev *d) {
    if (d->recording) return err_set(LLMS_ERR_INTERNAL, "vk_begin while recording");
    if (d->lost) return lost_error(d);
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    VkResult r = d->vkBeginCommandBuffer(d->cmd, &bi);
    if (r != VK_SUCCESS) return dev_status(d, r, "vkBeginCommandBuffer");
    d->recording = 1;
    return LLMS_OK;
}

llms_status vk_submit(vk_dev *d) {
    if (!d->recording) return err_set(LLMS_ERR_INTERNAL, "vk_submit without vk_begin");
    d->recording = 0;
    /* Lost while recording (a split submission in vk_dispatch): the
     * command buffer is reclaimed with its pool when the device goes. */
    if (d->lost) return lost_error(d);
    VkResult r = d->vkEndCommandBuffer(d->cmd);
    llms_status st = LLMS_OK;
    if (r != VK_SUCCESS) {
        st = dev_status(d, r, "vkEndCommandBuffer");
    } else {
        VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1,
                           .pCommandBuffers = &d->cmd};
        if (fault_fires(d, VK_FAULT_DEVICE_LOST)) {
            /* Injected: nothing is submitted, so nothing is left pending. */
            d->fault = VK_FAULT_NONE;
            st = dev_status(d, VK_ERROR_DEVICE_LOST, "vkQueueSubmit");
        } else if ((r = d->vkQueueSubmit(d->queue, 1, &si, d->fence)) != VK_SUCCESS) {
            st = dev_status(d, r, "vkQueueSubmit");
        } else if ((r = d->vkWaitForFences(d->dev, 1, &d->fence, VK_TRUE, UINT64_MAX)) != VK_SUCCESS) {
            st = dev_status(d, r, "vkWaitForFences");
        }
        if (d->lost) return st;
        d->vkResetFences(d->dev, 1, &d->fence);
    }
    d->vkResetCommandBuffer(d->cmd, 0);
    d->vkResetDescriptorPool(d->dev, d->desc_pool, 0);
    d->desc_sets_left = 1024;
    return st;
}

llms_status vk_dispatch(vk_dev *d, const char *shader, uint32_t spec, const vk_buf *const *bufs,
                        uint32_t n_bufs, const void *push, uint32_t push_bytes, uint32_t gx,
                        uint32_t gy, uint32_t gz) {
    if (!d->recording) return err_set(LLMS_ERR_INTERNAL, "vk_dispatch outside vk_begin");
    if (d->lost) return lost_error(d);
    if (n_bufs > VK_MAX_BIND || push_bytes > VK_PUSH_BYTES)
        return err_set(LLMS_ERR_INTERNAL, "vk_dispatch: too many bindings or push bytes");
    if (gx == 0 || gy == 0 || gz == 0) return LLMS_OK;
    const VkPhysicalDeviceLimits *lim = &d->props.limits;
    if (gx > lim->maxComputeWorkGroupCount[0] || gy > lim->maxComputeWorkGroupCount[1] ||
        gz > lim->maxComputeWorkGroupCount[2])
        return err_set(LLMS_ERR_UNSUPPORTED, "%s: grid %ux%ux%u exceeds the device's limits", shader, gx, gy, gz);
    /* Bound whole (VK_WHOLE_SIZE), so each buffer must fit the range. */
    for (uint32_t i = 0; i < n_bufs; i++)
        if (bufs[i]->size > lim->maxStorageBufferRange)
            return err_set(LLMS_ERR_UNSUPPORTED, "%s: a %llu-byte buffer exceeds the device's maxStorageBufferRange (%u)",
                           shader, (unsigned long long)bufs[i]->size, lim->maxStorageBufferRange);
    vk_pipe *p = NULL;
    llms_status st = get_pipe(d, shader, spec, n_bufs, &p);
    if (st != LLMS_OK) return st;
    if (d->desc_sets_left == 0) {
        /* Out of descriptor sets: run what is recorded and carry on in a
         * fresh command buffer (results are the same, only slower). */
        if ((st = vk_submit(d)) != LLMS_OK || (st = vk_begin(d)) != LLMS_OK) return st;
    }
    VkDescriptorSetAllocateInfo dai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                       .descriptorPool = d->desc_pool,
                                       .descriptorSetCount = 1,
                                       .pSetLayouts = &p->dsl};
    VkDescriptorSet set;
    VkResult r = d->vkAllocateDescriptorSets(d->dev, &dai, &set);
    if (r != VK_SUCCESS) return dev_status(d, r, "vkAllocateDescriptorSets");
    d->desc_sets_left--;
    VkDescriptorBufferInfo bi[VK_MAX_BIND];
    VkWriteDescriptorSet wr[VK_MAX_BIND];
    for (uint32_t i = 0; i < n_bufs; i++) {
        bi[i] = (VkDescriptorBufferInfo){bufs[i]->buf, 0, VK_WHOLE_SIZE};
        wr[i] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                                       .dstSet = set,
                                       .dstBinding = i,
                                       .descriptorCount = 1,
                                       .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                       .pBufferInfo = &bi[i]};
    }
    d->vkUpdateDescriptorSets(d->dev, n_bufs, wr, 0, NULL);
    d->vkCmdBindPipeline(d->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p->pipe);
    d->vkCmdBindDescriptorSets(d->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p->layout, 0, 1, &set, 0, NULL);
    uint8_t pc[VK_PUSH_BYTES] = {0};
    if (push_bytes) memcpy(pc, push, push_bytes);
    d->vkCmdPushConstants(d->cmd, p->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, VK_PUSH_BYTES, pc);
    d->vkCmdDispatch(d->cmd, gx, gy, gz);
    /* Every dispatch here reads what the previous one wrote (the graph is a
     * chain), so one global barrier after each is also the minimum. */
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT,
                          .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                                           VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_HOST_READ_BIT};
    d->vkCmdPipelineBarrier(d->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                            VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT |
                                VK_PIPELINE_STAGE_HOST_BIT,
                            0, 1, &mb, 0, NULL, 0, NULL);
    return LLMS_OK;
}

/* ---- device-resident storage ------------------------------------------ */

llms_status vk_buf_copy_now(vk_dev *d, vk_buf *src, uint64_t soff, vk_buf *dst, uint64_t doff, uint64_t n) {
    if (soff > src->size || n > src->size - soff || doff > dst->size || n > dst->size - doff)
        return err_set(LLMS_ERR_INTERNAL, "vk_buf_copy_now out of bounds");
    return copy_now(d, src, soff, dst, doff, n);
}
