/* llms-generate --model FILE --prompt TEXT [--max-tokens N] [--temperature T]
 *               [--top-k K] [--top-p P] [--min-p P] [--seed S] [--threads N]
 *               [--stop STRING] [--backend auto|cpu|vulkan]
 * Writes only the generated text to stdout as it is produced; timing goes
 * to stderr. BOS is added as the model's metadata says. */
#include <time.h>

#include "common/cli.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void usage(const char *p) {
    fprintf(stderr,
            "usage: %s --model FILE --prompt TEXT [--max-tokens N] [--temperature T] [--top-k K]\n"
            "          [--top-p P] [--min-p P] [--seed S] [--threads N] [--stop STRING]\n"
            "          [--backend auto|cpu|vulkan]\n", p);
    exit(2);
}

int main(int argc, char **argv) {
    const char *path = NULL, *prompt = NULL, *stop = NULL;
    llms_sampling_params sp;
    llms_sampling_params_init(&sp);
    sp.max_tokens = 128;
    llms_context_params cp;
    llms_context_params_init(&cp);
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if ((v = cli_opt(argc, argv, &i, "--model"))) path = v;
        else if ((v = cli_opt(argc, argv, &i, "--prompt"))) prompt = v;
        else if ((v = cli_opt(argc, argv, &i, "--stop"))) stop = v;
        else if ((r = cli_common_opt(argc, argv, &i, &sp, &cp)) != 0) {
            if (r < 0) usage(argv[0]);
        } else usage(argv[0]);
    }
    if (!path || !prompt) usage(argv[0]);
    if (stop) { sp.stop = &stop; sp.n_stop = 1; }

    llms_context *ctx = NULL;
    llms_model *m = NULL;
    llms_session *s = NULL;
    int rc = 1;
    llms_status st;
    if ((st = llms_context_create(&cp, &ctx))) { cli_report(argv[0], "context", st); return 1; }
    double t0 = now_s();
    if ((st = llms_model_load(ctx, path, NULL, &m))) { cli_report(argv[0], path, st); goto out; }
    if ((st = llms_session_create(m, NULL, &s))) { cli_report(argv[0], "session", st); goto out; }
    double t1 = now_s();
    if ((st = llms_session_feed_text(s, prompt, strlen(prompt), LLMS_TOKENIZE_MODEL_DEFAULTS))) {
        cli_report(argv[0], "prompt", st);
        goto out;
    }
    uint32_t n_prompt = llms_session_n_tokens(s);
    double t2 = now_s();
    if ((st = llms_session_generate_begin(s, &sp))) { cli_report(argv[0], "sampling", st); goto out; }
    llms_step_result r;
    llms_step_result_init(&r);
    uint32_t n_gen = 0;
    while ((st = llms_session_step(s, &r)) == LLMS_TOKEN || st == LLMS_DONE) {
        fwrite(r.text, 1, r.text_len, stdout);
        fflush(stdout);
        if (st == LLMS_DONE) break;
        n_gen++;
    }
    if (st < 0) { cli_report(argv[0], "generate", st); goto out; }
    double t3 = now_s();
    static const char *reasons[] = {"none", "end of generation", "stop string", "token limit",
                                    "context full", "error", "cancelled", "timeout"};
    fprintf(stderr, "\n[load %.2f s | prompt %u tokens in %.3f s (%.1f tok/s) | generated %u tokens in %.3f s "
                    "(%.1f tok/s) | finish: %s]\n",
            t1 - t0, n_prompt, t2 - t1, n_prompt / (t2 - t1 > 0 ? t2 - t1 : 1e-9), n_gen, t3 - t2,
            n_gen / (t3 - t2 > 0 ? t3 - t2 : 1e-9),
            r.finish_reason >= 0 && r.finish_reason < 8 ? reasons[r.finish_reason] : "?");
    rc = 0;
out:
    llms_session_destroy(s);
    llms_model_destroy(m);
    llms_context_destroy(ctx);
    return rc;
}
