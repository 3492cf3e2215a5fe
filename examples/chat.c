/* chat --model FILE [--system TEXT] [--template NAME] [--max-tokens N]
 *      [--temperature T] [--seed S] [--threads N]
 * An interactive chat in the terminal: each line read is a user message; the
 * whole conversation is rendered with the model's chat template and the
 * reply streams to stdout. `/quit` or end of input ends it. Works with stdin
 * piped (no prompt is printed then). A model without a chat template is an
 * error unless --template names a family ("chatml", "llama3", ...). */
#include <unistd.h>

#include "common/cli.h"

static void usage(const char *p) {
    fprintf(stderr,
            "usage: %s --model FILE [--system TEXT] [--template NAME] [--max-tokens N]\n"
            "          [--temperature T] [--seed S] [--threads N]\n", p);
    exit(2);
}

/* The conversation so far; strings are heap copies owned here. */
typedef struct {
    llms_chat_message *m;
    size_t n, cap;
} history;

static int history_add(history *h, const char *role, const char *content, size_t len) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 8;
        llms_chat_message *m = realloc(h->m, cap * sizeof *m);
        if (!m) return 0;
        h->m = m;
        h->cap = cap;
    }
    char *c = malloc(len + 1);
    if (!c) return 0;
    memcpy(c, content, len);
    c[len] = 0;
    h->m[h->n].role = role;
    h->m[h->n].content = c;
    h->n++;
    return 1;
}

static llms_status render(const llms_model *m, const char *tmpl, const history *h, char **out) {
    size_t len = 0, cap = 4096;
    for (int tries = 0; tries < 2; tries++) {
        char *buf = malloc(cap);
        if (!buf) return LLMS_ERR_NO_MEMORY;
        llms_status st = llms_chat_apply_template(m, tmpl, h->m, h->n, 1, buf, cap, &len);
        if (st == LLMS_OK) { *out = buf; return st; }
        free(buf);
        if (st != LLMS_ERR_BUFFER_TOO_SMALL) return st;
        cap = len + 1;
    }
    return LLMS_ERR_INTERNAL;
}

/* Feeds the rendered conversation, reusing the session's tokens up to the
 * first difference: each turn evaluates only the new messages. */
static llms_status feed_conversation(const llms_model *m, llms_session *s, const char *text) {
    size_t n = 0, len = strlen(text);
    uint32_t flags = LLMS_TOKENIZE_MODEL_DEFAULTS | LLMS_TOKENIZE_PARSE_SPECIAL;
    llms_status st = llms_tokenize(m, text, len, flags, NULL, 0, &n);
    if (st != LLMS_ERR_BUFFER_TOO_SMALL && st != LLMS_OK) return st;
    int32_t *tok = malloc((n ? n : 1) * sizeof *tok);
    if (!tok) return LLMS_ERR_NO_MEMORY;
    if ((st = llms_tokenize(m, text, len, flags, tok, n, &n)) == LLMS_OK) {
        const int32_t *have = llms_session_tokens(s);
        uint32_t nh = llms_session_n_tokens(s), keep = 0;
        while (keep < nh && keep < n && have[keep] == tok[keep]) keep++;
        /* Keep one token back so there are fresh logits to sample from. */
        if (keep == n && keep > 0) keep--;
        if ((st = llms_session_truncate(s, keep)) == LLMS_OK)
            st = llms_session_feed_tokens(s, tok + keep, n - keep);
    }
    free(tok);
    return st;
}

int main(int argc, char **argv) {
    const char *path = NULL, *system = NULL, *tmpl = NULL;
    llms_sampling_params sp;
    llms_sampling_params_init(&sp);
    sp.max_tokens = 256;
    llms_context_params cp;
    llms_context_params_init(&cp);
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if ((v = cli_opt(argc, argv, &i, "--model"))) path = v;
        else if ((v = cli_opt(argc, argv, &i, "--system"))) system = v;
        else if ((v = cli_opt(argc, argv, &i, "--template"))) tmpl = v;
        else if ((r = cli_common_opt(argc, argv, &i, &sp, &cp)) != 0) {
            if (r < 0) usage(argv[0]);
        } else usage(argv[0]);
    }
    if (!path) usage(argv[0]);

    llms_context *ctx = NULL;
    llms_model *m = NULL;
    llms_session *s = NULL;
    history h = {0};
    char *line = NULL, *prompt = NULL, *reply = NULL;
    size_t line_cap = 0;
    int rc = 1;
    llms_status st;
    if ((st = llms_context_create(&cp, &ctx))) { cli_report(argv[0], "context", st); return 1; }
    if ((st = llms_model_load(ctx, path, NULL, &m))) { cli_report(argv[0], path, st); goto out; }
    if (!tmpl && !llms_model_chat_template(m)) {
        fprintf(stderr, "%s: %s has no chat template (tokenizer.chat_template); "
                        "name one with --template chatml|llama2|llama3|mistral|phi3|gemma|zephyr\n",
                argv[0], path);
        rc = 3;
        goto out;
    }
    if ((st = llms_session_create(m, NULL, &s))) { cli_report(argv[0], "session", st); goto out; }
    if (system && !history_add(&h, "system", system, strlen(system))) goto oom;

    int interactive = isatty(STDIN_FILENO);
    for (;;) {
        if (interactive) { fputs("> ", stdout); fflush(stdout); }
        ssize_t n = getline(&line, &line_cap, stdin);
        if (n < 0) break;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (!strcmp(line, "/quit")) break;
        if (n == 0) continue;
        if (!history_add(&h, "user", line, (size_t)n)) goto oom;

        free(prompt);
        prompt = NULL;
        if ((st = render(m, tmpl, &h, &prompt))) { cli_report(argv[0], "chat template", st); goto out; }
        if ((st = feed_conversation(m, s, prompt))) { cli_report(argv[0], "prompt", st); goto out; }
        if ((st = llms_session_generate_begin(s, &sp))) { cli_report(argv[0], "sampling", st); goto out; }

        size_t rlen = 0, rcap = 0;
        llms_step_result r;
        llms_step_result_init(&r);
        while ((st = llms_session_step(s, &r)) == LLMS_TOKEN || st == LLMS_DONE) {
            fwrite(r.text, 1, r.text_len, stdout);
            fflush(stdout);
            if (rlen + r.text_len + 1 > rcap) {
                rcap = (rlen + r.text_len + 1) * 2;
                char *nr = realloc(reply, rcap);
                if (!nr) goto oom;
                reply = nr;
            }
            memcpy(reply + rlen, r.text, r.text_len);
            rlen += r.text_len;
            if (st == LLMS_DONE) break;
        }
        fputc('\n', stdout);
        if (st < 0) { cli_report(argv[0], "generate", st); goto out; }
        if (!history_add(&h, "assistant", reply ? reply : "", rlen)) goto oom;
    }
    rc = 0;
    goto out;
oom:
    fprintf(stderr, "%s: out of memory\n", argv[0]);
out:
    for (size_t i = 0; i < h.n; i++) free((char *)h.m[i].content);
    free(h.m);
    free(line);
    free(prompt);
    free(reply);
    llms_session_destroy(s);
    llms_model_destroy(m);
    llms_context_destroy(ctx);
    return rc;
}
