/* batch --model FILE [--requests N] [--concurrency C] [--prompt TEXT]
 *       [--max-tokens N] [--temperature T] [--threads N] [--backend auto|cpu|vulkan]
 * Runs N requests through one scheduler (its own worker thread batches
 * them), keeping C in flight, and prints the throughput and the latency
 * percentiles (time to first token, end-to-end) when all have ended.
 * Exits non-zero if any request fails. */
#include <time.h>

#include "common/cli.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void usage(const char *p) {
    fprintf(stderr,
            "usage: %s --model FILE [--requests N] [--concurrency C] [--prompt TEXT]\n"
            "          [--max-tokens N] [--temperature T] [--threads N] [--backend auto|cpu|vulkan]\n",
            p);
    exit(2);
}

typedef struct {
    double submitted, first_token, ended;
} req_time;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of n sorted values. */
static double percentile(const double *v, size_t n, double p) {
    if (!n) return 0;
    size_t k = (size_t)(p / 100.0 * n + 0.999999);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return v[k - 1];
}

static void print_latency(const char *name, double *v, size_t n) {
    qsort(v, n, sizeof *v, cmp_double);
    printf("%-4s ms: p50 %.2f  p90 %.2f  p99 %.2f  (max %.2f)\n", name,
           percentile(v, n, 50) * 1e3, percentile(v, n, 90) * 1e3, percentile(v, n, 99) * 1e3,
           n ? v[n - 1] * 1e3 : 0.0);
}

int main(int argc, char **argv) {
    const char *path = NULL, *prompt = "Once upon a time";
    long n_req = 32, conc = 8;
    llms_sampling_params sp;
    llms_sampling_params_init(&sp);
    sp.max_tokens = 64;
    llms_context_params cp;
    llms_context_params_init(&cp);
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if ((v = cli_opt(argc, argv, &i, "--model"))) path = v;
        else if ((v = cli_opt(argc, argv, &i, "--prompt"))) prompt = v;
        else if ((v = cli_opt(argc, argv, &i, "--requests"))) {
            if (!cli_long(v, 1, 1 << 24, &n_req)) usage(argv[0]);
        } else if ((v = cli_opt(argc, argv, &i, "--concurrency"))) {
            if (!cli_long(v, 1, 1 << 16, &conc)) usage(argv[0]);
        } else if ((r = cli_common_opt(argc, argv, &i, &sp, &cp)) != 0) {
            if (r < 0) usage(argv[0]);
        } else usage(argv[0]);
    }
    if (!path) usage(argv[0]);
    if (conc > n_req) conc = n_req;

    llms_context *ctx = NULL;
    llms_model *m = NULL;
    llms_scheduler *sched = NULL;
    req_time *times = calloc((size_t)n_req, sizeof *times);
    double *ttft = calloc((size_t)n_req, sizeof *ttft), *e2e = calloc((size_t)n_req, sizeof *e2e);
    size_t cap = 256;
    char *text = malloc(cap);
    int rc = 1;
    llms_status st;
    if (!times || !ttft || !e2e || !text) { fprintf(stderr, "%s: out of memory\n", argv[0]); goto out; }
    if ((st = llms_context_create(&cp, &ctx))) { cli_report(argv[0], "context", st); goto out; }
    if ((st = llms_model_load(ctx, path, NULL, &m))) { cli_report(argv[0], path, st); goto out; }

    llms_scheduler_params schp;
    llms_scheduler_params_init(&schp);
    schp.flags = LLMS_SCHEDULER_OWN_THREAD;
    if ((uint32_t)conc > schp.max_running) schp.max_running = (uint32_t)conc;
    if ((uint32_t)conc > schp.queue_capacity) schp.queue_capacity = (uint32_t)conc;
    if ((st = llms_scheduler_create(m, &schp, &sched))) { cli_report(argv[0], "scheduler", st); goto out; }

    llms_request_params rp;
    llms_request_params_init(&rp);
    rp.flags = LLMS_REQUEST_MODEL_DEFAULTS;
    rp.prompt = prompt;
    rp.prompt_len = strlen(prompt);
    rp.sampling = &sp;

    long next = 0, ended = 0, in_flight = 0, failed = 0, n_ttft = 0;
    uint64_t gen_tokens = 0, prompt_tokens = 0;
    double t0 = now_s();
    while (ended < n_req) {
        /* Keep `conc` requests in flight; on BUSY, wait for an event first. */
        while (next < n_req && in_flight < conc) {
            uint64_t id;
            rp.user_tag = (uint64_t)next;
            times[next].submitted = now_s();
            st = llms_scheduler_submit(sched, &rp, &id);
            if (st == LLMS_ERR_BUSY) break;
            if (st) { cli_report(argv[0], "submit", st); goto out; }
            next++;
            in_flight++;
        }
        llms_event ev;
        memset(&ev, 0, sizeof ev);
        ev.struct_size = sizeof ev;
        ev.text_buf = text;
        ev.text_cap = cap;
        st = llms_scheduler_poll(sched, &ev, 1000);
        if (st == LLMS_AGAIN) continue;
        if (st == LLMS_ERR_BUFFER_TOO_SMALL) {
            char *bigger = realloc(text, ev.text_len + 1);
            if (!bigger) { fprintf(stderr, "%s: out of memory\n", argv[0]); goto out; }
            text = bigger;
            cap = ev.text_len + 1;
            continue;
        }
        if (st) { cli_report(argv[0], "poll", st); goto out; }
        if (ev.user_tag >= (uint64_t)n_req) continue;
        req_time *t = &times[ev.user_tag];
        double now = now_s();
        if (ev.type == LLMS_EVENT_TOKEN) {
            if (!t->first_token) t->first_token = now;
            continue;
        }
        /* A terminal event. */
        t->ended = now;
        in_flight--;
        ended++;
        if (ev.type == LLMS_EVENT_ERROR || ev.status != LLMS_OK) {
            fprintf(stderr, "%s: request %llu: %s\n", argv[0], (unsigned long long)ev.request_id,
                    llms_status_string(ev.status));
            failed++;
            continue;
        }
        if (t->first_token) ttft[n_ttft++] = t->first_token - t->submitted;
        e2e[ended - failed - 1] = t->ended - t->submitted;
        gen_tokens += ev.completion_tokens;
        prompt_tokens += ev.prompt_tokens;
    }
    double wall = now_s() - t0;
    size_t ok = (size_t)(n_req - failed);
    printf("requests: %ld ok, %ld failed, concurrency %ld, %.3f s\n", (long)ok, failed, conc, wall);
    printf("tokens: %llu prompt, %llu generated\n", (unsigned long long)prompt_tokens,
           (unsigned long long)gen_tokens);
    printf("throughput: %.1f tokens/s generated, %.2f requests/s\n",
           gen_tokens / (wall > 0 ? wall : 1e-9), ok / (wall > 0 ? wall : 1e-9));
    print_latency("ttft", ttft, (size_t)n_ttft);
    print_latency("e2e", e2e, ok);
    rc = failed ? 1 : 0;
out:
    llms_scheduler_destroy(sched);
    llms_model_destroy(m);
    llms_context_destroy(ctx);
    free(times);
    free(ttft);
    free(e2e);
    free(text);
    return rc;
}
