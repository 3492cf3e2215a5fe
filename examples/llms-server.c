/* llms-server --model FILE [--host H] [--port N] [--api-keys FILE] [--threads N]
 *             [--chat-template NAME] [--model-name NAME] [--queue-capacity N]
 *             [--max-body BYTES] [--backend auto|cpu|vulkan]
 *
 * An OpenAI-compatible HTTP server over the library's scheduler, built on
 * libmicrohttpd (HTTP) and cJSON (JSON):
 *   POST /v1/completions, POST /v1/chat/completions (stream: true gives
 *   server-sent events ending in "data: [DONE]"), GET /v1/models,
 *   GET /health, GET /metrics (the scheduler's Prometheus text).
 *
 * Concurrency model: one scheduler with its own worker thread runs every
 * request; its event callback appends each request's text to a per-request
 * job (mutex + condition variable). libmicrohttpd runs a thread per
 * connection, so a connection may block on its job: non-streaming requests
 * wait in the access handler, streaming ones in the response's content
 * reader. While waiting they check the socket for a hang-up, so a client
 * that goes away has its request cancelled at once rather than when the
 * next write fails.
 *
 * API keys (--api-keys FILE): lines "KEY TENANT [max_concurrent]
 * [tokens_per_minute]"; '#' starts a comment. Each tenant is registered
 * with the scheduler. The scheduler queues requests above a tenant's
 * max_concurrent rather than refusing them, so the server also counts each
 * tenant's requests in flight and answers 429 above the limit: a client
 * learns at once that it is over its share instead of holding a connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "common/cli.h"

/* ---- configuration and shared state ------------------------------------- */

typedef struct tenant_slot {
    char *name;
    uint32_t max_concurrent;      /* 0 = no limit */
    uint32_t tokens_per_minute;
    uint32_t inflight;            /* guarded by g.lock */
} tenant_slot;

typedef struct api_key {
    char *key;
    tenant_slot *tenant;
} api_key;

static struct {
    llms_model *model;
    llms_scheduler *sched;
    const char *model_name;
    const char *chat_template;    /* --chat-template, or NULL for the model's */
    size_t max_body;
    api_key *keys;
    size_t n_keys;
    tenant_slot *tenants;
    size_t n_tenants;
    tenant_slot open_tenant;      /* the default tenant when no keys are configured */
    pthread_mutex_t lock;
    uint64_t next_id;
    atomic_int stopping;          /* set once at shutdown; read by connection threads */
} g = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ---- jobs: one scheduler request, shared by the event callback and the
 * connection (two references; the last one frees it) --------------------- */

typedef struct job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *text;                   /* all text generated so far */
    size_t len, cap;
    size_t *ends;                 /* end offset of each event's text: one SSE chunk each */
    size_t n_ends, cap_ends;
    int finished;
    int32_t finish_reason;
    llms_status status;
    uint32_t prompt_tokens, completion_tokens;
    uint64_t id;                  /* scheduler request id, 0 until submitted */
    int refs;
} job;

static job *job_new(void) {
    job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_mutex_init(&j->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);
    j->refs = 2;
    return j;
}

static void job_unref(job *j) {
    pthread_mutex_lock(&j->mu);
    int last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last) return;
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j->text);
    free(j->ends);
    free(j);
}

/* Scheduler thread: must be quick, it holds up every other request. */
static void on_event(void *user, const llms_event *ev) {
    (void)user;
    job *j = (job *)(uintptr_t)ev->user_tag;
    pthread_mutex_lock(&j->mu);
    if (ev->text_len) {
        if (j->len + ev->text_len + 1 > j->cap) {
            size_t nc = (j->len + ev->text_len + 1) * 2;
            char *p = realloc(j->text, nc);
            if (p) { j->text = p; j->cap = nc; }
        }
        if (j->len + ev->text_len + 1 <= j->cap) {
            memcpy(j->text + j->len, ev->text_buf, ev->text_len);
            j->len += ev->text_len;
            j->text[j->len] = 0;
            if (j->n_ends == j->cap_ends) {
                size_t nc = j->cap_ends ? j->cap_ends * 2 : 64;
                size_t *p = realloc(j->ends, nc * sizeof *p);
                if (p) { j->ends = p; j->cap_ends = nc; }
            }
            /* Without room the text joins the next chunk: nothing is lost. */
            if (j->n_ends < j->cap_ends) j->ends[j->n_ends++] = j->len;
        }
    }
    int terminal = ev->type == LLMS_EVENT_FINISHED || ev->type == LLMS_EVENT_ERROR;
    if (terminal) {
        j->finished = 1;
        j->finish_reason = ev->finish_reason;
        j->status = ev->type == LLMS_EVENT_ERROR && !ev->status ? LLMS_ERR_INTERNAL : ev->status;
        j->prompt_tokens = ev->prompt_tokens;
        j->completion_tokens = ev->completion_tokens;
    }
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (terminal) job_unref(j);   /* the scheduler's reference */
}

/* ---- connections --------------------------------------------------------- */

enum { KIND_COMPLETION = 1, KIND_CHAT = 2 };

typedef struct conn {
    char *body;
    size_t len;
    int too_large;
    int responded;                /* a response was queued before the body ended */
    job *j;
    tenant_slot *tenant;          /* holds one in-flight slot when non-NULL */
    int kind, stream;
    char id[48];
    long created;
    int fd;
    /* streaming state */
    size_t sent_text;             /* bytes of j->text already sent */
    size_t sent_ends;             /* entries of j->ends already sent */
    int phase;                    /* 0 = role chunk due (chat), 1 = content, 2 = all sent */
    char *out;                    /* formatted bytes waiting for the reader */
    size_t out_len, out_off;
} conn;

/* A hang-up on the client's socket (the peer closed or reset it). */
static int client_gone(int fd) {
    if (fd < 0) return 0;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static void release_tenant(conn *c) {
    if (!c->tenant) return;
    pthread_mutex_lock(&g.lock);
    c->tenant->inflight--;
    pthread_mutex_unlock(&g.lock);
    c->tenant = NULL;
}

/* ---- responses ----------------------------------------------------------- */

static enum MHD_Result send_text(struct MHD_Connection *mc, unsigned code, const char *ctype, char *text,
                                 const char *retry_after) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) { free(text); return MHD_NO; }
    MHD_add_response_header(r, "Content-Type", ctype);
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    if (code == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result ret = MHD_queue_response(mc, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *mc, unsigned code, cJSON *obj, const char *retry_after) {
    char *s = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!s) return MHD_NO;
    return send_text(mc, code, "application/json", s, retry_after);
}

/* OpenAI's error body: {"error": {"message", "type", "param", "code"}}. */
static enum MHD_Result send_error(struct MHD_Connection *mc, unsigned code, const char *type, const char *errcode,
                                  const char *message, const char *retry_after) {
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddNullToObject(e, "param");
    if (errcode) cJSON_AddStringToObject(e, "code", errcode);
    else cJSON_AddNullToObject(e, "code");
    return send_json(mc, code, root, retry_after);
}

static enum MHD_Result bad_request(struct MHD_Connection *mc, const char *message) {
    return send_error(mc, 400, "invalid_request_error", NULL, message, NULL);
}

static const char *finish_name(int32_t reason) {
    switch (reason) {
    case LLMS_FINISH_EOG: case LLMS_FINISH_STOP: return "stop";
    case LLMS_FINISH_LENGTH: case LLMS_FINISH_CONTEXT_FULL: return "length";
    case LLMS_FINISH_CANCELLED: return "cancelled";
    case LLMS_FINISH_TIMEOUT: return "timeout";
    default: return "error";
    }
}

static cJSON *response_head(const conn *c, const char *object) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", c->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)c->created);
    cJSON_AddStringToObject(o, "model", g.model_name);
    return o;
}

/* One streamed choice: `text` (may be NULL) and the finish reason (NULL while
 * streaming), in the completion or chat-chunk shape. */
static char *stream_chunk(const conn *c, const char *text, size_t len, const char *finish, int role) {
    cJSON *o = response_head(c, c->kind == KIND_CHAT ? "chat.completion.chunk" : "text_completion");
    cJSON *ch = cJSON_AddArrayToObject(o, "choices"), *x = cJSON_CreateObject();
    cJSON_AddItemToArray(ch, x);
    cJSON_AddNumberToObject(x, "index", 0);
    char *t = malloc(len + 1);
    if (t) { if (len) memcpy(t, text, len); t[len] = 0; }
    if (c->kind == KIND_CHAT) {
        cJSON *d = cJSON_AddObjectToObject(x, "delta");
        if (role) cJSON_AddStringToObject(d, "role", "assistant");
        if (text || role) cJSON_AddStringToObject(d, "content", t ? t : "");
    } else {
        cJSON_AddStringToObject(x, "text", t ? t : "");
        cJSON_AddNullToObject(x, "logprobs");
    }
    free(t);
    if (finish) cJSON_AddStringToObject(x, "finish_reason", finish);
    else cJSON_AddNullToObject(x, "finish_reason");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static void out_append(conn *c, const char *prefix, const char *s, const char *suffix) {
    size_t a = strlen(prefix), b = s ? strlen(s) : 0, d = strlen(suffix);
    char *p = realloc(c->out, c->out_len + a + b + d);
    if (!p) return;
    c->out = p;
    memcpy(p + c->out_len, prefix, a);
    if (b) memcpy(p + c->out_len + a, s, b);
    memcpy(p + c->out_len + a + b, suffix, d);
    c->out_len += a + b + d;
}

/* Streaming body: waits for the job's text and sends it as SSE chunks. */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    conn *c = cls;
    for (;;) {
        if (c->out_off < c->out_len) {
            size_t n = c->out_len - c->out_off < max ? c->out_len - c->out_off : max;
            memcpy(buf, c->out + c->out_off, n);
            c->out_off += n;
            if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
            return (ssize_t)n;
        }
        if (c->phase == 2) return MHD_CONTENT_READER_END_OF_STREAM;
        if (client_gone(c->fd)) return MHD_CONTENT_READER_END_WITH_ERROR;  /* cancelled on completion */
        if (c->phase == 0) {
            char *s = stream_chunk(c, NULL, 0, NULL, 1);
            out_append(c, "data: ", s, "\n\n");
            free(s);
            c->phase = 1;
            continue;
        }
        job *j = c->j;
        pthread_mutex_lock(&j->mu);
        if (j->len == c->sent_text && !j->finished) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += 100 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
            pthread_cond_timedwait(&j->cv, &j->mu, &ts);
        }
        /* One chunk per token event, as clients expect from a stream, even
         * when several arrived while the previous write went out. */
        while (c->sent_text < j->len) {
            size_t end = j->len;
            while (c->sent_ends < j->n_ends && j->ends[c->sent_ends] <= c->sent_text) c->sent_ends++;
            if (c->sent_ends < j->n_ends) end = j->ends[c->sent_ends++];
            char *s = stream_chunk(c, j->text + c->sent_text, end - c->sent_text, NULL, 0);
            out_append(c, "data: ", s, "\n\n");
            free(s);
            c->sent_text = end;
        }
        int finished = j->finished;
        int32_t reason = j->finish_reason;
        llms_status st = j->status;
        pthread_mutex_unlock(&j->mu);
        if (finished) {
            if (reason == LLMS_FINISH_ERROR || (st < 0 && reason != LLMS_FINISH_CANCELLED)) {
                /* The status line has gone out: report the failure in-band. */
                cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
                cJSON_AddStringToObject(e, "message", llms_status_string(st));
                cJSON_AddStringToObject(e, "type", "server_error");
                char *s = cJSON_PrintUnformatted(root);
                cJSON_Delete(root);
                out_append(c, "data: ", s, "\n\n");
                free(s);
            } else {
                char *s = stream_chunk(c, NULL, 0, finish_name(reason), 0);
                out_append(c, "data: ", s, "\n\n");
                free(s);
            }
            out_append(c, "data: [DONE]", NULL, "\n\n");
            c->phase = 2;
        }
        if (atomic_load(&g.stopping) && !finished) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

/* ---- request parsing ----------------------------------------------------- */

/* Reads an optional number field in [lo, hi]; integral if `integer`.
 * Returns 0 (and writes a message) on a wrong type or value. */
static int get_num(const cJSON *body, const char *name, double lo, double hi, int integer, double *out,
                   int *present, char *msg, size_t cap) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
    if (present) *present = 0;
    if (!v || cJSON_IsNull(v)) return 1;
    if (!cJSON_IsNumber(v)) { snprintf(msg, cap, "'%s' must be a number", name); return 0; }
    double d = v->valuedouble;
    if (!isfinite(d) || d < lo || d > hi || (integer && d != floor(d))) {
        snprintf(msg, cap, "'%s' must be %s between %g and %g", name, integer ? "an integer" : "a number", lo, hi);
        return 0;
    }
    *out = d;
    if (present) *present = 1;
    return 1;
}

#define MAX_STOP 4

/* Fills the sampling parameters from an OpenAI request body. OpenAI's
 * defaults (temperature 1, no top-k/top-p/min-p truncation) rather than the
 * library's, so clients get the behaviour they expect. */
static int parse_sampling(const cJSON *body, int kind, llms_sampling_params *sp, const char **stop,
                          char *msg, size_t cap) {
    llms_sampling_params_init(sp);
    sp->temperature = 1.0f;
    sp->top_k = 0;
    sp->top_p = 1.0f;
    sp->min_p = 0.0f;
    sp->max_tokens = kind == KIND_COMPLETION ? 16 : -1;
    double d;
    int has;
    if (!get_num(body, "temperature", 0, 2, 0, &d, &has, msg, cap)) return 0;
    if (has) sp->temperature = (float)d;
    if (!get_num(body, "top_p", 0, 1, 0, &d, &has, msg, cap)) return 0;
    if (has) {
        if (d <= 0) { snprintf(msg, cap, "'top_p' must be greater than 0"); return 0; }
        sp->top_p = (float)d;
    }
    if (!get_num(body, "top_k", -1, 1 << 20, 1, &d, &has, msg, cap)) return 0;
    if (has) sp->top_k = d < 0 ? 0 : (int32_t)d;
    if (!get_num(body, "min_p", 0, 1, 0, &d, &has, msg, cap)) return 0;
    if (has) sp->min_p = (float)d;
    if (!get_num(body, "presence_penalty", -2, 2, 0, &d, &has, msg, cap)) return 0;
    if (has) sp->presence_penalty = (float)d;
    if (!get_num(body, "frequency_penalty", -2, 2, 0, &d, &has, msg, cap)) return 0;
    if (has) sp->frequency_penalty = (float)d;
    if (!get_num(body, "repeat_penalty", 0.01, 10, 0, &d, &has, msg, cap)) return 0;
    if (has) sp->repeat_penalty = (float)d;
    if (!get_num(body, "seed", 0, 9007199254740991.0, 1, &d, &has, msg, cap)) return 0;
    if (has) sp->seed = (uint64_t)d;
    const char *mt = kind == KIND_CHAT && cJSON_GetObjectItemCaseSensitive(body, "max_completion_tokens")
                         ? "max_completion_tokens" : "max_tokens";
    if (!get_num(body, mt, 1, 1 << 30, 1, &d, &has, msg, cap)) return 0;
    if (has) sp->max_tokens = (int32_t)d;
    if (!get_num(body, "n", 1, 1, 1, &d, &has, msg, cap)) {
        snprintf(msg, cap, "only 'n': 1 is supported");
        return 0;
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(body, "stop");
    if (st && !cJSON_IsNull(st)) {
        if (cJSON_IsString(st)) {
            stop[0] = st->valuestring;
            sp->n_stop = 1;
        } else if (cJSON_IsArray(st) && cJSON_GetArraySize(st) <= MAX_STOP) {
            const cJSON *e;
            cJSON_ArrayForEach(e, st) {
                if (!cJSON_IsString(e)) { snprintf(msg, cap, "'stop' must hold strings"); return 0; }
                stop[sp->n_stop++] = e->valuestring;
            }
        } else {
            snprintf(msg, cap, "'stop' must be a string or an array of up to %d strings", MAX_STOP);
            return 0;
        }
        sp->stop = stop;
    }
    const cJSON *ie = cJSON_GetObjectItemCaseSensitive(body, "ignore_eos");
    if (ie && !cJSON_IsBool(ie)) { snprintf(msg, cap, "'ignore_eos' must be a boolean"); return 0; }
    if (cJSON_IsTrue(ie)) sp->flags |= LLMS_SAMPLE_IGNORE_EOG;
    const cJSON *echo = cJSON_GetObjectItemCaseSensitive(body, "echo");
    if (cJSON_IsTrue(echo)) { snprintf(msg, cap, "'echo' is not supported"); return 0; }
    return 1;
}

/* The chat prompt rendered with the template; NULL with a message on error. */
static char *render_chat(const cJSON *body, char *msg, size_t cap) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(body, "messages");
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
        snprintf(msg, cap, "'messages' must be a non-empty array");
        return NULL;
    }
    const cJSON *tv = cJSON_GetObjectItemCaseSensitive(body, "template");
    if (tv && !cJSON_IsString(tv)) { snprintf(msg, cap, "'template' must be a string"); return NULL; }
    const char *tmpl = tv ? tv->valuestring : g.chat_template;
    if (!tmpl && !llms_model_chat_template(g.model)) {
        snprintf(msg, cap, "the model has no chat template: pass \"template\" (e.g. \"chatml\") in the request "
                           "or start the server with --chat-template");
        return NULL;
    }
    int n = cJSON_GetArraySize(msgs);
    llms_chat_message *m = calloc((size_t)n, sizeof *m);
    char **parts = calloc((size_t)n, sizeof *parts);   /* content assembled from text parts */
    char *out = NULL;
    if (!m || !parts) { snprintf(msg, cap, "out of memory"); goto done; }
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(msgs, i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(e, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsObject(e) || !cJSON_IsString(role)) {
            snprintf(msg, cap, "messages[%d] must be an object with a string 'role'", i);
            goto done;
        }
        const char *r = role->valuestring;
        if (!strcmp(r, "developer")) r = "system";
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")) {
            snprintf(msg, cap, "messages[%d].role must be system, user or assistant", i);
            goto done;
        }
        m[i].role = r;
        if (cJSON_IsString(content)) {
            m[i].content = content->valuestring;
        } else if (cJSON_IsArray(content)) {
            /* [{"type": "text", "text": ...}, ...]: only text parts. */
            size_t len = 0;
            const cJSON *p;
            cJSON_ArrayForEach(p, content) {
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
                const cJSON *ty = cJSON_GetObjectItemCaseSensitive(p, "type");
                if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "text") || !cJSON_IsString(t)) {
                    snprintf(msg, cap, "messages[%d].content: only text parts are supported", i);
                    goto done;
                }
                len += strlen(t->valuestring);
            }
            parts[i] = calloc(len + 1, 1);
            if (!parts[i]) { snprintf(msg, cap, "out of memory"); goto done; }
            cJSON_ArrayForEach(p, content) strcat(parts[i], cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring);
            m[i].content = parts[i];
        } else {
            snprintf(msg, cap, "messages[%d].content must be a string or an array of text parts", i);
            goto done;
        }
    }
    size_t need = 0;
    llms_status st = llms_chat_apply_template(g.model, tmpl, m, (size_t)n, 1, NULL, 0, &need);
    if (st == LLMS_ERR_BUFFER_TOO_SMALL || st == LLMS_OK) {
        out = malloc(need + 1);
        if (out) st = llms_chat_apply_template(g.model, tmpl, m, (size_t)n, 1, out, need + 1, &need);
        else st = LLMS_ERR_NO_MEMORY;
    }
    if (st) {
        free(out);
        out = NULL;
        snprintf(msg, cap, "chat template: %s%s%s", llms_status_string(st), *llms_errmsg() ? ": " : "",
                 llms_errmsg());
    }
done:
    for (int i = 0; parts && i < n; i++) free(parts[i]);
    free(parts);
    free(m);
    return out;
}

/* ---- endpoints ----------------------------------------------------------- */

static enum MHD_Result handle_generate(struct MHD_Connection *mc, conn *c, tenant_slot *ten) {
    char msg[512];
    if (!c->len) return bad_request(mc, "the request body is empty; a JSON object is expected");
    cJSON *body = cJSON_ParseWithLength(c->body, c->len);
    if (!body) return bad_request(mc, "the request body is not valid JSON");
    if (!cJSON_IsObject(body)) { cJSON_Delete(body); return bad_request(mc, "the request body must be a JSON object"); }
    enum MHD_Result ret;
    char *chat_prompt = NULL;
    const char *prompt = NULL;
    const cJSON *sv = cJSON_GetObjectItemCaseSensitive(body, "stream");
    if (sv && !cJSON_IsBool(sv) && !cJSON_IsNull(sv)) { ret = bad_request(mc, "'stream' must be a boolean"); goto out; }
    c->stream = cJSON_IsTrue(sv);
    const cJSON *mv = cJSON_GetObjectItemCaseSensitive(body, "model");
    if (mv && !cJSON_IsString(mv) && !cJSON_IsNull(mv)) { ret = bad_request(mc, "'model' must be a string"); goto out; }
    if (c->kind == KIND_COMPLETION) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "prompt");
        if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1) p = cJSON_GetArrayItem(p, 0);
        if (!cJSON_IsString(p)) { ret = bad_request(mc, "'prompt' is required and must be a string"); goto out; }
        prompt = p->valuestring;
    } else {
        if (!(chat_prompt = render_chat(body, msg, sizeof msg))) { ret = bad_request(mc, msg); goto out; }
        prompt = chat_prompt;
    }
    llms_sampling_params sp;
    const char *stop[MAX_STOP];
    if (!parse_sampling(body, c->kind, &sp, stop, msg, sizeof msg)) { ret = bad_request(mc, msg); goto out; }

    /* The tenant's concurrency limit, counted by the server (see the top). */
    pthread_mutex_lock(&g.lock);
    int over = ten->max_concurrent && ten->inflight >= ten->max_concurrent;
    if (!over) ten->inflight++;
    pthread_mutex_unlock(&g.lock);
    if (over) {
        ret = send_error(mc, 429, "rate_limit_error", "rate_limit_exceeded",
                         "too many concurrent requests for this API key", "1");
        goto out;
    }
    c->tenant = ten;

    job *j = job_new();
    if (!j) { ret = send_error(mc, 500, "server_error", NULL, "out of memory", NULL); goto out; }
    llms_request_params rq;
    llms_request_params_init(&rq);
    rq.flags = LLMS_REQUEST_MODEL_DEFAULTS | (c->kind == KIND_CHAT ? LLMS_REQUEST_PARSE_SPECIAL : 0);
    rq.prompt = prompt;
    rq.prompt_len = strlen(prompt);
    rq.sampling = &sp;
    rq.tenant = ten->name;
    rq.user_tag = (uint64_t)(uintptr_t)j;
    uint64_t id = 0;
    llms_status st = llms_scheduler_submit(g.sched, &rq, &id);
    if (st) {
        j->refs = 1;   /* no events will come */
        job_unref(j);
        release_tenant(c);
        snprintf(msg, sizeof msg, "%s%s%s", llms_status_string(st), *llms_errmsg() ? ": " : "", llms_errmsg());
        if (st == LLMS_ERR_BUSY)
            ret = send_error(mc, 429, "rate_limit_error", "server_busy", msg, "1");
        else if (st == LLMS_ERR_RATE_LIMITED) {
            char ra[32];
            snprintf(ra, sizeof ra, "%u", ten->tokens_per_minute ? 60 / ten->tokens_per_minute + 1 : 1);
            ret = send_error(mc, 429, "rate_limit_error", "rate_limit_exceeded", msg, ra);
        } else if (st == LLMS_ERR_PROMPT_TOO_LONG)
            ret = send_error(mc, 400, "invalid_request_error", "context_length_exceeded", msg, NULL);
        else if (st == LLMS_ERR_INVALID_ARGUMENT || st == LLMS_ERR_TOKEN_RANGE)
            ret = bad_request(mc, msg);
        else
            ret = send_error(mc, 500, "server_error", NULL, msg, NULL);
        goto out;
    }
    pthread_mutex_lock(&j->mu);
    j->id = id;
    pthread_mutex_unlock(&j->mu);
    c->j = j;
    pthread_mutex_lock(&g.lock);
    snprintf(c->id, sizeof c->id, "%s-%llu", c->kind == KIND_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)++g.next_id);
    pthread_mutex_unlock(&g.lock);
    c->created = (long)time(NULL);

    if (c->stream) {
        c->phase = c->kind == KIND_CHAT ? 0 : 1;
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, c, NULL);
        if (!r) { ret = MHD_NO; goto out; }
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        ret = MHD_queue_response(mc, 200, r);
        MHD_destroy_response(r);
        goto out;
    }

    /* Non-streaming: wait here (a thread per connection), watching for the
     * client going away so its request is cancelled (on completion). */
    pthread_mutex_lock(&j->mu);
    while (!j->finished) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
        if (!j->finished && (client_gone(c->fd) || atomic_load(&g.stopping))) {
            pthread_mutex_unlock(&j->mu);
            ret = MHD_NO;   /* closes the connection; the completion callback cancels */
            goto out;
        }
    }
    pthread_mutex_unlock(&j->mu);
    if (j->finish_reason == LLMS_FINISH_ERROR || j->status < 0) {
        snprintf(msg, sizeof msg, "generation failed: %s", llms_status_string(j->status));
        ret = send_error(mc, j->status == LLMS_ERR_TIMEOUT ? 504 : 500, "server_error", NULL, msg, NULL);
        goto out;
    }
    cJSON *o = response_head(c, c->kind == KIND_CHAT ? "chat.completion" : "text_completion");
    cJSON *ch = cJSON_AddArrayToObject(o, "choices"), *x = cJSON_CreateObject();
    cJSON_AddItemToArray(ch, x);
    cJSON_AddNumberToObject(x, "index", 0);
    if (c->kind == KIND_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(x, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", j->text ? j->text : "");
    } else {
        cJSON_AddStringToObject(x, "text", j->text ? j->text : "");
        cJSON_AddNullToObject(x, "logprobs");
    }
    cJSON_AddStringToObject(x, "finish_reason", finish_name(j->finish_reason));
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", j->prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", j->completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", (double)j->prompt_tokens + j->completion_tokens);
    ret = send_json(mc, 200, o, NULL);
out:
    free(chat_prompt);
    cJSON_Delete(body);
    return ret;
}

static enum MHD_Result handle_metrics(struct MHD_Connection *mc) {
    size_t cap = 1 << 16, len = 0;
    for (;;) {
        char *buf = malloc(cap);
        if (!buf) return MHD_NO;
        llms_status st = llms_scheduler_metrics_prometheus(g.sched, buf, cap, &len);
        if (st == LLMS_OK) return send_text(mc, 200, "text/plain; version=0.0.4", buf, NULL);
        free(buf);
        if (st != LLMS_ERR_BUFFER_TOO_SMALL) return send_error(mc, 500, "server_error", NULL, "metrics failed", NULL);
        cap = len + 1024;   /* tenants may have appeared in between */
    }
}

static enum MHD_Result handle_models(struct MHD_Connection *mc) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON *d = cJSON_AddArrayToObject(root, "data"), *m = cJSON_CreateObject();
    cJSON_AddItemToArray(d, m);
    cJSON_AddStringToObject(m, "id", g.model_name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", 0);
    cJSON_AddStringToObject(m, "owned_by", "libllmserve");
    return send_json(mc, 200, root, NULL);
}

/* The tenant for the request's key; NULL if keys are configured and the
 * request has no valid one. */
static tenant_slot *authenticate(struct MHD_Connection *mc) {
    if (!g.n_keys) return &g.open_tenant;
    const char *h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) return NULL;
    const char *k = h + 7;
    while (*k == ' ') k++;
    size_t kl = strlen(k);
    for (size_t i = 0; i < g.n_keys; i++) {
        /* Compare every byte so timing does not reveal how much matched. */
        const char *want = g.keys[i].key;
        size_t wl = strlen(want);
        unsigned diff = (unsigned)(wl ^ kl);
        for (size_t b = 0; b < wl; b++) diff |= (unsigned char)want[b] ^ (unsigned char)(b < kl ? k[b] : 0);
        if (!diff) return g.keys[i].tenant;
    }
    return NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)cls; (void)version;
    conn *c = *con_cls;
    if (!c) {
        if (!(c = calloc(1, sizeof *c))) return MHD_NO;
        c->fd = -1;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci) c->fd = ci->connect_fd;
        *con_cls = c;
        /* Refuse an oversized body before reading it when its length is declared. */
        const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > g.max_body) {
            c->responded = 1;
            return send_error(mc, 413, "invalid_request_error", "request_too_large", "the request body is too large",
                              NULL);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!c->responded && !c->too_large) {
            if (c->len + *upload_size > g.max_body) {
                c->too_large = 1;
                free(c->body);
                c->body = NULL;
                c->len = 0;
            } else {
                char *p = realloc(c->body, c->len + *upload_size + 1);
                if (!p) return MHD_NO;
                c->body = p;
                memcpy(c->body + c->len, upload, *upload_size);
                c->len += *upload_size;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (c->responded) return MHD_YES;
    if (c->too_large)
        return send_error(mc, 413, "invalid_request_error", "request_too_large", "the request body is too large", NULL);

    int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (!strcmp(url, "/health")) {
        if (!get) return send_error(mc, 405, "invalid_request_error", NULL, "use GET", NULL);
        return send_text(mc, 200, "application/json", strdup("{\"status\":\"ok\"}"), NULL);
    }
    if (!strcmp(url, "/metrics")) {
        if (!get) return send_error(mc, 405, "invalid_request_error", NULL, "use GET", NULL);
        return handle_metrics(mc);
    }
    int models = !strcmp(url, "/v1/models");
    int compl = !strcmp(url, "/v1/completions"), chat = !strcmp(url, "/v1/chat/completions");
    if (!models && !compl && !chat)
        return send_error(mc, 404, "invalid_request_error", "not_found", "no such endpoint", NULL);
    tenant_slot *ten = authenticate(mc);
    if (!ten)
        return send_error(mc, 401, "invalid_request_error", "invalid_api_key",
                          "a valid API key is required (Authorization: Bearer KEY)", NULL);
    if (models) {
        if (!get) return send_error(mc, 405, "invalid_request_error", NULL, "use GET", NULL);
        return handle_models(mc);
    }
    if (!post) return send_error(mc, 405, "invalid_request_error", NULL, "use POST", NULL);
    c->kind = chat ? KIND_CHAT : KIND_COMPLETION;
    return handle_generate(mc, c, ten);
}

/* The connection is done (finished, failed or the client left): cancel the
 * request if it is still running and drop the connection's references. */
static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls, enum MHD_RequestTerminationCode tc) {
    (void)cls; (void)mc; (void)tc;
    conn *c = *con_cls;
    if (!c) return;
    if (c->j) {
        pthread_mutex_lock(&c->j->mu);
        int running = !c->j->finished;
        uint64_t id = c->j->id;
        pthread_mutex_unlock(&c->j->mu);
        if (running) llms_scheduler_cancel(g.sched, id);
        job_unref(c->j);
    }
    release_tenant(c);
    free(c->body);
    free(c->out);
    free(c);
    *con_cls = NULL;
}

/* ---- start-up ------------------------------------------------------------ */

static tenant_slot *tenant_get(const char *name) {
    for (size_t i = 0; i < g.n_tenants; i++)
        if (!strcmp(g.tenants[i].name, name)) return &g.tenants[i];
    return NULL;
}

/* Reads "KEY TENANT [max_concurrent] [tokens_per_minute]" lines. The tenant
 * array is sized first so that key→tenant pointers stay valid. */
static int load_keys(const char *path, const char *prog) {
    FILE *f = fopen(path, "r");
    if (!f) { fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno)); return 0; }
    char line[1024];
    size_t cap = 0;
    while (fgets(line, sizeof line, f)) cap++;
    rewind(f);
    g.keys = calloc(cap + 1, sizeof *g.keys);
    g.tenants = calloc(cap + 1, sizeof *g.tenants);
    if (!g.keys || !g.tenants) { fclose(f); return 0; }
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char key[512], name[256], extra[8];
        long maxc = 0, tpm = 0;
        int n = sscanf(line, "%511s %255s %ld %ld %7s", key, name, &maxc, &tpm, extra);
        if (n <= 0) continue;
        if (n < 2 || n > 4 || maxc < 0 || tpm < 0 || maxc > 1000000 || tpm > 4000000000L) {
            fprintf(stderr, "%s: %s:%d: expected KEY TENANT [max_concurrent] [tokens_per_minute]\n", prog, path,
                    lineno);
            fclose(f);
            return 0;
        }
        tenant_slot *t = tenant_get(name);
        if (!t) {
            t = &g.tenants[g.n_tenants++];
            t->name = strdup(name);
            t->max_concurrent = (uint32_t)maxc;
            t->tokens_per_minute = (uint32_t)tpm;
        } else if (n > 2 && (t->max_concurrent != (uint32_t)maxc || t->tokens_per_minute != (uint32_t)tpm)) {
            fprintf(stderr, "%s: %s:%d: tenant %s is given different limits\n", prog, path, lineno, name);
            fclose(f);
            return 0;
        }
        g.keys[g.n_keys].key = strdup(key);
        g.keys[g.n_keys].tenant = t;
        g.n_keys++;
    }
    fclose(f);
    if (!g.n_keys) { fprintf(stderr, "%s: %s: no keys\n", prog, path); return 0; }
    return 1;
}

static void usage(const char *p) {
    fprintf(stderr,
            "usage: %s --model FILE [--host H] [--port N] [--api-keys FILE] [--threads N]\n"
            "          [--chat-template NAME] [--model-name NAME] [--queue-capacity N] [--max-body BYTES]\n"
            "          [--backend auto|cpu|vulkan]\n"
            "  --port 0 picks a free port; the address is printed to stderr once listening.\n"
            "  --api-keys FILE: lines 'KEY TENANT [max_concurrent] [tokens_per_minute]'.\n", p);
    exit(2);
}

int main(int argc, char **argv) {
    const char *path = NULL, *host = "127.0.0.1", *keys = NULL;
    long port = 8080, queue_cap = 0, l;
    llms_context_params cp;
    llms_context_params_init(&cp);
    g.max_body = 1 << 20;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = cli_opt(argc, argv, &i, "--model"))) path = v;
        else if ((v = cli_opt(argc, argv, &i, "--host"))) host = v;
        else if ((v = cli_opt(argc, argv, &i, "--api-keys"))) keys = v;
        else if ((v = cli_opt(argc, argv, &i, "--chat-template"))) g.chat_template = v;
        else if ((v = cli_opt(argc, argv, &i, "--model-name"))) g.model_name = v;
        else if ((v = cli_opt(argc, argv, &i, "--port"))) {
            if (!cli_long(v, 0, 65535, &port)) usage(argv[0]);
        } else if ((v = cli_opt(argc, argv, &i, "--queue-capacity"))) {
            if (!cli_long(v, 1, 1 << 24, &queue_cap)) usage(argv[0]);
        } else if ((v = cli_opt(argc, argv, &i, "--max-body"))) {
            if (!cli_long(v, 1, 1L << 30, &l)) usage(argv[0]);
            g.max_body = (size_t)l;
        } else if ((v = cli_opt(argc, argv, &i, "--threads"))) {
            if (!cli_long(v, 0, 1024, &l)) usage(argv[0]);
            cp.n_threads = (int32_t)l;
        } else if ((v = cli_opt(argc, argv, &i, "--backend"))) {
            if ((cp.backend = cli_backend(v)) < 0) usage(argv[0]);
        } else usage(argv[0]);
    }
    if (!path) usage(argv[0]);
    if (keys && !load_keys(keys, argv[0])) return 2;
    if (g.chat_template && llms_chat_template_family(g.chat_template) == LLMS_CHAT_UNKNOWN) {
        fprintf(stderr, "%s: --chat-template %s: unknown template\n", argv[0], g.chat_template);
        return 2;
    }
    if (!g.model_name) {
        const char *b = strrchr(path, '/');
        g.model_name = b ? b + 1 : path;
    }

    /* Resolve the address before loading anything, so a typo fails fast. */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%ld", port);
    int gai = getaddrinfo(host, portstr, &hints, &ai);
    if (gai) { fprintf(stderr, "%s: --host %s: %s\n", argv[0], host, gai_strerror(gai)); return 2; }

    /* Signals are taken by sigwait in this thread; the threads created
     * below inherit the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    llms_context *ctx = NULL;
    llms_status st;
    int rc = 1;
    struct MHD_Daemon *d = NULL;
    if ((st = llms_context_create(&cp, &ctx))) { cli_report(argv[0], "context", st); goto out; }
    if ((st = llms_model_load(ctx, path, NULL, &g.model))) { cli_report(argv[0], path, st); goto out; }

    llms_scheduler_params sp;
    llms_scheduler_params_init(&sp);
    /* Deterministic batching: a greedy request's text is the same whatever
     * else is running, as clients comparing outputs expect. */
    sp.flags = LLMS_SCHEDULER_OWN_THREAD | LLMS_SCHEDULER_DETERMINISTIC;
    sp.event_fn = on_event;
    if (queue_cap) sp.queue_capacity = (uint32_t)queue_cap;
    if ((st = llms_scheduler_create(g.model, &sp, &g.sched))) { cli_report(argv[0], "scheduler", st); goto out; }
    for (size_t i = 0; i < g.n_tenants; i++) {
        llms_tenant_params tp;
        llms_tenant_params_init(&tp);
        tp.name = g.tenants[i].name;
        tp.max_concurrent = g.tenants[i].max_concurrent;
        tp.tokens_per_minute = g.tenants[i].tokens_per_minute;
        if ((st = llms_scheduler_set_tenant(g.sched, &tp))) { cli_report(argv[0], "tenant", st); goto out; }
    }
    g.open_tenant.name = "";

    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, NULL,
                         MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)512,
                         MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "%s: cannot listen on %s port %ld\n", argv[0], host, port);
        goto out;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    unsigned bound = di ? di->port : (unsigned)port;
    fprintf(stderr, "%s: serving %s (%s); listening on http://%s%s%s:%u%s\n", argv[0], g.model_name,
            llms_context_backend(ctx) == LLMS_BACKEND_VULKAN ? "vulkan" : "cpu",
            ai->ai_family == AF_INET6 ? "[" : "", host, ai->ai_family == AF_INET6 ? "]" : "", bound,
            g.n_keys ? " (API keys required)" : "");
    fflush(stderr);

    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "%s: signal %d, shutting down\n", argv[0], sig);
    atomic_store(&g.stopping, 1);   /* waiting connections give up within 100 ms */
    rc = 0;
out:
    if (d) MHD_stop_daemon(d);
    freeaddrinfo(ai);
    llms_scheduler_destroy(g.sched);
    llms_model_destroy(g.model);
    llms_context_destroy(ctx);
    for (size_t i = 0; i < g.n_keys; i++) free(g.keys[i].key);
    for (size_t i = 0; i < g.n_tenants; i++) free(g.tenants[i].name);
    free(g.keys);
    free(g.tenants);
    return rc;
}
