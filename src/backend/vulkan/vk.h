/*
 * Vulkan compute backend: instance and device management, buffers,
 * pipelines for the embedded shaders, and one recorded command buffer per
 * submission. Internal to the library.
 *
 * Threads: a vk_dev is used by one thread at a time (its owner serialises
 * submissions with dev->lock); vk_inst functions may be called from any
 * thread, each call working on its own instance.
 */
#ifndef LLMS_VK_H
#define LLMS_VK_H

#include <pthread.h>
#include <stdint.h>

#include "llmserve.h"
#include "vk_fns.h"
#include "../../core/alloc.h"

/* A Vulkan instance with its physical devices. */
typedef struct vk_inst {
    const lalloc *a;
    void *lib;                      /* dlopen handle of the loader */
    PFN_vkGetInstanceProcAddr gipa;
    VK_GLOBAL_FNS(VK_DECL_FN)
    VK_INSTANCE_FNS(VK_DECL_FN)
    PFN_vkCreateDebugUtilsMessengerEXT create_messenger;
    PFN_vkDestroyDebugUtilsMessengerEXT destroy_messenger;
    VkInstance instance;
    VkDebugUtilsMessengerEXT messenger;
    uint32_t n_phys;
    VkPhysicalDevice *phys;
    int validation;                 /* the Khronos validation layer is on */
} vk_inst;

/* Creates an instance (Vulkan 1.2). With env LLMS_VK_VALIDATION=1 the
 * Khronos validation layer is enabled and its errors counted (see
 * vk_validation_errors). LLMS_ERR_BACKEND if there is no loader or no
 * Vulkan 1.2 instance. */
llms_status vk_inst_create(const lalloc *a, vk_inst **out);
void vk_inst_destroy(vk_inst *vi);

/* Fills a public device description for physical device `index`. */
void vk_inst_describe(vk_inst *vi, uint32_t index, llms_device_info *info);

/* The device AUTO would choose: the first discrete GPU, else the first
 * integrated one; -1 if neither. With allow_any, any other device (a CPU
 * driver such as lavapipe) is taken last. */
int32_t vk_inst_pick(vk_inst *vi, int allow_any);

/* Validation-layer errors reported in this process so far, and the last
 * message (for tests: the library itself never prints). */
uint64_t vk_validation_errors(void);
const char *vk_validation_last(void);

/* A device buffer. Host-visible buffers stay mapped (`map`). */
typedef struct vk_buf {
    VkBuffer buf;
    VkDeviceMemory mem;
    uint64_t size;
    void *map;
} vk_buf;

typedef struct vk_pipe {
    const char *shader;
    uint32_t spec;                  /* specialization constant 0 */
    uint32_t n_bind;
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkPipeline pipe;
} vk_pipe;

#define VK_MAX_PIPES 32
#define VK_MAX_BIND 8
#define VK_PUSH_BYTES 64

typedef struct vk_dev {
    vk_inst *vi;
    const lalloc *a;
    VkPhysicalDevice phys;
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties mem_props;
    VkDevice dev;
    VK_DEVICE_FNS(VK_DECL_FN)
    VkQueue queue;
    uint32_t queue_family;
    VkCommandPool cmd_pool;
    VkCommandBuffer cmd;
    VkFence fence;
    VkDescriptorPool desc_pool;
    uint32_t desc_sets_left;        /* before the pool must be flushed */
    int recording;
    uint64_t budget;                /* bytes; 0 = the heaps' sizes */
    uint64_t used;                  /* bytes allocated */
    int no_host_map;                /* never map device-local memory (tests the staging path) */
    int subgroup_arith;             /* compute shaders may use subgroup arithmetic */
    uint32_t n_pipes;
    vk_pipe pipes[VK_MAX_PIPES];
    pthread_mutex_t lock;
} vk_dev;

/* Opens physical device `index` of `vi` (which the device then owns and
 * destroys). `budget` caps device memory (0 = none). */
llms_status vk_dev_create(vk_inst *vi, uint32_t index, uint64_t budget, vk_dev **out);
void vk_dev_destroy(vk_dev *d);

/* Buffers: host_visible picks host-visible coherent memory (for staging,
 * tests and read-back); otherwise device-local. LLMS_ERR_DEVICE_MEMORY if
 * the budget or the device's memory is exhausted. */
llms_status vk_buf_create(vk_dev *d, uint64_t size, int host_visible, vk_buf *out);
void vk_buf_destroy(vk_dev *d, vk_buf *b);
/* Copies in or out, through a staging buffer when `b` is not mapped.
 * Not while recording. */
llms_status vk_buf_write(vk_dev *d, vk_buf *b, uint64_t off, const void *src, uint64_t n);
llms_status vk_buf_read(vk_dev *d, vk_buf *b, uint64_t off, void *dst, uint64_t n);
/* Buffer-to-buffer copy on the device, submitted and waited for (growing
 * resident storage). Not while recording. */
llms_status vk_buf_copy_now(vk_dev *d, vk_buf *src, uint64_t soff, vk_buf *dst, uint64_t doff, uint64_t n);

/* Recording: begin, any number of dispatches (each followed by a
 * compute-to-compute barrier), then submit-and-wait. */
llms_status vk_begin(vk_dev *d);
llms_status vk_dispatch(vk_dev *d, const char *shader, uint32_t spec, const vk_buf *const *bufs,
                        uint32_t n_bufs, const void *push, uint32_t push_bytes, uint32_t gx,
                        uint32_t gy, uint32_t gz);
llms_status vk_submit(vk_dev *d);

/* Maps a VkResult to a status with a message naming `what`. */
llms_status vk_status(VkResult r, const char *what);

#endif
