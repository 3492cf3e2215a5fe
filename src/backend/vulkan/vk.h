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
    /* VK_NV_cooperative_matrix's query; NULL where no driver has it. */
    PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV coopmat_props;
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

/* LLMS_DEVICE_* for a Vulkan device type. */
int32_t vk_device_type(VkPhysicalDeviceType t);

/* Fills a public device description for physical device `index`. */
void vk_inst_describe(vk_inst *vi, uint32_t index, llms_device_info *info);

/* What the shaders need from a device (vk_dev_desc.missing). Not needed:
 * 16- or 8-bit storage and float16 arithmetic (F16 and quantized weights
 * are read as 32-bit words and unpacked in the shader), and subgroup
 * operations (matvec.comp is the portable fallback of matvec_sg.comp), and
 * cooperative matrices (matmul.comp is the portable fallback of
 * matmul_coopmat.comp). */
enum {
    VK_REQ_API_1_2 = 1u << 0,       /* Vulkan 1.2: the shaders are SPIR-V 1.5 */
    VK_REQ_COMPUTE_QUEUE = 1u << 1, /* a queue family with compute */
    VK_REQ_WORKGROUP = 1u << 2,     /* 256 invocations, 64 x 16 sizes (matmul.comp is 16x16) */
    VK_REQ_SHARED_MEMORY = 1u << 3, /* VK_SHARED_BYTES of workgroup memory (matmul.comp's tiles) */
    VK_REQ_ALL = (1u << 4) - 1,
    /* Optional: without it matvec.comp replaces matvec_sg.comp. */
    VK_OPT_SUBGROUP_ARITH = 1u << 8,
    /* Optional: without it matmul.comp replaces matmul_coopmat.comp (see
     * vk_coopmat_lack for what it takes). */
    VK_OPT_COOPMAT = 1u << 9
};
#define VK_SHARED_BYTES 4096u

/* A device as the selection policy sees it. */
typedef struct vk_dev_desc {
    int32_t type;           /* LLMS_DEVICE_* */
    uint32_t api_version;   /* VK_MAKE_API_VERSION */
    uint32_t missing;       /* VK_REQ_* the device lacks (VK_OPT_* informative) */
} vk_dev_desc;

/* The selection policy, a pure function of the list (for tests with
 * made-up devices). Returns the index to open, or -1.
 *   AUTO (explicit_req 0): a discrete GPU, else an integrated one, else a
 *     virtual one; never a CPU driver (lavapipe: the CPU backend is faster)
 *     nor an unknown type.
 *   explicit (1): the same order, then CPU drivers, then other types.
 * A device below Vulkan 1.2 or missing a VK_REQ_* is skipped; among
 * devices of one type the lowest index (the driver's order) wins. */
int32_t vk_select(const vk_dev_desc *devs, uint32_t n, int explicit_req);

/* A static name for the first requirement in `missing` ("" if none). */
const char *vk_req_name(uint32_t missing);

/* Describes physical device `index` for the policy (test overrides of
 * vk_debug_select applied). */
void vk_inst_desc(vk_inst *vi, uint32_t index, vk_dev_desc *out);

/* vk_select over the instance's devices (allow_any: explicit request). */
int32_t vk_inst_pick(vk_inst *vi, int allow_any);

/* The device AUTO takes, probed once per process (an instance costs 10 to
 * 100 ms, and contexts are created often); -1 where there is none or no
 * Vulkan at all. Devices plugged in later are not seen by AUTO. */
int32_t vk_auto_device(void);

/* Test hooks for selection, process-wide (0 = off); each call also
 * forgets AUTO's cached choice. Not to be called while contexts are being
 * created on other threads.
 *   force_type: every device describes itself as this LLMS_DEVICE_* type
 *               (-1 = off), so AUTO's GPU path runs on lavapipe;
 *   mask:       these VK_REQ_* / VK_OPT_* are reported missing;
 *   fail_create: vk_dev_create fails as vkCreateDevice would
 *               (VK_ERROR_INITIALIZATION_FAILED). */
void vk_debug_select(int32_t force_type, uint32_t mask, int fail_create);
/* The current hooks (read by device.c). */
void vk_debug_selection(int32_t *force_type, uint32_t *mask, int *fail_create);

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

#define VK_MAX_PIPES 48
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
    /* Prefill matmul: matmul_coopmat.comp once the device passed detection
     * and the start-up self-check (vk_coopmat_setup), else matmul.comp. */
    int coopmat;                    /* vk_op_matmul takes coopmat_shader */
    const char *coopmat_shader;     /* the candidate and its output tile */
    uint32_t coopmat_tile;
    int coopmat_failed;             /* the self-check rejected it (logged as a warning) */
    char coopmat_note[384];         /* why it is on or off, for the log */
    uint32_t n_pipes;
    vk_pipe pipes[VK_MAX_PIPES];
    pthread_mutex_t lock;
    /* Set by the first VK_ERROR_DEVICE_LOST. Every later call that would
     * touch the device then fails at once with LLMS_ERR_DEVICE_LOST and
     * makes no Vulkan call; only destruction still runs (the spec allows
     * it on a lost device). Read and written under `lock`, like the rest. */
    int lost;
    const char *lost_in;            /* the call that saw it (static string) */
    int fault;                      /* VK_FAULT_* armed by vk_debug_inject */
    uint32_t fault_after;           /* matching calls to let through first */
} vk_dev;

/* Faults a test can inject (vk_debug_inject). */
enum {
    VK_FAULT_NONE = 0,
    VK_FAULT_DEVICE_LOST = 1,   /* a submission returns VK_ERROR_DEVICE_LOST */
    VK_FAULT_OOM = 2,           /* vkAllocateMemory returns VK_ERROR_OUT_OF_DEVICE_MEMORY */
    VK_FAULT_HOST_OOM = 3       /* vkAllocateMemory returns VK_ERROR_OUT_OF_HOST_MEMORY */
};

/* Test hook: makes calls on `d` fail as the driver would. After `after`
 * matching calls have gone through, DEVICE_LOST fails the next submission
 * (without submitting, and the device stays lost like a real one); OOM and
 * HOST_OOM fail every memory allocation from then on, as a full device
 * does, until VK_FAULT_NONE clears them (which cannot revive a lost device).
 * Internal: not part of the public API. */
void vk_debug_inject(vk_dev *d, int fault, uint32_t after);

/* Opens physical device `index` of `vi` (which the device then owns and
 * destroys). `budget` caps device memory (0 = none). A device that lacks a
 * VK_REQ_* is refused with LLMS_ERR_UNSUPPORTED naming what it lacks. */
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

/* ---- cooperative matrices (coopmat.c) ----------------------------------
 *
 * matmul_coopmat.comp uses VK_NV_cooperative_matrix (Debian 12's glslang
 * has GL_NV_cooperative_matrix, not the KHR one). CI's lavapipe has no
 * cooperative matrices, so that shader never runs there: wherever it is
 * selected, a start-up self-check runs it against matmul.comp first and
 * keeps matmul.comp on any difference or error. An untested shader thus
 * never gives wrong results silently. */

/* Why physical device `pd` cannot run matmul_coopmat.comp (a static
 * string), or NULL if it can: VK_NV_cooperative_matrix with its
 * cooperativeMatrix feature for compute, a 16x16x16 f16*f16+f32 subgroup
 * shape, shaderFloat16, vulkanMemoryModel, subgroups of 32 with basic
 * operations, VK_COOPMAT_SHARED_BYTES of shared memory. */
const char *vk_coopmat_lack(vk_inst *vi, VkPhysicalDevice pd);
#define VK_COOPMAT_SHARED_BYTES (2u * 64u * 40u * 2u + 4u * 256u * 4u)

/* 1 if the environment variable is set to a value starting with '1'
 * (LLMS_VK_NO_COOPMAT, LLMS_VK_VALIDATION, ...). */
int vk_env_flag(const char *name);

/* The self-check's comparison: 1 if every |got[i] - want[i]| <= rel *
 * mag[i] + abs_tol (mag[i] = sum_c |w_c x_c| of the element; NaN fails),
 * else 0 with the first offending element described in `why`. */
int vk_matmul_compare(const float *got, const float *want, const double *mag, size_t n, double rel,
                      double abs_tol, char *why, size_t why_len);
/* Tolerance for f16 inputs with f32 sums (the inputs' rounding, 2^-11
 * relative each, with a margin; a wrong tile or slice is far outside). */
#define VK_COOPMAT_REL (1.0 / 256)
#define VK_COOPMAT_ABS 1e-5

/* Runs `shader` (output tiles of `tile` x `tile`, matmul.comp's contract)
 * and matmul.comp on the same random product of every weight type, with
 * rows, tokens and K off the tiles' multiples and strides wider than the
 * rows, and compares (vk_matmul_compare). LLMS_OK if they agree, else an
 * error status with the reason in `why`. Not while recording. */
llms_status vk_matmul_selfcheck(vk_dev *d, const char *shader, uint32_t tile, char *why, size_t why_len);

/* Decides d->coopmat at the end of vk_dev_create: off where `lack` is not
 * NULL (the device lacks something) or LLMS_VK_NO_COOPMAT=1 (`env_off`),
 * else on if the self-check passes. Sets d->coopmat_note. Fails only if
 * the device was lost meanwhile. */
llms_status vk_coopmat_setup(vk_dev *d, const char *lack, int env_off);

/* Test hooks, process-wide (0 = off), read at vk_dev_create:
 *   force:   a device without cooperative matrices takes the coopmat path
 *            anyway, with matmul.comp standing in for matmul_coopmat.comp
 *            (the selection, self-check and fallback run on lavapipe);
 *   corrupt: the self-check perturbs one element of the candidate's
 *            output before comparing (it must then reject the candidate). */
void vk_debug_coopmat(int force, int corrupt);
void vk_debug_coopmat_get(int *force, int *corrupt);

/* Maps a VkResult to a status with a message naming `what` (calls on a
 * vk_dev go through device.c's dev_status, which also marks device loss). */
llms_status vk_status(VkResult r, const char *what);

#endif
