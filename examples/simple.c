/* simple: the shortest complete program that loads a model and streams a
 * completion (the README's example, kept identical to it). */
#include <llmserve.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s MODEL.gguf PROMPT\n", argv[0]); return 2; }
    llms_context *ctx = NULL;
    llms_model *model = NULL;
    llms_session *session = NULL;
    llms_status st;
    if ((st = llms_context_create(NULL, &ctx)) ||
        (st = llms_model_load(ctx, argv[1], NULL, &model)) ||
        (st = llms_session_create(model, NULL, &session)) ||
        (st = llms_session_feed_text(session, argv[2], strlen(argv[2]), LLMS_TOKENIZE_MODEL_DEFAULTS)))
        goto out;

    llms_sampling_params sp;
    llms_sampling_params_init(&sp);          /* defaults: temperature 0.8, top-k 40, ... */
    sp.max_tokens = 64;
    if ((st = llms_session_generate_begin(session, &sp))) goto out;

    llms_step_result r;
    llms_step_result_init(&r);
    while ((st = llms_session_step(session, &r)) == LLMS_TOKEN || st == LLMS_DONE) {
        fwrite(r.text, 1, r.text_len, stdout);   /* never splits a UTF-8 character */
        fflush(stdout);
        if (st == LLMS_DONE) { st = LLMS_OK; break; }
    }
out:
    if (st < 0) fprintf(stderr, "error: %s (%s)\n", llms_status_string(st), llms_errmsg());
    llms_session_destroy(session);
    llms_model_destroy(model);
    llms_context_destroy(ctx);
    return st < 0;
}
