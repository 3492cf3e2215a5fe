/*
 * Vulkan device selection and fault handling.
 *
 * The selection policy (vk_select) is a pure function: tested on made-up
 * device lists, no Vulkan needed. Everything else needs a Vulkan 1.2
 * device (lavapipe serves) and skips without one, except in CI (CI set),
 * where it fails. Faults are injected where the driver would report them
 * (vk_debug_inject: a submission returning VK_ERROR_DEVICE_LOST, memory
 * allocations returning VK_ERROR_OUT_OF_DEVICE/HOST_MEMORY) and the GPU
 * branches of AUTO are reached on lavapipe through vk_debug_select (a
 * forced device type, masked requirements, a failing vkCreateDevice).
 * The Khronos validation layer is on where installed (LLMS_VK_VALIDATION=1
 * unless set otherwise), and any error it reports fails the test.
 *
 * Drivers are not pinned here (test_vulkan.c does): the library keeps them
 * resident itself, which the sanitizer build of this test checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "llmserve.h"
#include "backend/vulkan/kv_resident.h"
#include "backend/vulkan/vk.h"
#include "core/context.h"
#include "model/model.h"
#include "support/fixtures.h"

#define MODEL "models/aidreams260K.gguf"
#define GOLDEN "models/aidreams260K.golden.json"

static const char *g_skip_reason;
static int g_have_device;

static int group_setup(void **state) {
    (void)state;
    vk_inst *vi;
    if (vk_inst_create(&lalloc_libc, &vi) != LLMS_OK) {
        g_skip_reason = llms_errmsg();
        return 0;
    }
    g_have_device = vk_inst_pick(vi, 1) >= 0;
    if (!g_have_device) g_skip_reason = "no Vulkan 1.2 device";
    vk_inst_destroy(vi);
    return 0;
}

static void need_device(void) {
    if (g_have_device) return;
    if (getenv("CI")) fail_msg("no Vulkan device in CI: %s", g_skip_reason ? g_skip_reason : "?");
    print_message("skipping: no Vulkan device (%s)\n", g_skip_reason ? g_skip_reason : "?");
    skip();
}

/* The start of every test that runs the model fixture on the device:
 * skipped (0) without a device or the fixture. */
static int have_device_and_model(void) {
    need_device();
    if (fixture_path(MODEL)) return 1;
    fixture_missing(MODEL);
    return 0;
}

static void check_validation(void) {
    if (vk_validation_errors() > 0)
        fail_msg("validation layer reported %llu error(s); last: %s", (unsigned long long)vk_validation_errors(),
                 vk_validation_last());
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* The first golden case with a prompt: its text, step count, completion. */
typedef struct golden {
    cJSON *root;
    const char *prompt, *completion;
    int n_steps;
} golden;

static int golden_load(golden *g) {
    const char *path = fixture_path(GOLDEN);
    if (!path || !fixture_path(MODEL)) {
        fixture_missing(MODEL);
        return 0;
    }
    char *text = read_file_all(path, NULL);
    assert_non_null(text);
    g->root = cJSON_Parse(text);
    free(text);
    assert_non_null(g->root);
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g->root, "cases")) {
        const char *p = cJSON_GetObjectItem(c, "prompt")->valuestring;
        const cJSON *comp = cJSON_GetObjectItem(c, "completion");
        if (p[0] && cJSON_IsString(comp)) {
            g->prompt = p;
            g->completion = comp->valuestring;
            g->n_steps = cJSON_GetArraySize(cJSON_GetObjectItem(c, "steps"));
            return 1;
        }
    }
    fail_msg("no golden case with a prompt and a completion");
    return 0;
}

/* A context asking for `backend`, which must get `expect`. */
static llms_context *make_ctx_on(int32_t backend, int32_t expect) {
    llms_context_params cp;
    llms_context_params_init(&cp);
    cp.backend = backend;
    cp.n_threads = 2;
    llms_context *ctx = NULL;
    if (llms_context_create(&cp, &ctx) != LLMS_OK) fail_msg("context (backend %d): %s", (int)backend, llms_errmsg());
    assert_int_equal(llms_context_backend(ctx), expect);
    return ctx;
}

static llms_context *make_ctx(int32_t backend) { return make_ctx_on(backend, backend); }

static llms_model *load(llms_context *ctx) {
    llms_model *m = NULL;
    if (llms_model_load(ctx, fixture_path(MODEL), NULL, &m) != LLMS_OK) fail_msg("load: %s", llms_errmsg());
    return m;
}

static void greedy(llms_session *s, int max_tokens) {
    llms_sampling_params sp;
    llms_sampling_params_init(&sp);
    sp.temperature = 0;
    sp.max_tokens = max_tokens;
    assert_int_equal(llms_session_generate_begin(s, &sp), LLMS_OK);
}

/* Feeds the prompt and generates greedily to the end; the text or NULL. */
static llms_status generate(llms_session *s, const golden *g, char *out, size_t cap) {
    size_t n = 0;
    out[0] = 0;
    llms_status st = llms_session_feed_text(s, g->prompt, strlen(g->prompt), LLMS_TOKENIZE_MODEL_DEFAULTS);
    if (st) return st;
    greedy(s, g->n_steps);
    llms_step_result r;
    llms_step_result_init(&r);
    while ((st = llms_session_step(s, &r)) == LLMS_TOKEN || st == LLMS_DONE) {
        assert_true(n + r.text_len < cap);
        memcpy(out + n, r.text, r.text_len);
        out[n += r.text_len] = 0;
        if (st == LLMS_DONE) return LLMS_OK;
    }
    return st;
}

/* A fresh context of `backend` reproduces the reference completion. */
static void reference_text(int32_t backend, const golden *g) {
    llms_context *ctx = make_ctx(backend);
    llms_model *m = load(ctx);
    llms_session *s;
    assert_int_equal(llms_session_create(m, NULL, &s), LLMS_OK);
    char text[4096];
    if (generate(s, g, text, sizeof text) != LLMS_OK) fail_msg("backend %d: %s", (int)backend, llms_errmsg());
    if (strcmp(text, g->completion)) fail_msg("backend %d:\n  got      '%s'\n  expected '%s'", (int)backend, text,
                                              g->completion);
    llms_session_destroy(s);
    llms_model_destroy(m);
    llms_context_destroy(ctx);
}

/* ---- selection policy (pure) --------------------------------------------- */

#define V12 VK_API_VERSION_1_2
#define V11 VK_API_VERSION_1_1
enum { DIS = LLMS_DEVICE_DISCRETE, INT = LLMS_DEVICE_INTEGRATED, VIR = LLMS_DEVICE_VIRTUAL,
       CPU = LLMS_DEVICE_CPU, OTH = LLMS_DEVICE_OTHER };

static int32_t pick(const vk_dev_desc *d, uint32_t n, int explicit_req) { return vk_select(d, n, explicit_req); }

static void test_select_policy(void **state) {
    (void)state;
    /* discrete + integrated + CPU driver, in any order: the discrete GPU */
    vk_dev_desc all[3] = {{CPU, V12, 0}, {INT, V12, 0}, {DIS, V12, 0}};
    assert_int_equal(pick(all, 3, 0), 2);
    assert_int_equal(pick(all, 3, 1), 2);
    /* only a CPU driver: AUTO takes the CPU backend, VULKAN takes it */
    vk_dev_desc cpu[1] = {{CPU, V12, 0}};
    assert_int_equal(pick(cpu, 1, 0), -1);
    assert_int_equal(pick(cpu, 1, 1), 0);
    /* integrated only */
    vk_dev_desc igpu[1] = {{INT, V12, 0}};
    assert_int_equal(pick(igpu, 1, 0), 0);
    /* integrated before virtual before a CPU driver */
    vk_dev_desc ivc[3] = {{CPU, V12, 0}, {VIR, V12, 0}, {INT, V12, 0}};
    assert_int_equal(pick(ivc, 3, 0), 2);
    assert_int_equal(pick(ivc, 2, 0), 1);
    /* a discrete GPU lacking a requirement is skipped, by AUTO and VULKAN */
    vk_dev_desc lack[2] = {{DIS, V12, VK_REQ_WORKGROUP}, {INT, V12, 0}};
    assert_int_equal(pick(lack, 2, 0), 1);
    assert_int_equal(pick(lack, 2, 1), 1);
    assert_int_equal(pick(lack, 1, 0), -1);
    assert_int_equal(pick(lack, 1, 1), -1);
    /* ... and one below Vulkan 1.2 */
    vk_dev_desc old[2] = {{DIS, V11, 0}, {CPU, V12, 0}};
    assert_int_equal(pick(old, 2, 0), -1);
    assert_int_equal(pick(old, 2, 1), 1);
    /* a missing optional feature (subgroup arithmetic) does not count */
    vk_dev_desc opt[2] = {{INT, V12, 0}, {DIS, V12, VK_OPT_SUBGROUP_ARITH}};
    assert_int_equal(pick(opt, 2, 0), 1);
    /* ... nor do cooperative matrices */
    vk_dev_desc cm[2] = {{INT, V12, 0}, {DIS, V12, VK_OPT_COOPMAT | VK_OPT_SUBGROUP_ARITH}};
    assert_int_equal(pick(cm, 2, 0), 1);
    assert_int_equal(pick(cm, 2, 1), 1);
    assert_non_null(strstr(vk_req_name(VK_OPT_COOPMAT), "cooperative matrices"));
    /* two of a kind: the driver's order */
    vk_dev_desc two[3] = {{INT, V12, 0}, {DIS, V12, 0}, {DIS, V12, 0}};
    assert_int_equal(pick(two, 3, 0), 1);
    /* an unknown type: never for AUTO, after CPU drivers for VULKAN */
    vk_dev_desc oth[2] = {{OTH, V12, 0}, {CPU, V12, 0}};
    assert_int_equal(pick(oth, 2, 0), -1);
    assert_int_equal(pick(oth, 2, 1), 1);
    assert_int_equal(pick(oth, 1, 1), 0);
    /* nothing at all */
    assert_int_equal(pick(NULL, 0, 0), -1);
    assert_int_equal(pick(NULL, 0, 1), -1);
    /* requirement names, for the messages */
    assert_non_null(strstr(vk_req_name(VK_REQ_API_1_2), "1.2"));
    assert_non_null(strstr(vk_req_name(VK_REQ_COMPUTE_QUEUE), "compute queue"));
    assert_non_null(strstr(vk_req_name(VK_REQ_WORKGROUP | VK_REQ_SHARED_MEMORY), "256"));
    assert_non_null(strstr(vk_req_name(VK_REQ_SHARED_MEMORY), "shared memory"));
    assert_string_equal(vk_req_name(0), "");
}

/* ---- selection on this machine ------------------------------------------ */

static char g_log[1024];
static void on_log(void *user, int32_t level, const char *msg) {
    (void)user;
    if (level <= LLMS_LOG_WARN) snprintf(g_log, sizeof g_log, "%s", msg);
}

/* AUTO follows the policy over the real devices: with only a CPU driver
 * (lavapipe) that is the CPU backend, and no Vulkan call after the first
 * context of the process. */
static void test_auto_real_devices(void **state) {
    (void)state;
    int only_cpu_drivers = 1;
    int32_t n = 0;
    if (llms_device_count(&n) == LLMS_OK)
        for (int32_t i = 0; i < n; i++) {
            llms_device_info info;
            llms_device_info_init(&info);
            assert_int_equal(llms_device_get_info(i, &info), LLMS_OK);
            if (info.type != LLMS_DEVICE_CPU && info.type != LLMS_DEVICE_OTHER) only_cpu_drivers = 0;
        }
    llms_context *ctx;
    assert_int_equal(llms_context_create(NULL, &ctx), LLMS_OK);
    int32_t want = vk_auto_device() >= 0 ? LLMS_BACKEND_VULKAN : LLMS_BACKEND_CPU;
    assert_int_equal(llms_context_backend(ctx), want);
    if (only_cpu_drivers) assert_int_equal(llms_context_backend(ctx), LLMS_BACKEND_CPU);
    llms_context_destroy(ctx);
    /* Cached: later AUTO contexts cost no instance. */
    double t0 = now_s();
    for (int i = 0; i < 20 && want == LLMS_BACKEND_CPU; i++) {
        assert_int_equal(llms_context_create(NULL, &ctx), LLMS_OK);
        llms_context_destroy(ctx);
    }
    print_message("20 AUTO contexts: %.2f ms each\n", (now_s() - t0) / 20 * 1e3);
    check_validation();
}

/* AUTO's GPU branch, reached on lavapipe by making it describe itself as
 * an integrated GPU: AUTO takes it; when vkCreateDevice fails AUTO falls
 * back to the CPU (and logs why) while VULKAN returns the error. */
static void test_auto_gpu_branch(void **state) {
    (void)state;
    need_device();
    vk_debug_select(LLMS_DEVICE_INTEGRATED, 0, 0);
    llms_context *ctx = make_ctx_on(LLMS_BACKEND_AUTO, LLMS_BACKEND_VULKAN);
    llms_context_destroy(ctx);

    vk_debug_select(LLMS_DEVICE_INTEGRATED, 0, 1);
    llms_context_params cp;
    llms_context_params_init(&cp);
    cp.log_fn = on_log;
    g_log[0] = 0;
    assert_int_equal(llms_context_create(&cp, &ctx), LLMS_OK);
    assert_int_equal(llms_context_backend(ctx), LLMS_BACKEND_CPU);
    assert_non_null(strstr(g_log, "vkCreateDevice"));
    llms_context_destroy(ctx);
    /* AUTO with a device_index also falls back. */
    cp.device_index = 0;
    assert_int_equal(llms_context_create(&cp, &ctx), LLMS_OK);
    assert_int_equal(llms_context_backend(ctx), LLMS_BACKEND_CPU);
    llms_context_destroy(ctx);
    cp.device_index = 99;
    assert_int_equal(llms_context_create(&cp, &ctx), LLMS_OK);
    assert_int_equal(llms_context_backend(ctx), LLMS_BACKEND_CPU);
    llms_context_destroy(ctx);
    cp.device_index = -1;
    cp.backend = LLMS_BACKEND_VULKAN;
    assert_int_equal(llms_context_create(&cp, &ctx), LLMS_ERR_BACKEND);
    assert_null(ctx);
    assert_non_null(strstr(llms_errmsg(), "vkCreateDevice"));

    vk_debug_select(-1, 0, 0);
    ctx = make_ctx(LLMS_BACKEND_VULKAN);   /* usable again */
    llms_context_destroy(ctx);
    check_validation();
}

/* Greedy token ids of a short prompt on `m` (n of them). */
static void greedy_ids(llms_model *m, int32_t *ids, int n) {
    llms_session *s;
    assert_int_equal(llms_session_create(m, NULL, &s), LLMS_OK);
    const char *prompt = "Once upon a time";
    assert_int_equal(llms_session_feed_text(s, prompt, strlen(prompt), LLMS_TOKENIZE_MODEL_DEFAULTS), LLMS_OK);
    greedy(s, n);
    llms_step_result r;
    llms_step_result_init(&r);
    for (int i = 0; i < n; i++) {
        llms_status st = llms_session_step(s, &r);
        assert_true(st == LLMS_TOKEN || st == LLMS_DONE);
        ids[i] = st == LLMS_TOKEN ? r.token : -1;
        if (st == LLMS_DONE) break;
    }
    llms_session_destroy(s);
}

/* A model the shaders do not cover (Q5_1 weights) on a GPU that AUTO
 * chose runs on the CPU instead, with a warning, and gives the CPU
 * context's tokens; a covered model on the same context runs on the GPU;
 * an explicit VULKAN context refuses it at load, naming the type. */
static void test_model_without_shaders(void **state) {
    (void)state;
    need_device();
    char path[64];
    snprintf(path, sizeof path, "/tmp/llms-vkfaults-%ld-q5_1.gguf", (long)getpid());
    llms_context *cpu = make_ctx(LLMS_BACKEND_CPU);
    llms_quantize_params qp;
    llms_quantize_params_init(&qp);
    qp.ftype = LLMS_FTYPE_Q5_1;
    assert_int_equal(llms_model_quantize(cpu, fixture_path(MODEL), path, &qp), LLMS_OK);
    llms_model *mc = NULL;
    assert_int_equal(llms_model_load(cpu, path, NULL, &mc), LLMS_OK);
    assert_int_equal(llms_model_backend(mc), LLMS_BACKEND_CPU);
    int32_t want[8], got[8];
    greedy_ids(mc, want, 8);

    vk_debug_select(LLMS_DEVICE_INTEGRATED, 0, 0);
    llms_context_params cp;
    llms_context_params_init(&cp);
    cp.log_fn = on_log;
    g_log[0] = 0;
    llms_context *gpu = NULL;
    assert_int_equal(llms_context_create(&cp, &gpu), LLMS_OK);
    assert_int_equal(llms_context_backend(gpu), LLMS_BACKEND_VULKAN);
    llms_model *mq = NULL;
    assert_int_equal(llms_model_load(gpu, path, NULL, &mq), LLMS_OK);
    assert_int_equal(llms_model_backend(mq), LLMS_BACKEND_CPU);
    assert_non_null(strstr(g_log, "Q5_1"));
    greedy_ids(mq, got, 8);
    assert_memory_equal(want, got, sizeof want);
    llms_model *mf = load(gpu);   /* F32 fixture: covered */
    assert_int_equal(llms_model_backend(mf), LLMS_BACKEND_VULKAN);
    llms_model_destroy(mf);
    llms_model_destroy(mq);
    llms_context_destroy(gpu);

    llms_context *vk = make_ctx(LLMS_BACKEND_VULKAN);
    llms_model *mv = NULL;
    assert_int_equal(llms_model_load(vk, path, NULL, &mv), LLMS_ERR_UNSUPPORTED);
    assert_null(mv);
    assert_non_null(strstr(llms_errmsg(), "Q5_1"));
    llms_context_destroy(vk);
    llms_model_destroy(mc);
    llms_context_destroy(cpu);
    unlink(path);
    check_validation();
}

/* A device without what the shaders need: VULKAN names the feature, AUTO
 * skips the device. An optional feature missing (subgroup arithmetic)
 * only switches to the portable kernel, which gives the reference text. */
static void test_missing_feature(void **state) {
    (void)state;
    need_device();
    static const struct { uint32_t mask; const char *name; } cases[] = {
        {VK_REQ_WORKGROUP, "256 invocations"},
        {VK_REQ_SHARED_MEMORY, "shared memory"},
        {VK_REQ_COMPUTE_QUEUE, "compute queue"},
        {VK_REQ_API_1_2, "Vulkan 1.2"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        vk_debug_select(-1, cases[k].mask, 0);
        llms_context_params cp;
        llms_context_params_init(&cp);
        cp.backend = LLMS_BACKEND_VULKAN;
        llms_context *ctx;
        assert_int_equal(llms_context_create(&cp, &ctx), LLMS_ERR_UNSUPPORTED);
        assert_null(ctx);
        if (!strstr(llms_errmsg(), cases[k].name)) fail_msg("message '%s' lacks '%s'", llms_errmsg(), cases[k].name);
        cp.device_index = 0;
        assert_int_equal(llms_context_create(&cp, &ctx), LLMS_ERR_UNSUPPORTED);
        assert_non_null(strstr(llms_errmsg(), cases[k].name));
        /* AUTO, even where the device looks like a GPU: the CPU. */
        vk_debug_select(LLMS_DEVICE_DISCRETE, cases[k].mask, 0);
        ctx = make_ctx_on(LLMS_BACKEND_AUTO, LLMS_BACKEND_CPU);
        llms_context_destroy(ctx);
    }
    vk_debug_select(-1, VK_OPT_SUBGROUP_ARITH, 0);
    llms_context *ctx = make_ctx(LLMS_BACKEND_VULKAN);
    assert_int_equal(ctx->vk->subgroup_arith, 0);
    llms_context_destroy(ctx);
    golden g = {0};
    if (golden_load(&g)) {
        reference_text(LLMS_BACKEND_VULKAN, &g);
        cJSON_Delete(g.root);
    }
    vk_debug_select(-1, 0, 0);
    check_validation();
}

/* ---- device lost ----------------------------------------------------------- */

/* Lost in the middle of a generation: the step fails with DEVICE_LOST,
 * every later pass fails at once with the same code (no Vulkan call), the
 * sessions still answer queries, reset and destroy, the model and context
 * are destroyed cleanly, and a new CPU context generates the reference. */
static void test_device_lost_mid_generation(void **state) {
    (void)state;
    need_device();
    golden g = {0};
    if (!golden_load(&g)) return;
    llms_context *ctx = make_ctx(LLMS_BACKEND_VULKAN);
    llms_model *m = load(ctx);
    llms_session *s;
    assert_int_equal(llms_session_create(m, NULL, &s), LLMS_OK);
    assert_int_equal(llms_session_feed_text(s, g.prompt, strlen(g.prompt), LLMS_TOKENIZE_MODEL_DEFAULTS), LLMS_OK);
    uint32_t n_prompt = llms_session_n_tokens(s);
    greedy(s, g.n_steps);
    llms_step_result r;
    llms_step_result_init(&r);
    for (int i = 0; i < 5; i++) assert_int_equal(llms_session_step(s, &r), LLMS_TOKEN);
    vk_debug_inject(ctx->vk, VK_FAULT_DEVICE_LOST, 0);
    /* The next step evaluates the last sampled token: one submission. */
    assert_int_equal(llms_session_step(s, &r), LLMS_ERR_DEVICE_LOST);
    assert_non_null(strstr(llms_errmsg(), "lost"));
    assert_non_null(strstr(llms_session_errmsg(s), "lost"));
    assert_true(ctx->vk->lost);
    assert_true(llms_session_usable(s));
    uint32_t n_after = llms_session_n_tokens(s);
    assert_true(n_after >= n_prompt && n_after <= n_prompt + 5);
    assert_non_null(llms_session_tokens(s));

    /* Later passes: the same code, at once. */
    double t0 = now_s();
    int32_t tok = 50;
    assert_int_equal(llms_session_feed_tokens(s, &tok, 1), LLMS_ERR_DEVICE_LOST);
    assert_int_equal(llms_session_n_tokens(s), n_after);
    greedy(s, 4);
    llms_status st = llms_session_step(s, &r);   /* may sample from the logits held on the host */
    if (st == LLMS_TOKEN) st = llms_session_step(s, &r);
    assert_int_equal(st, LLMS_ERR_DEVICE_LOST);
    llms_session *s2;
    assert_int_equal(llms_session_create(m, NULL, &s2), LLMS_OK);
    assert_int_equal(llms_session_feed_tokens(s2, &tok, 1), LLMS_ERR_DEVICE_LOST);
    assert_non_null(strstr(llms_session_errmsg(s2), "vkQueueSubmit"));
    double dt = now_s() - t0;
    print_message("after the loss: 3 failing passes in %.3f ms\n", dt * 1e3);
    assert_true(dt < 1.0);

    assert_int_equal(llms_session_reset(s), LLMS_OK);
    assert_int_equal(llms_session_n_tokens(s), 0);
    assert_int_equal(llms_session_feed_tokens(s, &tok, 1), LLMS_ERR_DEVICE_LOST);
    llms_session_destroy(s2);
    llms_session_destroy(s);
    llms_model_destroy(m);
    llms_context_destroy(ctx);
    check_validation();

    reference_text(LLMS_BACKEND_CPU, &g);
    /* A new Vulkan context gets a new device. */
    reference_text(LLMS_BACKEND_VULKAN, &g);
    cJSON_Delete(g.root);
    check_validation();
}

/* Terminal events drained from the queue: how many, and how many of them
 * are errors with `code`. */
static int drain_terminal(llms_scheduler *S, llms_status code, int *n_code) {
    char buf[4096];
    llms_event ev;
    memset(&ev, 0, sizeof ev);
    ev.struct_size = sizeof ev;
    ev.text_buf = buf;
    ev.text_cap = sizeof buf;
    int terms = 0;
    while (llms_scheduler_poll(S, &ev, 0) == LLMS_OK) {
        if (ev.type == LLMS_EVENT_TOKEN) continue;
        terms++;
        if (ev.type == LLMS_EVENT_ERROR && ev.status == code) (*n_code)++;
    }
    return terms;
}

static uint64_t sched_submit(llms_scheduler *S) {
    llms_sampling_params sp;
    llms_sampling_params_init(&sp);
    sp.temperature = 0;
    sp.max_tokens = 40;
    llms_request_params rq;
    llms_request_params_init(&rq);
    rq.prompt = "The robot";
    rq.prompt_len = 9;
    rq.flags = LLMS_REQUEST_MODEL_DEFAULTS;
    rq.sampling = &sp;
    uint64_t id = 0;
    assert_int_equal(llms_scheduler_submit(S, &rq, &id), LLMS_OK);
    return id;
}

/* Lost under the scheduler: the running requests end with an ERROR event
 * carrying DEVICE_LOST (each exactly one terminal event), the scheduler
 * does not spin or hang, and later requests fail the same way at once. */
static void test_device_lost_scheduler(void **state) {
    (void)state;
    if (!have_device_and_model()) return;
    llms_context *ctx = make_ctx(LLMS_BACKEND_VULKAN);
    llms_model *m = load(ctx);
    llms_scheduler *S;
    assert_int_equal(llms_scheduler_create(m, NULL, &S), LLMS_OK);
    enum { N = 3 };
    for (int i = 0; i < N; i++) sched_submit(S);
    for (int i = 0; i < 3; i++) assert_int_equal(llms_scheduler_step(S, NULL), LLMS_OK);
    int lost = 0, terms = drain_terminal(S, LLMS_ERR_DEVICE_LOST, &lost);
    assert_int_equal(terms, 0);
    vk_debug_inject(ctx->vk, VK_FAULT_DEVICE_LOST, 0);
    /* The step whose pass failed returns the pass's status too. */
    assert_int_equal(llms_scheduler_step(S, NULL), LLMS_ERR_DEVICE_LOST);
    terms = drain_terminal(S, LLMS_ERR_DEVICE_LOST, &lost);
    assert_int_equal(terms, N);
    assert_int_equal(lost, N);
    assert_int_equal(llms_scheduler_step(S, NULL), LLMS_AGAIN);
    sched_submit(S);
    assert_int_equal(llms_scheduler_step(S, NULL), LLMS_ERR_DEVICE_LOST);
    lost = 0;
    assert_int_equal(drain_terminal(S, LLMS_ERR_DEVICE_LOST, &lost), 1);
    assert_int_equal(lost, 1);
    assert_int_equal(llms_scheduler_step(S, NULL), LLMS_AGAIN);
    llms_scheduler_destroy(S);
    llms_model_destroy(m);
    llms_context_destroy(ctx);
    check_validation();
}

/* Lost during the weight upload, on the staging path of discrete GPUs
 * (device-local memory not mapped): the copy's submission reports it. */
static void test_device_lost_during_upload(void **state) {
    (void)state;
    if (!have_device_and_model()) return;
    setenv("LLMS_VK_NO_HOST_MAP", "1", 1);
    llms_context *ctx = make_ctx(LLMS_BACKEND_VULKAN);
    unsetenv("LLMS_VK_NO_HOST_MAP");
    llms_model *m = load(ctx);
    llms_session *s;
    assert_int_equal(llms_session_create(m, NULL, &s), LLMS_OK);
    vk_debug_inject(ctx->vk, VK_FAULT_DEVICE_LOST, 3);
    int32_t toks[3] = {1, 50, 60};
    assert_int_equal(llms_session_feed_tokens(s, toks, 3), LLMS_ERR_DEVICE_LOST);
    assert_null(m->vk);                       /* the partial upload was freed */
    assert_int_equal(ctx->vk->used, 0);
    assert_int_equal(llms_session_feed_tokens(s, toks, 3), LLMS_ERR_DEVICE_LOST);
    assert_int_equal(llms_session_n_tokens(s), 0);
    llms_session_destroy(s);
    llms_model_destroy(m);
    llms_context_destroy(ctx);
    check_validation();
}

/* ---- out of device memory ------------------------------------------------- */

/* Out of memory part-way through the weight upload (device and host
 * flavours): DEVICE_MEMORY, nothing left allocated on the device, and
 * once the memory is back the same session generates the reference. */
static void test_oom_model_upload(void **state) {
    (void)state;
    need_device();
    golden g = {0};
    if (!golden_load(&g)) return;
    static const struct { int fault; uint32_t after; const char *what; } cases[] = {
        {VK_FAULT_OOM, 5, "out of device memory"},
        {VK_FAULT_HOST_OOM, 0, "out of host memory"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        llms_context *ctx = make_ctx(LLMS_BACKEND_VULKAN);
        llms_model *m = load(ctx);
        llms_session *s;
        assert_int_equal(llms_session_create(m, NULL, &s), LLMS_OK);
        vk_debug_inject(ctx->vk, cases[k].fault, cases[k].after);
        llms_status st = llms_session_feed_text(s, g.prompt, strlen(g.prompt), LLMS_TOKENIZE_MODEL_DEFAULTS);
        assert_int_equal(st, LLMS_ERR_DEVICE_MEMORY);
        if (!strstr(llms_errmsg(), cases[k].what)) fail_msg("message '%s'", llms_errmsg());
        assert_null(m->vk);
        assert_int_equal(ctx->vk->used, 0);
        assert_int_equal(llms_session_n_tokens(s), 0);
        assert_true(llms_session_usable(s));
        /* Still full: the same answer. */
        assert_int_equal(llms_session_feed_text(s, g.prompt, strlen(g.prompt), LLMS_TOKENIZE_MODEL_DEFAULTS),
                         LLMS_ERR_DEVICE_MEMORY);
        vk_debug_inject(ctx->vk, VK_FAULT_NONE, 0);
        char text[4096];
        if (generate(s, &g, text, sizeof text) != LLMS_OK) fail_msg("after the fault: %s", llms_errmsg());
        assert_string_equal(text, g.completion);
        llms_session_destroy(s);
        llms_model_destroy(m);
        llms_context_destroy(ctx);
    }
    cJSON_Delete(g.root);
    check_validation();
}

/* Logits of a session fed `toks` on a fresh CPU context. */
static void cpu_logits(const int32_t *toks, size_t n, float *out, int32_t V) {
    llms_context *ctx = make_ctx(LLMS_BACKEND_CPU);
    llms_model *m = load(ctx);
    llms_session *s;
    assert_int_equal(llms_session_create(m, NULL, &s), LLMS_OK);
    assert_int_equal(llms_session_feed_tokens(s, toks, n), LLMS_OK);
    memcpy(out, llms_session_logits(s), (size_t)V * sizeof *out);
    llms_session_destroy(s);
    llms_model_destroy(m);
    llms_context_destroy(ctx);
}

/* Out of memory in a pass, after the weights are up: a larger batch must
 * grow the scratch buffers (and, on the staging path, every write needs a
 * staging buffer). DEVICE_MEMORY, the session unchanged, and the retry
 * after the fault is cleared gives the CPU's logits. */
static void test_oom_during_pass(void **state) {
    (void)state;
    if (!have_device_and_model()) return;
    enum { N = 30 };
    int32_t toks[N + 1];
    toks[0] = 1;
    for (int i = 1; i <= N; i++) toks[i] = 20 + (i * 37) % 400;
    for (int staging = 0; staging <= 1; staging++) {
        if (staging) setenv("LLMS_VK_NO_HOST_MAP", "1", 1);
        llms_context *ctx = make_ctx(LLMS_BACKEND_VULKAN);
        unsetenv("LLMS_VK_NO_HOST_MAP");
        llms_model *m = load(ctx);
        int32_t V = llms_model_n_vocab(m);
        llms_session *s;
        assert_int_equal(llms_session_create(m, NULL, &s), LLMS_OK);
        assert_int_equal(llms_session_feed_tokens(s, toks, 1), LLMS_OK);
        uint64_t used = ctx->vk->used;
        vk_debug_inject(ctx->vk, VK_FAULT_OOM, 0);
        assert_int_equal(llms_session_feed_tokens(s, toks + 1, N), LLMS_ERR_DEVICE_MEMORY);
        assert_non_null(strstr(llms_session_errmsg(s), "out of device memory"));
        assert_true(ctx->vk->used <= used);
        assert_int_equal(llms_session_n_tokens(s), 1);
        vk_debug_inject(ctx->vk, VK_FAULT_NONE, 0);
        assert_int_equal(llms_session_feed_tokens(s, toks + 1, N), LLMS_OK);
        assert_int_equal(llms_session_n_tokens(s), N + 1);
        float *want = malloc((size_t)V * sizeof *want);
        assert_non_null(want);
        cpu_logits(toks, N + 1, want, V);
        const float *got = llms_session_logits(s);
        double mx = 0, err = 0;
        for (int32_t i = 0; i < V; i++) {
            mx = fmax(mx, fabs(want[i]));
            err = fmax(err, fabs((double)want[i] - got[i]));
        }
        /* Float weights: only the summation order differs (as test_vulkan.c). */
        if (err > 2e-3 * fmax(1, mx)) fail_msg("staging %d: max |vk - cpu| = %g", staging, err);
        free(want);
        llms_session_destroy(s);
        llms_model_destroy(m);
        llms_context_destroy(ctx);
    }
    check_validation();
}

/* ---- cooperative matrices ------------------------------------------------- */

/* LLMS_VK_NO_COOPMAT and friends: '1' first means on, anything else off. */
static void test_env_flag(void **state) {
    (void)state;
    static const struct { const char *v; int on; } cases[] = {
        {"1", 1}, {"1 ", 1}, {"0", 0}, {"", 0}, {"yes", 0}, {"true", 0}, {" 1", 0}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        setenv("LLMS_VK_NO_COOPMAT", cases[k].v, 1);
        if (vk_env_flag("LLMS_VK_NO_COOPMAT") != cases[k].on) fail_msg("'%s' read wrongly", cases[k].v);
    }
    unsetenv("LLMS_VK_NO_COOPMAT");
    assert_int_equal(vk_env_flag("LLMS_VK_NO_COOPMAT"), 0);
}

/* A Vulkan context with the coopmat hooks set; its device. */
static vk_dev *cm_ctx(llms_context **ctx, int force, int corrupt) {
    vk_debug_coopmat(force, corrupt);
    llms_context_params cp;
    llms_context_params_init(&cp);
    cp.backend = LLMS_BACKEND_VULKAN;
    cp.log_fn = on_log;
    cp.log_level = LLMS_LOG_INFO;
    g_log[0] = 0;
    if (llms_context_create(&cp, ctx) != LLMS_OK) fail_msg("context: %s", llms_errmsg());
    assert_int_equal(llms_context_backend(*ctx), LLMS_BACKEND_VULKAN);
    return (*ctx)->vk;
}

/* lavapipe has no cooperative matrices, so a test hook sends the device
 * down the coopmat path with matmul.comp standing in for
 * matmul_coopmat.comp: the selection, the self-check, the fallback on a
 * mismatch or an error, and the switch all run here as on a GPU. */
static void test_coopmat_selection(void **state) {
    (void)state;
    need_device();
    llms_context *ctx;
    golden g = {0};
    int have_golden = golden_load(&g);

    /* Not forced: lavapipe lacks them, and says why. */
    vk_dev *d = cm_ctx(&ctx, 0, 0);
    if (vk_coopmat_lack(d->vi, d->phys)) {
        assert_int_equal(d->coopmat, 0);
        assert_non_null(strstr(d->coopmat_note, "no cooperative matrices"));
    }
    llms_context_destroy(ctx);

    /* Forced, a correct candidate: the self-check passes and prefill runs
     * through the selected shader, with the reference text. */
    d = cm_ctx(&ctx, 1, 0);
    if (!vk_coopmat_lack(d->vi, d->phys)) {
        print_message("skipping the forced cases: this device has cooperative matrices\n");
        llms_context_destroy(ctx);
        if (have_golden) cJSON_Delete(g.root);
        skip();
    }
    assert_int_equal(d->coopmat, 1);
    assert_int_equal(d->coopmat_failed, 0);
    assert_string_equal(d->coopmat_shader, "matmul");
    assert_non_null(strstr(d->coopmat_note, "self-check passed"));
    llms_context_destroy(ctx);
    if (have_golden) reference_text(LLMS_BACKEND_VULKAN, &g);

    /* A candidate that gets one element wrong: rejected, the portable
     * matmul kept, and a warning through the log callback. */
    char why[256];
    d = cm_ctx(&ctx, 1, 1);
    assert_int_equal(d->coopmat, 0);
    assert_int_equal(d->coopmat_failed, 1);
    assert_non_null(strstr(d->coopmat_note, "self-check failed"));
    if (!strstr(g_log, "self-check failed") || !strstr(g_log, "differs")) fail_msg("log: '%s'", g_log);
    assert_int_equal(vk_matmul_selfcheck(d, "matmul", 16, why, sizeof why), LLMS_ERR_BACKEND);
    assert_non_null(strstr(why, "differs from matmul"));
    vk_debug_coopmat(1, 0);
    assert_int_equal(vk_matmul_selfcheck(d, "matmul", 16, why, sizeof why), LLMS_OK);
    llms_context_destroy(ctx);
    vk_debug_coopmat(1, 1);
    if (have_golden) reference_text(LLMS_BACKEND_VULKAN, &g);   /* fell back: still the reference */

    /* LLMS_VK_NO_COOPMAT=1: off without a self-check; other values: on. */
    setenv("LLMS_VK_NO_COOPMAT", "1", 1);
    d = cm_ctx(&ctx, 1, 1);   /* corrupt too: no self-check ran, so no failure */
    assert_int_equal(d->coopmat, 0);
    assert_int_equal(d->coopmat_failed, 0);
    assert_non_null(strstr(d->coopmat_note, "LLMS_VK_NO_COOPMAT"));
    llms_context_destroy(ctx);
    setenv("LLMS_VK_NO_COOPMAT", "0", 1);
    d = cm_ctx(&ctx, 1, 0);
    assert_int_equal(d->coopmat, 1);
    llms_context_destroy(ctx);
    unsetenv("LLMS_VK_NO_COOPMAT");

    /* Unforced, the selection hook's mask takes them away like a device
     * that lacks them. */
    vk_debug_select(-1, VK_OPT_COOPMAT, 0);
    d = cm_ctx(&ctx, 0, 0);
    assert_int_equal(d->coopmat, 0);
    assert_non_null(strstr(d->coopmat_note, "no cooperative matrices"));
    llms_context_destroy(ctx);
    vk_debug_select(-1, 0, 0);

    /* Any error during the self-check also keeps the portable matmul:
     * out of device memory... */
    d = cm_ctx(&ctx, 1, 0);
    assert_int_equal(d->coopmat, 1);
    vk_debug_inject(d, VK_FAULT_OOM, 0);
    assert_int_equal(vk_coopmat_setup(d, NULL, 0), LLMS_OK);
    assert_int_equal(d->coopmat, 0);
    assert_int_equal(d->coopmat_failed, 1);
    if (!strstr(d->coopmat_note, "out of device memory")) fail_msg("note: %s", d->coopmat_note);
    vk_debug_inject(d, VK_FAULT_NONE, 0);
    assert_int_equal(vk_coopmat_setup(d, NULL, 0), LLMS_OK);
    assert_int_equal(d->coopmat, 1);
    /* ... while a device lost on the way is an error (nothing is left). */
    vk_debug_inject(d, VK_FAULT_DEVICE_LOST, 0);
    assert_int_equal(vk_coopmat_setup(d, NULL, 0), LLMS_ERR_DEVICE_LOST);
    assert_int_equal(d->coopmat, 0);
    llms_context_destroy(ctx);
    if (have_golden) cJSON_Delete(g.root);
    vk_debug_coopmat(0, 0);
    check_validation();
}

/* ---- out of device memory for the KV cache, under the scheduler ---------- */

/* Four greedy requests, each of them a few KV blocks (a short prompt and
 * up to SQ_MAX tokens). */
enum { SQ = 4, SQ_MAX = 40, SQ_BATCH = 64 };
static const char *const sq_prompts[SQ] = {"The robot", "Once upon a time", "A little girl", "The big dog"};

typedef struct sq_out {
    int32_t toks[SQ_MAX + 1];
    int n, done;
    int32_t type;
    llms_status status;
} sq_out;

static llms_scheduler *sq_sched(llms_model *m, llms_cache *cache) {
    llms_scheduler_params p;
    llms_scheduler_params_init(&p);
    p.max_batch_tokens = SQ_BATCH;
    p.cache = cache;
    p.aging_ms = 1u << 30;   /* order by priority and submission alone */
    llms_scheduler *S = NULL;
    assert_int_equal(llms_scheduler_create(m, &p, &S), LLMS_OK);
    return S;
}

static uint64_t sq_submit(llms_scheduler *S, const char *prompt, const int32_t *toks, size_t n_toks,
                          int32_t priority) {
    llms_sampling_params sp;
    llms_sampling_params_init(&sp);
    sp.temperature = 0;
    sp.max_tokens = SQ_MAX;
    llms_request_params rq;
    llms_request_params_init(&rq);
    rq.prompt = prompt;
    rq.prompt_len = prompt ? strlen(prompt) : 0;
    rq.tokens = toks;
    rq.n_tokens = n_toks;
    rq.flags = LLMS_REQUEST_MODEL_DEFAULTS;
    rq.sampling = &sp;
    rq.priority = priority;
    uint64_t id = 0;
    if (llms_scheduler_submit(S, &rq, &id) != LLMS_OK) fail_msg("submit: %s", llms_errmsg());
    return id;
}

static uint64_t kv_dev_bytes(llms_model *m);
static llms_model *g_peak_model;   /* sq_run records its device KV peak */
static uint64_t g_kv_peak;

/* Steps S until the n requests `ids` have ended, collecting their events. */
static void sq_run(llms_scheduler *S, const uint64_t *ids, int n, sq_out *o) {
    memset(o, 0, (size_t)n * sizeof *o);
    int ended = 0;
    for (int guard = 0; ended < n; guard++) {
        if (guard > 20000) fail_msg("the scheduler did not finish (%d of %d ended)", ended, n);
        llms_status st = llms_scheduler_step(S, NULL);
        if (st != LLMS_OK && st != LLMS_AGAIN) fail_msg("step: %d %s", (int)st, llms_errmsg());
        if (g_peak_model && kv_dev_bytes(g_peak_model) > g_kv_peak) g_kv_peak = kv_dev_bytes(g_peak_model);
        char buf[512];
        llms_event ev;
        memset(&ev, 0, sizeof ev);
        ev.struct_size = sizeof ev;
        ev.text_buf = buf;
        ev.text_cap = sizeof buf;
        while (llms_scheduler_poll(S, &ev, 0) == LLMS_OK) {
            int k = -1;
            for (int j = 0; j < n; j++)
                if (ids[j] == ev.request_id) k = j;
            assert_true(k >= 0);
            assert_false(o[k].done);
            if (ev.type == LLMS_EVENT_TOKEN) {
                assert_true(o[k].n <= SQ_MAX);
                o[k].toks[o[k].n++] = ev.token;
                continue;
            }
            if (ev.type == LLMS_EVENT_FINISHED && ev.token >= 0 && o[k].n <= SQ_MAX) o[k].toks[o[k].n++] = ev.token;
            o[k].done = 1;
            o[k].type = ev.type;
            o[k].status = ev.status;
            ended++;
        }
    }
}

static void sq_expect_same(const sq_out *got, const sq_out *want, int k) {
    if (got->type != LLMS_EVENT_FINISHED)
        fail_msg("request %d: event %d, status %d", k, got->type, (int)got->status);
    if (got->n != want->n || memcmp(got->toks, want->toks, (size_t)want->n * sizeof *want->toks))
        fail_msg("request %d: %d tokens, alone %d, or different tokens", k, got->n, want->n);
}

/* Each request alone, on an unconstrained device: the reference. */
static void sq_reference(llms_scheduler *S, sq_out *ref) {
    for (int q = 0; q < SQ; q++) {
        uint64_t id = sq_submit(S, sq_prompts[q], NULL, 0, 0);
        sq_run(S, &id, 1, &ref[q]);
        assert_int_equal(ref[q].type, LLMS_EVENT_FINISHED);
        assert_true(ref[q].n > KV_BLOCK_TOKENS);   /* two blocks at least */
    }
}

/* The four prompts submitted together and run to the end: each output
 * must be the one it gives alone (ref). */
static void sq_run_all(llms_scheduler *S, sq_out *got, const sq_out *ref) {
    uint64_t ids[SQ];
    for (int q = 0; q < SQ; q++) ids[q] = sq_submit(S, sq_prompts[q], NULL, 0, 0);
    sq_run(S, ids, SQ, got);
    for (int q = 0; q < SQ; q++) sq_expect_same(&got[q], &ref[q], q);
}

/* The device KV storage (bytes, every layer). */
static uint64_t kv_dev_bytes(llms_model *m) {
    vk_kv *kv = m->vk_kv;
    assert_non_null(kv);
    uint64_t b = 0;
    for (uint32_t l = 0; l < kv->n_layer; l++) b += (uint64_t)kv->layer_cap[l] * kv->slot_bytes;
    return b;
}

/* Fills the device so that the KV storage holds `slots` blocks and can
 * never grow: a session's passes of `chunk` tokens (SQ_BATCH in all) size
 * the scratch buffers for batches of `chunk` tokens (SQ_BATCH: the largest
 * batch) and grow the storage, then every later vkAllocateMemory fails. */
static void sq_fill_device(llms_context *ctx, llms_model *m, uint32_t slots, int chunk) {
    vk_kv *kv = m->vk_kv;
    llms_session *s;
    assert_int_equal(llms_session_create(m, NULL, &s), LLMS_OK);
    int32_t toks[SQ_BATCH];
    for (int i = 0; i < SQ_BATCH; i++) toks[i] = i ? 3 + (i * 31) % 400 : 1;
    for (int i = 0; i < SQ_BATCH; i += chunk)
        assert_int_equal(llms_session_feed_tokens(s, toks + i, (size_t)chunk), LLMS_OK);
    llms_session_destroy(s);
    assert_int_equal(kv->cap, slots);
    vk_debug_inject(ctx->vk, VK_FAULT_OOM, 0);
}

/* The device cannot grow the KV storage to what four concurrent requests
 * need (4 blocks of about 12): the scheduler preempts instead of failing
 * them, and every request's greedy output is the one it has alone. Once
 * it is idle the storage is given back (no prefix cache holds blocks). */
static void test_oom_kv_preempts(void **state) {
    (void)state;
    if (!have_device_and_model()) return;
    llms_context *ctx = make_ctx(LLMS_BACKEND_VULKAN);
    llms_model *m = load(ctx);
    llms_scheduler *S = sq_sched(m, NULL);
    sq_out ref[SQ], got[SQ];
    sq_reference(S, ref);
    sq_fill_device(ctx, m, SQ_BATCH / KV_BLOCK_TOKENS, SQ_BATCH);
    uint64_t full = kv_dev_bytes(m);
    g_peak_model = m;
    g_kv_peak = 0;
    sq_run_all(S, got, ref);
    g_peak_model = NULL;
    llms_scheduler_stats st;
    llms_scheduler_stats_init(&st);
    assert_int_equal(llms_scheduler_get_stats(S, &st), LLMS_OK);
    print_message("device KV of %u blocks: %llu preemptions\n", SQ_BATCH / KV_BLOCK_TOKENS,
                  (unsigned long long)st.preemptions);
    assert_true(st.preemptions > 0);
    assert_int_equal(st.requests_failed, 0);
    assert_int_equal(g_kv_peak, full);                /* it never grew */
    /* Idle, nothing cached: the device KV memory was given back. */
    assert_int_equal(kv_dev_bytes(m), 0);
    /* The memory back, a request grows the storage again. */
    vk_debug_inject(ctx->vk, VK_FAULT_NONE, 0);
    uint64_t id = sq_submit(S, sq_prompts[2], NULL, 0, 0);
    sq_run(S, &id, 1, got);
    sq_expect_same(&got[0], &ref[2], 2);
    llms_scheduler_destroy(S);
    llms_model_destroy(m);
    llms_context_destroy(ctx);
    check_validation();
}

/* A device out of memory while a forward pass grows its scratch buffers
 * (they grow with the batch): the scheduler preempts the batch's requests
 * instead of failing them and takes smaller batches from then on. The
 * scratch is sized by 8-token passes before the fault, the storage for 4
 * KV blocks; then the 4 prompts arrive together (a larger first batch).
 * Every request finishes with its output alone. */
static void test_oom_scratch_shrinks_batch(void **state) {
    (void)state;
    if (!have_device_and_model()) return;
    llms_context *ctx = make_ctx(LLMS_BACKEND_VULKAN);
    llms_model *m = load(ctx);
    llms_scheduler *S = sq_sched(m, NULL);
    sq_out ref[SQ], got[SQ];
    sq_reference(S, ref);
    sq_fill_device(ctx, m, SQ_BATCH / KV_BLOCK_TOKENS, 8);
    sq_run_all(S, got, ref);
    llms_scheduler_stats st;
    llms_scheduler_stats_init(&st);
    assert_int_equal(llms_scheduler_get_stats(S, &st), LLMS_OK);
    assert_int_equal(st.requests_failed, 0);
    assert_true(st.preemptions > 0);
    vk_debug_inject(ctx->vk, VK_FAULT_NONE, 0);
    llms_scheduler_destroy(S);
    llms_model_destroy(m);
    llms_context_destroy(ctx);
    check_validation();
}

/* A request whose KV cannot fit the device even alone (a prompt of five
 * blocks, four on the device) ends with an ERROR event carrying
 * DEVICE_MEMORY; a smaller one of lower priority, submitted with it, is
 * not lost and gives its output alone, and so does a later one. */
static void test_oom_kv_too_big(void **state) {
    (void)state;
    if (!have_device_and_model()) return;
    llms_context *ctx = make_ctx(LLMS_BACKEND_VULKAN);
    llms_model *m = load(ctx);
    llms_scheduler *S = sq_sched(m, NULL);
    sq_out ref[SQ], got[2];
    sq_reference(S, ref);
    sq_fill_device(ctx, m, SQ_BATCH / KV_BLOCK_TOKENS, SQ_BATCH);
    enum { BIG = 5 * KV_BLOCK_TOKENS };
    int32_t big[BIG];
    for (int i = 0; i < BIG; i++) big[i] = i ? 3 + (i * 17) % 400 : 1;
    uint64_t ids[2];
    ids[0] = sq_submit(S, NULL, big, BIG, 1);
    ids[1] = sq_submit(S, sq_prompts[1], NULL, 0, 0);
    sq_run(S, ids, 2, got);
    assert_int_equal(got[0].type, LLMS_EVENT_ERROR);
    assert_int_equal(got[0].status, LLMS_ERR_DEVICE_MEMORY);
    assert_int_equal(got[0].n, 0);
    sq_expect_same(&got[1], &ref[1], 1);
    llms_scheduler_stats st;
    llms_scheduler_stats_init(&st);
    assert_int_equal(llms_scheduler_get_stats(S, &st), LLMS_OK);
    assert_int_equal(st.requests_failed, 1);
    /* The host goes on: once the device has memory again, the same big
     * prompt runs, and so does a small request. */
    vk_debug_inject(ctx->vk, VK_FAULT_NONE, 0);
    ids[0] = sq_submit(S, NULL, big, BIG, 1);
    ids[1] = sq_submit(S, sq_prompts[3], NULL, 0, 0);
    sq_run(S, ids, 2, got);
    assert_int_equal(got[0].type, LLMS_EVENT_FINISHED);
    sq_expect_same(&got[1], &ref[3], 3);
    llms_scheduler_destroy(S);
    llms_model_destroy(m);
    llms_context_destroy(ctx);
    check_validation();
}

/* The device KV storage shrinks again: after a burst of concurrent
 * requests it grew to, the idle scheduler keeps only what the prefix cache
 * holds (copied into smaller buffers: the cached prompts then give the
 * same outputs), a cache clear gives back the rest, and later requests
 * grow it again with the same outputs. */
static void test_kv_trim(void **state) {
    (void)state;
    if (!have_device_and_model()) return;
    llms_context *ctx = make_ctx(LLMS_BACKEND_VULKAN);
    llms_model *m = load(ctx);
    sq_out ref[SQ], got[SQ];
    llms_scheduler *S = sq_sched(m, NULL);
    sq_reference(S, ref);
    llms_scheduler_destroy(S);
    assert_int_equal(kv_dev_bytes(m), 0);
    llms_cache *C;
    assert_int_equal(llms_cache_create(m, NULL, &C), LLMS_OK);
    S = sq_sched(m, C);

    g_peak_model = m;
    g_kv_peak = 0;
    sq_run_all(S, got, ref);
    uint64_t block = kv_block_bytes(&m->kv), idle = kv_dev_bytes(m), vk_used = ctx->vk->used;
    print_message("device KV: %llu blocks at the peak, %llu idle with the cache\n",
                  (unsigned long long)(g_kv_peak / block), (unsigned long long)(idle / block));
    assert_true(g_kv_peak >= 3 * SQ * block);
    assert_true(idle > 0);                 /* the cached prompts */
    assert_true(idle <= g_kv_peak / 4);
    assert_true(kv_pool_used_bytes(&m->kv) <= idle);

    /* The cached blocks survived the move: the prompts come from the
     * cache, with the same outputs. */
    llms_scheduler_stats st;
    llms_scheduler_stats_init(&st);
    assert_int_equal(llms_scheduler_get_stats(S, &st), LLMS_OK);
    uint64_t cached = st.cached_tokens;
    sq_run_all(S, got, ref);
    assert_int_equal(llms_scheduler_get_stats(S, &st), LLMS_OK);
    assert_true(st.cached_tokens > cached);

    /* A cache clear gives back the rest. */
    idle = kv_dev_bytes(m);
    vk_used = ctx->vk->used;
    assert_true(idle > 0);
    assert_int_equal(llms_cache_clear(C), LLMS_OK);
    assert_int_equal(kv_pool_used_bytes(&m->kv), 0);
    assert_int_equal(kv_dev_bytes(m), 0);
    assert_int_equal(ctx->vk->used, vk_used - idle);
    uint64_t id = sq_submit(S, sq_prompts[1], NULL, 0, 0);
    sq_run(S, &id, 1, got);
    g_peak_model = NULL;
    sq_expect_same(&got[0], &ref[1], 1);
    assert_true(g_kv_peak > 0);
    llms_scheduler_destroy(S);
    llms_cache_destroy(C);
    llms_model_destroy(m);
    llms_context_destroy(ctx);
    check_validation();
}

/* vk_kv_trim itself: with two blocks of a live session at the bottom of
 * sixteen, it truncates to the highest slot still needed, counting the
 * zeroing queued for two blocks allocated and freed since the last pass
 * (recorded by the next pass: the validation layer would see a fill past
 * the end), copies the live slots (the session then generates what a
 * fresh one does), and frees everything once nothing is used. */
static void greedy_more(llms_session *s, int32_t *ids, int n) {
    greedy(s, n);
    llms_step_result r;
    llms_step_result_init(&r);
    for (int i = 0; i < n; i++) {
        llms_status st = llms_session_step(s, &r);
        if (st != LLMS_TOKEN && st != LLMS_DONE) fail_msg("step: %d %s", (int)st, llms_errmsg());
        ids[i] = r.token;
        if (st == LLMS_DONE) {
            for (int j = i + 1; j < n; j++) ids[j] = -1;
            break;
        }
    }
}

static void test_kv_trim_slots(void **state) {
    (void)state;
    if (!have_device_and_model()) return;
    llms_context *ctx = make_ctx(LLMS_BACKEND_VULKAN);
    llms_model *m = load(ctx);
    vk_kv *kv = m->vk_kv;
    uint64_t slot = kv->slot_bytes * kv->n_layer;
    int32_t toks[7 * KV_BLOCK_TOKENS];
    for (int i = 0; i < 7 * KV_BLOCK_TOKENS; i++) toks[i] = i ? 3 + (i * 29) % 400 : 1;
    llms_session *a, *b[2];
    assert_int_equal(llms_session_create(m, NULL, &a), LLMS_OK);
    assert_int_equal(llms_session_feed_tokens(a, toks, 20), LLMS_OK);   /* slots 0, 1 */
    for (int i = 0; i < 2; i++) {                                        /* 2..15 */
        assert_int_equal(llms_session_create(m, NULL, &b[i]), LLMS_OK);
        assert_int_equal(llms_session_feed_tokens(b[i], toks, 7 * KV_BLOCK_TOKENS), LLMS_OK);
    }
    assert_int_equal(kv->cap, 16);
    vk_kv_trim(kv);                                  /* 16 of 16 in use: nothing */
    assert_int_equal(kv_dev_bytes(m), 16 * slot);
    llms_session_destroy(b[1]);
    vk_kv_trim(kv);                                  /* 9 of 16: nothing */
    assert_int_equal(kv_dev_bytes(m), 16 * slot);
    llms_session_destroy(b[0]);
    /* Two blocks taken and freed with no pass since: their zeroing waits. */
    kv_seq q = {0};
    assert_int_equal(kv_seq_reserve(&m->kv, &q, 2 * KV_BLOCK_TOKENS, 0), LLMS_OK);
    assert_int_equal(q.blocks[0]->slot, 2);
    assert_int_equal(q.blocks[1]->slot, 3);
    kv_seq_free(&m->kv, &q);
    assert_int_equal(kv->n_ops, 2);
    vk_kv_trim(kv);
    assert_int_equal(kv->cap, 4);
    assert_int_equal(kv_dev_bytes(m), 4 * slot);
    int32_t got[12], want[12];
    greedy_more(a, got, 12);                          /* grows again past 4 */
    check_validation();
    llms_session *c;
    assert_int_equal(llms_session_create(m, NULL, &c), LLMS_OK);
    assert_int_equal(llms_session_feed_tokens(c, toks, 20), LLMS_OK);
    greedy_more(c, want, 12);
    assert_memory_equal(got, want, sizeof got);
    llms_session_destroy(c);
    llms_session_destroy(a);
    vk_kv_trim(kv);
    assert_int_equal(kv_dev_bytes(m), 0);
    assert_int_equal(kv->cap, 0);
    /* And from nothing again. */
    assert_int_equal(llms_session_create(m, NULL, &c), LLMS_OK);
    assert_int_equal(llms_session_feed_tokens(c, toks, 20), LLMS_OK);
    greedy_more(c, got, 12);
    assert_memory_equal(got, want, sizeof got);
    llms_session_destroy(c);
    llms_model_destroy(m);
    llms_context_destroy(ctx);
    check_validation();
}

/* A failed test leaves no hook armed for the next. */
static int reset_hooks(void **state) {
    (void)state;
    g_peak_model = NULL;
    vk_debug_select(-1, 0, 0);
    unsetenv("LLMS_VK_NO_HOST_MAP");
    vk_debug_coopmat(0, 0);
    unsetenv("LLMS_VK_NO_COOPMAT");
    return 0;
}

int main(void) {
    if (!getenv("LLMS_VK_VALIDATION") &&
        access("/usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json", R_OK) == 0)
        setenv("LLMS_VK_VALIDATION", "1", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_select_policy, reset_hooks),
        cmocka_unit_test_teardown(test_auto_real_devices, reset_hooks),
        cmocka_unit_test_teardown(test_auto_gpu_branch, reset_hooks),
        cmocka_unit_test_teardown(test_missing_feature, reset_hooks),
        cmocka_unit_test_teardown(test_env_flag, reset_hooks),
        cmocka_unit_test_teardown(test_coopmat_selection, reset_hooks),
        cmocka_unit_test_teardown(test_model_without_shaders, reset_hooks),
        cmocka_unit_test_teardown(test_device_lost_mid_generation, reset_hooks),
        cmocka_unit_test_teardown(test_device_lost_scheduler, reset_hooks),
        cmocka_unit_test_teardown(test_device_lost_during_upload, reset_hooks),
        cmocka_unit_test_teardown(test_oom_model_upload, reset_hooks),
        cmocka_unit_test_teardown(test_oom_during_pass, reset_hooks),
        cmocka_unit_test_teardown(test_oom_kv_preempts, reset_hooks),
        cmocka_unit_test_teardown(test_oom_scratch_shrinks_batch, reset_hooks),
        cmocka_unit_test_teardown(test_oom_kv_too_big, reset_hooks),
        cmocka_unit_test_teardown(test_kv_trim, reset_hooks),
        cmocka_unit_test_teardown(test_kv_trim_slots, reset_hooks),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
