/*
 * Scheduler core: submission, admission, batching, preemption, delivery.
 * See scheduler.h for the design and the lock order.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "scheduler.h"
#include "sched_internal.h"
#include "../backend/backend.h"
#include "../cache/prefix_cache.h"
#include "../core/context.h"
#include "../core/error.h"
#include "../core/params.h"
#include "../session/session_batch.h"

double sched_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

LLMS_API void llms_scheduler_params_init(llms_scheduler_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->max_batch_tokens = 256;
    p->max_running = 64;
    p->queue_capacity = 256;
    p->aging_ms = 5000;
}

LLMS_API void llms_request_params_init(llms_request_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
}

LLMS_API void llms_tenant_params_init(llms_tenant_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->name = "";
    p->weight = 1;
}

LLMS_API void llms_scheduler_stats_init(llms_scheduler_stats *s) {
    if (!s) return;
    memset(s, 0, sizeof *s);
    s->struct_size = sizeof *s;
}

/* ---- tenants ---- */

static void tenant_metrics_init(tenant *t) { histo_init(&t->ttft, histo_seconds_bounds, histo_seconds_n); }

/* Index of a tenant by name, or -1. Caller holds lock. */
static int32_t tenant_find(const llms_scheduler *S, const char *name) {
    if (!name) name = "";
    for (uint32_t i = 0; i < S->n_tenants; i++)
        if (strcmp(S->tenants[i].name, name) == 0) return (int32_t)i;
    return -1;
}

static llms_status tenant_add(llms_scheduler *S, const char *name, int32_t *idx) {
    if (S->n_tenants == S->cap_tenants) {
        uint32_t cap = S->cap_tenants ? S->cap_tenants * 2 : 4;
        tenant *nt = xrealloc_array(S->a, S->tenants, cap, sizeof *nt);
        if (!nt) return ERR_OOM();
        S->tenants = nt;
        S->cap_tenants = cap;
    }
    tenant *t = &S->tenants[S->n_tenants];
    memset(t, 0, sizeof *t);
    t->name = xstrndup(S->a, name, strlen(name));
    t->group = xstrndup(S->a, name, strlen(name));
    if (!t->name || !t->group) {
        xfree(S->a, t->name);
        xfree(S->a, t->group);
        return ERR_OOM();
    }
    llms_tenant_params_init(&t->p);
    t->t_refill = sched_now();
    tenant_metrics_init(t);
    *idx = (int32_t)S->n_tenants++;
    return LLMS_OK;
}

LLMS_API llms_status llms_scheduler_set_tenant(llms_scheduler *S, const llms_tenant_params *params) {
    if (!S || !params) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_scheduler_set_tenant: NULL argument");
    llms_tenant_params p;
    llms_tenant_params_init(&p);
    if (!params_merge(&p, sizeof p, params))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_tenant_params: struct_size too small");
    const char *name = p.name ? p.name : "";
    if (strlen(name) > 256) return err_set(LLMS_ERR_INVALID_ARGUMENT, "tenant name longer than 256 bytes");
    if (p.weight == 0) p.weight = 1;
    const char *group = p.sharing_group && *p.sharing_group ? p.sharing_group : name;
    /* A sharing group of one tenant is spelled with a prefix no host group
     * can collide with, so a tenant named like another's group stays apart. */
    char *g = NULL;
    size_t glen = strlen(group) + 3;
    g = xmalloc(S->a, glen);
    if (!g) return ERR_OOM();
    memcpy(g, group == name ? "t:" : "g:", 2);
    memcpy(g + 2, group, glen - 2);
    pthread_mutex_lock(&S->lock);
    int32_t i = tenant_find(S, name);
    llms_status st = LLMS_OK;
    if (i < 0) st = tenant_add(S, name, &i);
    if (!st) {
        tenant *t = &S->tenants[i];
        xfree(S->a, t->group);
        t->group = g;
        g = NULL;
        t->p = p;
        t->p.name = t->name;
        t->p.sharing_group = NULL;
        if (t->p.tokens_per_minute) t->bucket = t->p.tokens_per_minute;
    }
    pthread_mutex_unlock(&S->lock);
    xfree(S->a, g);
    return st;
}

/* Refill the token bucket. Caller holds lock. */
static void tenant_refill(tenant *t, double now) {
    if (!t->p.tokens_per_minute) return;
    double cap = t->p.tokens_per_minute;
    t->bucket += (now - t->t_refill) * cap / 60.0;
    if (t->bucket > cap) t->bucket = cap;
    t->t_refill = now;
}

/* Tokens computed for a tenant (prompt and generated alike), for the fair
 * share. Charged over the weight in force when computed, so a changed
 * weight applies from then on. */
static void tenant_charge(tenant *t, uint32_t tokens) {
    t->served += tokens;
    t->vtime += (double)tokens / t->p.weight;
}

/* ---- events ---- */

/* Queue an event of request r (copying `text`). Caller holds lock. The
 * events of one step are delivered in order after the step. */
static void emit(llms_scheduler *S, request *r, int32_t type, int32_t reason, llms_status status, int32_t token,
                 const char *text, size_t len) {
    int terminal = type != LLMS_EVENT_TOKEN;
    /* The terminal event was allocated at submit, so it is never lost. */
    ev_item *e = terminal ? r->term : xcalloc(S->a, 1, sizeof *e);
    if (terminal) r->term = NULL;
    char *copy = e ? xmalloc(S->a, len + 1) : NULL;
    if (!copy && terminal && e) {
        /* No memory for the final text: end with an error instead, so the
         * host knows the stream is incomplete. */
        copy = e->text;  /* the 1-byte buffer allocated with it */
        len = 0;
        type = LLMS_EVENT_ERROR;
        reason = LLMS_FINISH_ERROR;
        status = LLMS_ERR_NO_MEMORY;
    } else if (terminal && e) {
        xfree(S->a, e->text);
    }
    if (!e || !copy) {
        /* A token event lost to a failed allocation breaks the stream: the
         * request ends with an error at once (see generate_one). */
        xfree(S->a, e);
        r->lost_event = 1;
        return;
    }
    if (len) memcpy(copy, text, len);
    copy[len] = 0;
    llms_event *ev = &e->ev;
    ev->struct_size = sizeof *ev;
    ev->type = type;
    ev->request_id = r->id;
    ev->user_tag = r->user_tag;
    ev->finish_reason = reason;
    ev->status = status;
    ev->token = token;
    ev->n_generated = r->s ? r->s->n_generated : r->n_generated_final;
    ev->text_len = len;
    ev->prompt_tokens = r->n_prompt;
    ev->cached_tokens = r->cached_reported;
    ev->completion_tokens = ev->n_generated;
    e->text = copy;
    if (S->step_tail) S->step_tail->next = e;
    else S->step_head = e;
    S->step_tail = e;
    S->step_events++;
}

static void request_free(llms_scheduler *S, request *r) {
    if (!r) return;
    if (r->term) {
        xfree(S->a, r->term->text);
        xfree(S->a, r->term);
    }
    llms_session_destroy(r->s);
    xfree(S->a, r->prompt);
    xfree(S->a, r);
}

/* End request r with its terminal event; frees its session (and so its KV
 * blocks) at once. Caller holds lock; r is removed from the lists by the
 * caller (state RQ_DONE). */
static void terminate(llms_scheduler *S, request *r, int32_t type, int32_t reason, llms_status status,
                      int32_t token, const char *text, size_t len) {
    double now = sched_now();
    if (r->s) r->n_generated_final = r->s->n_generated;
    emit(S, r, type, reason, status, token, text, len);
    tenant *t = &S->tenants[r->tenant];
    if (r->state == RQ_RUNNING && t->running) t->running--;
    r->state = RQ_DONE;
    llms_session_destroy(r->s);
    r->s = NULL;
    metrics *M = &S->mx;
    int outcome;
    if (type == LLMS_EVENT_ERROR) outcome = OUT_FAILED;
    else if (reason == LLMS_FINISH_CANCELLED) outcome = OUT_CANCELLED;
    else if (reason == LLMS_FINISH_TIMEOUT) outcome = OUT_TIMEOUT;
    else if (reason == LLMS_FINISH_REJECTED) outcome = OUT_REJECTED;
    else outcome = OUT_FINISHED;
    M->outcome[outcome]++;
    t->outcome[outcome]++;
    histo_observe(&M->e2e, now - r->t_submit);
}

/* ---- lifecycle ---- */

static void *worker_main(void *arg);
static llms_status waiting_push(llms_scheduler *S, request *r);
static void preempt(llms_scheduler *S, request *r);

LLMS_API llms_status llms_scheduler_create(llms_model *m, const llms_scheduler_params *params,
                                           llms_scheduler **out) {
    if (!out) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_scheduler_create: out is NULL");
    *out = NULL;
    if (!m) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_scheduler_create: model is NULL");
    if (!m->layers || !m->kv_ready) return err_set(LLMS_ERR_STATE, "the model was loaded without weights");
    llms_scheduler_params p;
    llms_scheduler_params_init(&p);
    if (!params_merge(&p, sizeof p, params))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_scheduler_params: struct_size too small");
    if (p.max_batch_tokens == 0) p.max_batch_tokens = 256;
    if (p.max_running == 0) p.max_running = 64;
    if (p.queue_capacity == 0) p.queue_capacity = 256;
    if (p.aging_ms == 0) p.aging_ms = 5000;
    if (p.max_batch_tokens > 65536 || p.max_running > 65536 || p.queue_capacity > (1u << 24))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_scheduler_params: a limit is too large");
    if (p.max_batch_tokens < p.max_running) p.max_running = p.max_batch_tokens;
    if (p.n_ctx == 0) p.n_ctx = m->hp.n_ctx_train;
    if (p.cache && pcache_model(p.cache) != m)
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "the cache belongs to another model");
    if (p.kv_budget_bytes && p.kv_budget_bytes < 2 * kv_block_bytes(&m->kv))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "kv_budget_bytes is below two KV blocks (%llu bytes)",
                       (unsigned long long)(2 * kv_block_bytes(&m->kv)));

    llms_scheduler *S = xcalloc(m->alloc, 1, sizeof *S);
    if (!S) return ERR_OOM();
    S->m = m;
    S->a = m->alloc;
    S->p = p;
    S->next_id = 1;
    pthread_mutex_init(&S->lock, NULL);
    pthread_mutex_init(&S->step_lock, NULL);
    pthread_cond_init(&S->work_cv, NULL);
    pthread_cond_init(&S->event_cv, NULL);
    S->sync_ready = 1;
    histo_init(&S->mx.queue_time, histo_seconds_bounds, histo_seconds_n);
    histo_init(&S->mx.ttft, histo_seconds_bounds, histo_seconds_n);
    histo_init(&S->mx.tbt, histo_seconds_bounds, histo_seconds_n);
    histo_init(&S->mx.e2e, histo_seconds_bounds, histo_seconds_n);
    histo_init(&S->mx.batch, histo_tokens_bounds, histo_tokens_n);
    uint32_t B = p.max_batch_tokens, R = p.max_running;
    int32_t t0;
    S->waiting = xcalloc(S->a, p.queue_capacity, sizeof *S->waiting);
    S->cap_waiting = p.queue_capacity;
    S->running = xcalloc(S->a, R, sizeof *S->running);
    S->order = xcalloc(S->a, R, sizeof *S->order);
    S->b_tokens = xcalloc(S->a, B, sizeof *S->b_tokens);
    S->b_pos = xcalloc(S->a, B, sizeof *S->b_pos);
    S->b_seq = xcalloc(S->a, B, sizeof *S->b_seq);
    S->b_want = xcalloc(S->a, B, sizeof *S->b_want);
    S->b_seqs = xcalloc(S->a, R, sizeof *S->b_seqs);
    S->members = xcalloc(S->a, R, sizeof *S->members);
    S->logits = xcalloc(S->a, (size_t)R * m->hp.n_vocab, sizeof(float));
    if (!S->waiting || !S->running || !S->order || !S->b_tokens || !S->b_pos || !S->b_seq || !S->b_want ||
        !S->b_seqs || !S->members || !S->logits || tenant_add(S, "", &t0)) {
        llms_scheduler_destroy(S);
        return ERR_OOM();
    }
    xfree(S->a, S->tenants[0].group);
    S->tenants[0].group = xstrndup(S->a, "t:", 2);
    if (!S->tenants[0].group) {
        llms_scheduler_destroy(S);
        return ERR_OOM();
    }
    if (p.flags & LLMS_SCHEDULER_OWN_THREAD) {
        if (pthread_create(&S->thread, NULL, worker_main, S) != 0) {
            llms_scheduler_destroy(S);
            return err_set(LLMS_ERR_INTERNAL, "could not start the scheduler thread");
        }
        S->has_thread = 1;
    }
    *out = S;
    return LLMS_OK;
}

static void free_events(llms_scheduler *S, ev_item *e) {
    while (e) {
        ev_item *n = e->next;
        xfree(S->a, e->text);
        xfree(S->a, e);
        e = n;
    }
}

LLMS_API void llms_scheduler_destroy(llms_scheduler *S) {
    if (!S) return;
    if (S->has_thread) {
        pthread_mutex_lock(&S->lock);
        S->stop = 1;
        pthread_cond_broadcast(&S->work_cv);
        pthread_mutex_unlock(&S->lock);
        pthread_join(S->thread, NULL);
    }
    for (uint32_t i = 0; S->waiting && i < S->n_waiting; i++) request_free(S, S->waiting[i]);
    for (uint32_t i = 0; S->running && i < S->n_running; i++) request_free(S, S->running[i]);
    /* The sessions' KV blocks are free: device memory goes back. */
    if (S->n_waiting + S->n_running) backend_kv_trim(S->m);
    free_events(S, S->ev_head);
    free_events(S, S->step_head);
    for (uint32_t i = 0; i < S->n_tenants; i++) {
        xfree(S->a, S->tenants[i].name);
        xfree(S->a, S->tenants[i].group);
    }
    xfree(S->a, S->tenants);
    xfree(S->a, S->waiting);
    xfree(S->a, S->running);
    xfree(S->a, S->order);
    xfree(S->a, S->b_tokens);
    xfree(S->a, S->b_pos);
    xfree(S->a, S->b_seq);
    xfree(S->a, S->b_want);
    xfree(S->a, S->b_seqs);
    xfree(S->a, S->members);
    xfree(S->a, S->logits);
    if (S->sync_ready) {
        pthread_mutex_destroy(&S->lock);
        pthread_mutex_destroy(&S->step_lock);
        pthread_cond_destroy(&S->work_cv);
        pthread_cond_destroy(&S->event_cv);
    }
    xfree(S->a, S);
}

/* ---- submit / cancel ---- */

LLMS_API llms_status llms_scheduler_submit(llms_scheduler *S, const llms_request_params *req, uint64_t *id) {
    if (id) *id = 0;
    if (!S || !req || !id) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_scheduler_submit: NULL argument");
    llms_request_params rp;
    llms_request_params_init(&rp);
    if (!params_merge(&rp, sizeof rp, req))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_request_params: struct_size too small");
    if ((!rp.prompt && rp.prompt_len) || (!rp.tokens && rp.n_tokens))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "prompt or tokens is NULL with a length");
    double now = sched_now();

    /* Cheap refusals first, so an overloaded server answers at once. */
    pthread_mutex_lock(&S->lock);
    int32_t ti = tenant_find(S, rp.tenant);
    llms_status st = LLMS_OK;
    if (ti < 0) st = err_set(LLMS_ERR_NOT_FOUND, "unknown tenant (register it with llms_scheduler_set_tenant)");
    else if (S->n_waiting + S->n_reserved >= S->p.queue_capacity)
        st = err_set(LLMS_ERR_BUSY, "the queue is full (%u requests)", S->p.queue_capacity);
    else {
        tenant *t = &S->tenants[ti];
        tenant_refill(t, now);
        if (t->p.tokens_per_minute && t->bucket < 1.0)
            st = err_set(LLMS_ERR_RATE_LIMITED, "tenant token rate limit reached");
    }
    if (st) {
        S->mx.outcome[OUT_REJECTED]++;
        if (ti >= 0) S->tenants[ti].outcome[OUT_REJECTED]++;
        pthread_mutex_unlock(&S->lock);
        return st;
    }
    S->n_reserved++;  /* holds a queue slot while the prompt is tokenized */
    tenant tcopy = S->tenants[ti];
    pthread_mutex_unlock(&S->lock);

    request *r = xcalloc(S->a, 1, sizeof *r);
    tok_vec v = {0};
    if (!r) { st = ERR_OOM(); goto fail; }
    r->term = xcalloc(S->a, 1, sizeof *r->term);
    if (r->term) r->term->text = xcalloc(S->a, 1, 1);
    if (!r->term || !r->term->text) { st = ERR_OOM(); goto fail; }
    if (rp.prompt_len) {
        uint32_t tf = rp.flags & (LLMS_REQUEST_ADD_BOS | LLMS_REQUEST_PARSE_SPECIAL | LLMS_REQUEST_MODEL_DEFAULTS);
        if ((st = tok_encode(S->m->tok, rp.prompt, rp.prompt_len, tf, &v))) goto fail;
    }
    uint64_t n = (uint64_t)v.n + rp.n_tokens;
    if (n == 0) { st = err_set(LLMS_ERR_INVALID_ARGUMENT, "the request has no prompt"); goto fail; }
    if (n > S->p.n_ctx || (tcopy.p.max_prompt_tokens && n > tcopy.p.max_prompt_tokens)) {
        st = err_set(LLMS_ERR_PROMPT_TOO_LONG, "a prompt of %llu tokens exceeds the limit", (unsigned long long)n);
        goto fail;
    }
    r->prompt = xcalloc(S->a, (size_t)n, sizeof *r->prompt);
    if (!r->prompt) { st = ERR_OOM(); goto fail; }
    if (v.n) memcpy(r->prompt, v.data, v.n * sizeof *r->prompt);
    if (rp.n_tokens) memcpy(r->prompt + v.n, rp.tokens, rp.n_tokens * sizeof *r->prompt);
    r->n_prompt = (uint32_t)n;
    for (uint32_t i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= (int32_t)S->m->hp.n_vocab) {
            st = err_set(LLMS_ERR_TOKEN_RANGE, "token %d is outside the vocabulary", r->prompt[i]);
            goto fail;
        }
    /* The session is created now so that bad sampling parameters fail the
     * submit, and because the sampling parameters' strings are only
     * guaranteed to live during this call. */
    llms_session_params sp;
    llms_session_params_init(&sp);
    sp.n_ctx = S->p.n_ctx;
    if ((st = llms_session_create(S->m, &sp, &r->s))) goto fail;
    if ((st = session_batch_load(r->s, r->prompt, r->n_prompt))) goto fail;
    llms_sampling_params smp;
    llms_sampling_params_init(&smp);
    if (rp.sampling && !params_merge(&smp, sizeof smp, rp.sampling)) {
        st = err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_sampling_params: struct_size too small");
        goto fail;
    }
    if (tcopy.p.max_output_tokens &&
        (smp.max_tokens < 0 || (uint32_t)smp.max_tokens > tcopy.p.max_output_tokens))
        smp.max_tokens = (int32_t)tcopy.p.max_output_tokens;
    if ((st = llms_session_generate_begin(r->s, &smp))) goto fail;
    xfree(S->a, v.data);
    v.data = NULL;
    r->tenant = (uint32_t)ti;
    r->priority = rp.priority;
    r->user_tag = rp.user_tag;
    r->t_submit = now;
    r->t_deadline = rp.deadline_ms ? now + rp.deadline_ms / 1000.0 : 0;
    r->state = RQ_QUEUED;

    pthread_mutex_lock(&S->lock);
    S->n_reserved--;
    if (waiting_push(S, r)) {
        pthread_mutex_unlock(&S->lock);
        request_free(S, r);
        return ERR_OOM();
    }
    r->id = S->next_id++;
    S->mx.submitted++;
    S->tenants[ti].submitted++;
    if (S->tenants[ti].p.tokens_per_minute) S->tenants[ti].bucket -= r->n_prompt;
    *id = r->id;
    pthread_cond_broadcast(&S->work_cv);
    pthread_mutex_unlock(&S->lock);
    return LLMS_OK;

fail:
    xfree(S->a, v.data);
    request_free(S, r);
    pthread_mutex_lock(&S->lock);
    S->n_reserved--;
    S->mx.outcome[OUT_REJECTED]++;
    S->tenants[ti].outcome[OUT_REJECTED]++;
    pthread_mutex_unlock(&S->lock);
    return st;
}

LLMS_API llms_status llms_scheduler_cancel(llms_scheduler *S, uint64_t id) {
    if (!S) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_scheduler_cancel: scheduler is NULL");
    llms_status st = err_set(LLMS_ERR_NOT_FOUND, "no request %llu in progress", (unsigned long long)id);
    pthread_mutex_lock(&S->lock);
    for (uint32_t i = 0; i < S->n_waiting; i++)
        if (S->waiting[i]->id == id) { S->waiting[i]->cancel = 1; st = LLMS_OK; }
    for (uint32_t i = 0; i < S->n_running; i++)
        if (S->running[i]->id == id) { S->running[i]->cancel = 1; st = LLMS_OK; }
    if (!st) {
        err_clear();
        pthread_cond_broadcast(&S->work_cv);
    }
    pthread_mutex_unlock(&S->lock);
    return st;
}

/* ---- one step ---- */

/* Ageing: one level per aging_ms waited since submission, so nothing
 * starves; but only up to `top`, the highest base priority among the
 * requests r competes with. A request that waited long thus competes as an
 * equal of the most urgent ones instead of overtaking them, and requests of
 * one base priority stay equals whatever their age: between tenants the
 * fair share decides, not who submitted first (otherwise a flood older than
 * aging_ms would again take every slot and the whole prefill budget). */
static double eff_priority(const llms_scheduler *S, const request *r, double now, int32_t top) {
    double k = (double)r->priority + (double)(int64_t)((now - r->t_submit) * 1000.0 / S->p.aging_ms);
    if (k > top) k = top;
    return k > r->priority ? k : (double)r->priority;
}

/* The highest base priority among the requests of arr in state `state`. */
static int32_t top_priority(request *const *arr, uint32_t n, int state) {
    int32_t top = INT32_MIN;
    for (uint32_t i = 0; i < n; i++)
        if (arr[i]->state == state && arr[i]->priority > top) top = arr[i]->priority;
    return top;
}

static int cmp_order(const void *a, const void *b) {
    const request *x = *(request *const *)a, *y = *(request *const *)b;
    if (x->key != y->key) return x->key > y->key ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Remove RQ_DONE requests (and those moved away) from an array, freeing done ones. */
static void compact(llms_scheduler *S, request **arr, uint32_t *n, int state_keep) {
    uint32_t k = 0;
    for (uint32_t i = 0; i < *n; i++) {
        request *r = arr[i];
        if (r->state == RQ_DONE) request_free(S, r);
        else if ((int)r->state == state_keep) arr[k++] = r;
    }
    *n = k;
}

/* The KV bytes the running requests may hold: kv_budget_bytes, and the
 * device's capacity once a device out of memory revealed it (it then
 * bounds the KV like a budget: make_room evicts and preempts to stay under
 * it instead of the allocation failing). UINT64_MAX: no limit. Caller
 * holds lock. */
static uint64_t kv_limit(const llms_scheduler *S) {
    uint64_t lim = S->p.kv_budget_bytes ? S->p.kv_budget_bytes : UINT64_MAX;
    return S->dev_limited && S->dev_kv_limit < lim ? S->dev_kv_limit : lim;
}

/* 1 if the KV limit in force is the device's rather than the budget. */
static int kv_limit_is_device(const llms_scheduler *S) {
    return S->dev_limited && (!S->p.kv_budget_bytes || S->dev_kv_limit < S->p.kv_budget_bytes);
}

/* A KV block could not be allocated for want of device memory: from now
 * on the KV limit is what the device's storage holds now (all of it in
 * use: it only grows when no slot is free). Returns 1 if that is news,
 * so that making room under it and allocating again may succeed; 0 if the
 * scheduler already kept to that limit (blocks taken outside it, by
 * sessions of the same model for instance). Caller holds lock. */
static int learn_device_limit(llms_scheduler *S) {
    uint64_t cap = backend_kv_capacity(S->m);
    if (cap == UINT64_MAX) return 0;  /* host blocks: not the device's */
    if (S->dev_limited && S->dev_kv_limit <= cap) return 0;
    S->dev_limited = 1;
    S->dev_kv_limit = cap;
    return 1;
}

/* Attach what the prefix cache holds of r's prompt (never all of it: the
 * last prompt token is always evaluated, for its logits). */
static void attach_cached(llms_scheduler *S, request *r, int first) {
    if (!S->p.cache) return;
    uint32_t n_cached = 0;
    if (pcache_acquire(S->p.cache, S->tenants[r->tenant].group, r->prompt, r->n_prompt, r->n_prompt - 1, r->s,
                       &n_cached) != LLMS_OK)
        n_cached = 0;  /* a cache failure only costs recomputation */
    r->inserted = n_cached / KV_BLOCK_TOKENS;
    if (first) {
        r->cached_reported = n_cached;
        S->mx.cached_tokens += n_cached;
        S->tenants[r->tenant].cached_tokens += n_cached;
    }
}

/* Whether waiting request x goes before y (both of level `key`): first the
 * tenant holding fewer running slots for its weight, then the one served
 * less for its weight, then the older request. */
static int admit_before(const llms_scheduler *S, const request *x, const request *y) {
    const tenant *tx = &S->tenants[x->tenant], *ty = &S->tenants[y->tenant];
    uint64_t sx = (uint64_t)tx->running * ty->p.weight, sy = (uint64_t)ty->running * tx->p.weight;
    if (sx != sy) return sx < sy;
    if (tx->vtime != ty->vtime) return tx->vtime < ty->vtime;
    return x->id < y->id;
}

/* Move waiting[i] to the running set. Caller holds lock. */
static void admit_one(llms_scheduler *S, uint32_t i, double now) {
    request *r = S->waiting[i];
    memmove(S->waiting + i, S->waiting + i + 1, (S->n_waiting - i - 1) * sizeof *S->waiting);
    S->n_waiting--;
    r->state = RQ_RUNNING;
    S->running[S->n_running++] = r;
    S->tenants[r->tenant].running++;
    if (!r->admitted) {
        r->admitted = 1;
        histo_observe(&S->mx.queue_time, now - r->t_submit);
        S->mx.prompt_tokens += r->n_prompt;
        S->tenants[r->tenant].prompt_tokens += r->n_prompt;
    }
    if (r->s->kv.n_blocks == 0 && r->s->n_eval == 0) attach_cached(S, r, !r->started);
    r->started = 1;
}

/* With every slot taken, a request whose tenant holds less than its share
 * of max_running (by weight, among the tenants with work) may take the slot
 * of a request of a tenant holding more than its share, of no higher
 * level: the running request that computed least is sent back to wait.
 * Otherwise a tenant that filled the slots first would keep another's
 * request out until one of its own finished. The move leaves the one below
 * its share and the other still at or above it, so it is never undone while
 * the shares stay the same. Returns the victim's index in running, or -1. */
static int32_t slot_victim(llms_scheduler *S, const request *cand, double now, int32_t top) {
    uint64_t W = 0, R = S->p.max_running;
    for (uint32_t t = 0; t < S->n_tenants; t++)
        if (S->tenants[t].backlog) W += S->tenants[t].p.weight;
    const tenant *tc = &S->tenants[cand->tenant];
    if ((tc->running + 1ull) * W > R * tc->p.weight) return -1;
    int32_t best = -1;
    double bkey = 0;
    for (uint32_t i = 0; i < S->n_running; i++) {
        request *v = S->running[i];
        const tenant *tv = &S->tenants[v->tenant];
        if (v->state != RQ_RUNNING || !tv->running || (tv->running - 1ull) * W < R * tv->p.weight) continue;
        double k = eff_priority(S, v, now, top);
        if (k > cand->key) continue;
        request *b = best < 0 ? NULL : S->running[best];
        if (!b || k < bkey || (k == bkey && (v->s->n_eval < b->s->n_eval ||
                                             (v->s->n_eval == b->s->n_eval && v->id > b->id)))) {
            best = (int32_t)i;
            bkey = k;
        }
    }
    return best;
}

/* Admit waiting requests into the running set. Caller holds lock. */
static void admit(llms_scheduler *S, double now) {
    /* Levels against the top priority of waiting and running requests alike. */
    int32_t top = top_priority(S->waiting, S->n_waiting, RQ_QUEUED);
    int32_t top_r = top_priority(S->running, S->n_running, RQ_RUNNING);
    if (top_r > top) top = top_r;
    for (uint32_t t = 0; t < S->n_tenants; t++) S->tenants[t].backlog = 0;
    for (uint32_t i = 0; i < S->n_waiting; i++) S->tenants[S->waiting[i]->tenant].backlog = 1;
    for (uint32_t i = 0; i < S->n_running; i++) S->tenants[S->running[i]->tenant].backlog = 1;
    /* Each pass admits one request or ends; a slot taken for the fair
     * share ends it too after max_running moves, a bound never reached in
     * practice (see slot_victim). */
    for (uint32_t moves = 0;;) {
        int32_t best = -1;
        for (uint32_t i = 0; i < S->n_waiting; i++) {
            request *r = S->waiting[i];
            if (r->state != RQ_QUEUED) continue;
            tenant *t = &S->tenants[r->tenant];
            if (t->p.max_concurrent && t->running >= t->p.max_concurrent) continue;
            r->key = eff_priority(S, r, now, top);
            request *b = best < 0 ? NULL : S->waiting[best];
            if (!b || r->key > b->key || (r->key == b->key && admit_before(S, r, b))) best = (int32_t)i;
        }
        if (best < 0) break;
        request *r = S->waiting[best];
        if (S->n_running >= S->p.max_running) {
            int32_t v = moves < S->p.max_running ? slot_victim(S, r, now, top) : -1;
            if (v < 0) break;
            moves++;
            preempt(S, S->running[v]);  /* appends to waiting: `best` stays valid */
            compact(S, S->running, &S->n_running, RQ_RUNNING);
        } else if (kv_limit(S) != UINT64_MAX && S->n_running) {
            /* Admit only what the KV limit can start (a first chunk of its
             * tokens), evicting unused cache blocks for it; otherwise a
             * request admitted now would only be preempted again in this
             * step. With nothing running, admit anyway: the step then finds
             * out whether the request fits at all. */
            uint64_t bb = kv_block_bytes(&S->m->kv), lim = kv_limit(S);
            uint32_t first = r->s->n_tokens < S->p.max_batch_tokens ? r->s->n_tokens : S->p.max_batch_tokens;
            uint64_t need = ((uint64_t)first / KV_BLOCK_TOKENS + 1) * bb;
            while (kv_pool_used_bytes(&S->m->kv) + need > lim && S->p.cache && pcache_evict(S->p.cache, 1)) {}
            if (kv_pool_used_bytes(&S->m->kv) + need > lim) break;
        }
        admit_one(S, (uint32_t)best, now);
    }
}

/* Append to the waiting array, growing it: preempted requests come back
 * on top of up to queue_capacity new ones. Caller holds lock. */
static llms_status waiting_push(llms_scheduler *S, request *r) {
    if (S->n_waiting == S->cap_waiting) {
        uint32_t cap = S->cap_waiting + S->p.max_running;
        request **w = xrealloc_array(S->a, S->waiting, cap, sizeof *w);
        if (!w) return ERR_OOM();
        S->waiting = w;
        S->cap_waiting = cap;
    }
    S->waiting[S->n_waiting++] = r;
    return LLMS_OK;
}

/* Send r back to the waiting queue without its KV blocks. Caller holds lock. */
static void preempt(llms_scheduler *S, request *r) {
    session_batch_drop_kv(r->s);
    r->state = RQ_QUEUED;
    tenant *t = &S->tenants[r->tenant];
    if (t->running) t->running--;
    S->mx.preemptions++;
    if (waiting_push(S, r)) terminate(S, r, LLMS_EVENT_ERROR, LLMS_FINISH_ERROR, ERR_OOM(), -1, NULL, 0);
}

/* Blocks the session needs for `n` more positions, counting the copy of a
 * shared partial block it is about to write into. */
static uint32_t blocks_needed(llms_scheduler *S, const llms_session *s, uint32_t n) {
    uint32_t need = (s->n_eval + n + KV_BLOCK_TOKENS - 1) / KV_BLOCK_TOKENS;
    uint32_t extra = need > s->kv.n_blocks ? need - s->kv.n_blocks : 0;
    uint32_t wb = s->n_eval / KV_BLOCK_TOKENS;
    if (n && s->n_eval % KV_BLOCK_TOKENS && wb < s->kv.n_blocks &&
        kv_block_refcount(&S->m->kv, s->kv.blocks[wb]) > 1)
        extra++;
    return extra;
}

/* Make room for `blocks` new blocks under the KV limit: evict unused cache
 * blocks, then preempt running requests ordered after position `self` in
 * S->order. Returns 1 if it fits. Caller holds lock. */
static int make_room(llms_scheduler *S, uint32_t blocks, uint32_t self, uint32_t n_order) {
    uint64_t lim = kv_limit(S);
    if (lim == UINT64_MAX) return 1;
    uint64_t bb = kv_block_bytes(&S->m->kv);
    for (;;) {
        uint64_t used = kv_pool_used_bytes(&S->m->kv);
        if (used + (uint64_t)blocks * bb <= lim) return 1;
        if (S->p.cache && pcache_evict(S->p.cache, 1)) continue;
        int32_t victim = -1;
        for (uint32_t i = n_order; i-- > self + 1;) {
            request *v = S->order[i];
            if (v->state == RQ_RUNNING && !v->in_batch && v->s->kv.n_blocks) { victim = (int32_t)i; break; }
        }
        if (victim < 0) return 0;
        preempt(S, S->order[victim]);
    }
}

/* Deliver what the step produced: to the callback, or to the poll queue. */
static void deliver(llms_scheduler *S) {
    ev_item *head = S->step_head;
    S->step_head = S->step_tail = NULL;
    if (!head) return;
    if (S->p.event_fn) {
        pthread_mutex_unlock(&S->lock);
        for (ev_item *e = head; e; e = e->next) {
            e->ev.text_buf = e->text;
            e->ev.text_cap = e->ev.text_len + 1;
            S->p.event_fn(S->p.event_user, &e->ev);
        }
        pthread_mutex_lock(&S->lock);
        free_events(S, head);
        return;
    }
    ev_item *tail = head;
    while (tail->next) tail = tail->next;
    if (S->ev_tail) S->ev_tail->next = head;
    else S->ev_head = head;
    S->ev_tail = tail;
    pthread_cond_broadcast(&S->event_cv);
}

/* Sample and stream for r after its pending tokens were evaluated. Caller holds lock. */
static void generate_one(llms_scheduler *S, request *r, double now) {
    llms_step_result res;
    llms_step_result_init(&res);
    llms_status st = llms_session_step(r->s, &res);
    tenant *t = &S->tenants[r->tenant];
    if (st == LLMS_TOKEN) {
        if (!r->t_first) {
            r->t_first = now;
            histo_observe(&S->mx.ttft, now - r->t_submit);
            histo_observe(&t->ttft, now - r->t_submit);
        } else {
            histo_observe(&S->mx.tbt, now - r->t_last);
        }
        r->t_last = now;
        S->mx.generated_tokens++;
        t->generated_tokens++;
        if (t->p.tokens_per_minute) t->bucket -= 1;
        emit(S, r, LLMS_EVENT_TOKEN, LLMS_FINISH_NONE, LLMS_OK, res.token, res.text, res.text_len);
        if (r->lost_event)
            terminate(S, r, LLMS_EVENT_ERROR, LLMS_FINISH_ERROR, LLMS_ERR_NO_MEMORY, -1, NULL, 0);
    } else if (st == LLMS_DONE) {
        terminate(S, r, LLMS_EVENT_FINISHED, res.finish_reason, LLMS_OK, res.token, res.text, res.text_len);
    } else {
        terminate(S, r, LLMS_EVENT_ERROR, LLMS_FINISH_ERROR, st, -1, NULL, 0);
    }
}

/* The batch being built in one step. */
typedef struct batch_fill {
    uint32_t budget, nt, nm;    /* tokens left; tokens and members so far */
    int deferred;               /* a request did not fit the KV budget */
} batch_fill;

/* Put up to `want` (> 0) pending tokens of S->order[i] into the batch,
 * within the token budget and the KV budget (which may preempt requests
 * ordered after it). Returns the tokens placed: 0 if it was deferred or
 * ended. Caller holds lock. */
static uint32_t place(llms_scheduler *S, batch_fill *bf, uint32_t i, uint32_t n_order, uint32_t want) {
    request *r = S->order[i];
    llms_session *s = r->s;
    uint32_t chunk;
    /* A device out of memory for the KV blocks is an exhausted budget: the
     * limit learnt (learn_device_limit), room is made under it as for the
     * budget and the reservation tried again, from blocks freed now. The
     * request fails only where no room can be made (deferred, and ended by
     * step_locked if it cannot run even alone). A few rounds at most: each
     * learns a smaller limit, and a reservation that fails under a known
     * limit means another user of the model took the blocks (deferred). */
    for (int round = 0;; round++) {
        chunk = want < bf->budget ? want : bf->budget;
        uint32_t need = blocks_needed(S, s, chunk);
        if (need && !make_room(S, need, i, n_order)) {
            /* Try a smaller prompt chunk that fits the blocks it has. */
            uint32_t room = s->kv.n_blocks * KV_BLOCK_TOKENS - s->n_eval;
            if (!room || room >= chunk) { bf->deferred = 1; return 0; }
            /* It may still need a copy of a shared partial block. */
            uint32_t cow = blocks_needed(S, s, room);
            if (cow && !make_room(S, cow, i, n_order)) { bf->deferred = 1; return 0; }
            chunk = room;
        }
        llms_status st = kv_seq_reserve(&S->m->kv, &s->kv, s->n_eval + chunk, s->n_eval);
        if (st == LLMS_OK) break;
        if (st == LLMS_ERR_DEVICE_MEMORY) {
            if (round < 4 && learn_device_limit(S)) continue;
            bf->deferred = 1;
            return 0;
        }
        terminate(S, r, LLMS_EVENT_ERROR, LLMS_FINISH_ERROR, st, -1, NULL, 0);
        return 0;
    }
    uint32_t nt = bf->nt, nm = bf->nm;
    for (uint32_t k = 0; k < chunk; k++) {
        S->b_tokens[nt + k] = s->tokens[s->n_eval + k];
        S->b_pos[nt + k] = s->n_eval + k;
        S->b_seq[nt + k] = nm;
        S->b_want[nt + k] = 0;
    }
    S->b_want[nt + chunk - 1] = s->n_eval + chunk == s->n_tokens;
    S->b_seqs[nm] = &s->kv;
    S->members[nm].r = r;
    S->members[nm].n = chunk;
    bf->nm = nm + 1;
    bf->nt = nt + chunk;
    bf->budget -= chunk;
    r->in_batch = 1;
    S->tenants[r->tenant].step_tokens += chunk;
    return chunk;
}

/* A tenant's level in the water-filling: its virtual time plus the tokens
 * this step already gave it, over its weight. */
static double fair_level(const tenant *t) { return t->vtime + (double)t->step_tokens / t->p.weight; }

/* Prompt tokens t gets at water level L (its demand at most). */
static uint64_t fair_take(const tenant *t, double L) {
    double x = (L - fair_level(t)) * t->p.weight;
    if (x <= 0) return 0;
    return x >= t->demand ? t->demand : (uint64_t)x;
}

/* Share `budget` tokens between the tenants with a demand by weighted
 * water-filling: the water rises from the lowest level and lifts each
 * tenant it reaches by tokens in proportion to its weight, until the budget
 * is spent or every demand met. So the tenants behind in service are
 * served first, then all advance together by weight, and a lone tenant
 * takes the whole budget. Writes t->alloc. Caller holds lock. */
static void water_fill(llms_scheduler *S, uint32_t budget) {
    uint64_t total = 0;
    double lo = 0, hi = 0;
    int any = 0;
    for (uint32_t i = 0; i < S->n_tenants; i++) {
        tenant *t = &S->tenants[i];
        t->alloc = 0;
        if (!t->demand) continue;
        double b = fair_level(t), e = b + (double)t->demand / t->p.weight;
        if (!any || b < lo) lo = b;
        if (!any || e > hi) hi = e;
        any = 1;
        total += t->demand;
    }
    if (total <= budget) {
        for (uint32_t i = 0; i < S->n_tenants; i++) S->tenants[i].alloc = S->tenants[i].demand;
        return;
    }
    /* The highest level whose tokens fit the budget, by bisection (the sum
     * is monotone in the level): enough steps to reach a double's precision. */
    for (int it = 0; it < 100 && lo < hi; it++) {
        double mid = lo + (hi - lo) / 2;
        if (mid <= lo || mid >= hi) break;
        uint64_t sum = 0;
        for (uint32_t i = 0; i < S->n_tenants; i++)
            if (S->tenants[i].demand) sum += fair_take(&S->tenants[i], mid);
        if (sum <= budget) lo = mid;
        else hi = mid;
    }
    uint64_t used = 0;
    for (uint32_t i = 0; i < S->n_tenants; i++) {
        tenant *t = &S->tenants[i];
        if (t->demand) used += t->alloc = (uint32_t)fair_take(t, lo);
    }
    /* What rounding left (a token or so per tenant) goes one token at a
     * time to the lowest level, the first tenant on a tie. */
    while (used < budget) {
        tenant *best = NULL;
        double bl = 0;
        for (uint32_t i = 0; i < S->n_tenants; i++) {
            tenant *t = &S->tenants[i];
            if (t->alloc >= t->demand) continue;
            double l = fair_level(t) + (double)t->alloc / t->p.weight;
            if (!best || l < bl) { best = t; bl = l; }
        }
        if (!best) break;
        best->alloc++;
        used++;
    }
    /* A tenant whose whole demand was met stayed below the water line: it
     * is raised to it, as if it had used its share, so a share it had no
     * work for is not saved up to later outrun the others. */
    for (uint32_t i = 0; i < S->n_tenants; i++) {
        tenant *t = &S->tenants[i];
        if (!t->demand || t->alloc < t->demand) continue;
        double l = fair_level(t) + (double)t->alloc / t->p.weight;
        if (l < lo) t->vtime += lo - l;
    }
}

/* Tenants with prompt tokens to evaluate are active. One that was not in
 * the last step starts at the lowest virtual time of those that were (or,
 * if none was, all that wake up together start level), so that neither
 * idle time counts as credit nor past service as debt. Caller holds lock. */
static void fair_wake(llms_scheduler *S, uint32_t n_order) {
    for (uint32_t t = 0; t < S->n_tenants; t++) S->tenants[t].want = 0;
    for (uint32_t i = 0; i < n_order; i++) {
        request *r = S->order[i];
        if (r->state == RQ_RUNNING && !r->in_batch && r->s->n_eval < r->n_prompt) S->tenants[r->tenant].want = 1;
    }
    double vmin = 0, vmax = 0;
    int old = 0, woke = 0;
    for (uint32_t i = 0; i < S->n_tenants; i++) {
        tenant *t = &S->tenants[i];
        if (!t->want) continue;
        if (t->active) {
            if (!old || t->vtime < vmin) vmin = t->vtime;
            old = 1;
        } else {
            if (!woke || t->vtime > vmax) vmax = t->vtime;
            woke = 1;
        }
    }
    for (uint32_t i = 0; i < S->n_tenants; i++) {
        tenant *t = &S->tenants[i];
        if (t->want && !t->active) {
            double v = old ? vmin : vmax;
            if (t->vtime < v) t->vtime = v;
        }
        t->active = t->want;
    }
}

/* The prompt part of the batch. Level by level of effective priority
 * (requests of equal level are contiguous in S->order), the budget left is
 * shared between the tenants with prompts at that level by water_fill,
 * counting the decode tokens they already have in the batch; each tenant's
 * share goes to its own requests in order (priority, then age), so its
 * oldest prompt finishes first. Whatever the KV budget kept a tenant from
 * using goes to any prompt that still fits, in order, so no budget is lost
 * to the sharing. Caller holds lock. */
static void fair_prefill(llms_scheduler *S, batch_fill *bf, uint32_t n_order) {
    fair_wake(S, n_order);
    for (uint32_t lo = 0, hi; lo < n_order && bf->budget; lo = hi) {
        for (hi = lo + 1; hi < n_order && S->order[hi]->key == S->order[lo]->key; hi++) {}
        for (uint32_t t = 0; t < S->n_tenants; t++) S->tenants[t].demand = 0;
        for (uint32_t i = lo; i < hi; i++) {
            request *r = S->order[i];
            if (r->state != RQ_RUNNING || r->in_batch || r->s->n_eval >= r->n_prompt) continue;
            tenant *t = &S->tenants[r->tenant];
            uint32_t pending = r->s->n_tokens - r->s->n_eval;
            /* Not capped at the budget: a tenant whose demand exceeds its
             * share must not look satisfied to water_fill. */
            t->demand = pending < UINT32_MAX - t->demand ? t->demand + pending : UINT32_MAX;
        }
        water_fill(S, bf->budget);
        for (uint32_t i = lo; i < hi && bf->budget; i++) {
            request *r = S->order[i];
            if (r->state != RQ_RUNNING || r->in_batch || r->s->n_eval >= r->n_prompt) continue;
            tenant *t = &S->tenants[r->tenant];
            uint32_t pending = r->s->n_tokens - r->s->n_eval;
            uint32_t want = pending < t->alloc ? pending : t->alloc;
            if (want) t->alloc -= place(S, bf, i, n_order, want);
        }
    }
    for (uint32_t i = 0; i < n_order && bf->budget; i++) {
        request *r = S->order[i];
        if (r->state != RQ_RUNNING || r->in_batch || r->s->n_eval >= r->n_prompt) continue;
        place(S, bf, i, n_order, r->s->n_tokens - r->s->n_eval);
    }
}

/* One step. Caller holds step_lock. Returns LLMS_AGAIN if nothing happened. */
static llms_status step_locked(llms_scheduler *S, int32_t *n_events) {
    double now = sched_now();
    pthread_mutex_lock(&S->lock);
    S->step_events = 0;
    if (S->n_running || S->n_waiting) S->busy = 1;
    if (S->dev_limited) {
        /* The storage grew meanwhile (for a session of the same model):
         * the device had the memory, so the limit rises with it. */
        uint64_t cap = backend_kv_capacity(S->m);
        if (cap != UINT64_MAX && cap > S->dev_kv_limit) S->dev_kv_limit = cap;
    }
    /* 1. Cancellations and deadlines: terminal events and memory released now. */
    for (uint32_t pass = 0; pass < 2; pass++) {
        request **arr = pass ? S->running : S->waiting;
        uint32_t n = pass ? S->n_running : S->n_waiting;
        for (uint32_t i = 0; i < n; i++) {
            request *r = arr[i];
            if (r->cancel)
                terminate(S, r, LLMS_EVENT_FINISHED, LLMS_FINISH_CANCELLED, LLMS_ERR_CANCELLED, -1, NULL, 0);
            else if (r->t_deadline && now >= r->t_deadline)
                terminate(S, r, LLMS_EVENT_FINISHED, LLMS_FINISH_TIMEOUT, LLMS_ERR_TIMEOUT, -1, NULL, 0);
        }
    }
    compact(S, S->waiting, &S->n_waiting, RQ_QUEUED);
    compact(S, S->running, &S->n_running, RQ_RUNNING);

    /* 2. Admission. */
    admit(S, now);

    /* 3. Requests that end without a forward pass (max_tokens reached...). */
    for (uint32_t i = 0; i < S->n_running; i++) {
        request *r = S->running[i];
        if (!session_batch_needs_eval(r->s)) generate_one(S, r, now);
    }
    compact(S, S->running, &S->n_running, RQ_RUNNING);

    /* 4. Build the batch: decode tokens first (one per request, in
     * priority order), then prompt chunks, shared between tenants by
     * weight at each level of priority (fair_prefill), under the token and
     * memory budgets. */
    uint32_t n_order = S->n_running;
    int32_t top = top_priority(S->running, n_order, RQ_RUNNING);
    for (uint32_t i = 0; i < n_order; i++) {
        request *r = S->running[i];
        S->order[i] = r;
        r->key = eff_priority(S, r, now, top);
        r->in_batch = 0;
    }
    qsort(S->order, n_order, sizeof *S->order, cmp_order);
    for (uint32_t t = 0; t < S->n_tenants; t++) S->tenants[t].step_tokens = 0;
    uint32_t budget = S->p.max_batch_tokens;
    if (S->dev_batch_cap && S->dev_batch_cap < budget) budget = S->dev_batch_cap;
    batch_fill bf = {budget, 0, 0, 0};
    for (uint32_t i = 0; i < n_order && bf.budget; i++) {
        request *r = S->order[i];
        if (r->state != RQ_RUNNING) continue;
        uint32_t pending = r->s->n_tokens - r->s->n_eval;
        if (pending == 0 || r->s->n_eval < r->n_prompt) continue;
        place(S, &bf, i, n_order, pending);
    }
    fair_prefill(S, &bf, n_order);
    uint32_t nt = bf.nt, nm = bf.nm;
    if (nm == 0 && bf.deferred) {
        /* Nothing fits even with every lower-priority request preempted:
         * the first deferred request cannot run within the limit. */
        for (uint32_t i = 0; i < n_order; i++) {
            request *r = S->order[i];
            if (r->state != RQ_RUNNING) continue;
            llms_status est =
                kv_limit_is_device(S)
                    ? err_set(LLMS_ERR_DEVICE_MEMORY,
                              "the request's KV cache does not fit the device's memory even alone "
                              "(%llu bytes of KV blocks)",
                              (unsigned long long)S->dev_kv_limit)
                    : err_set(LLMS_ERR_NO_MEMORY, "the request does not fit the KV budget");
            terminate(S, r, LLMS_EVENT_ERROR, LLMS_FINISH_ERROR, est, -1, NULL, 0);
            break;
        }
    }
    compact(S, S->running, &S->n_running, RQ_RUNNING);
    S->mx.last_batch = nt;

    /* 5. The forward pass, without the lock: submit, cancel and poll go on. */
    llms_status fst = LLMS_OK;
    if (nm) {
        pthread_mutex_unlock(&S->lock);
        fwd_batch b = {nt, S->b_tokens, S->b_pos, S->b_seq, S->b_want, S->b_seqs, nm,
                       (S->p.flags & LLMS_SCHEDULER_DETERMINISTIC) ? FWD_DETERMINISTIC : 0};
        fst = backend_forward(S->m, &b, S->logits);
        pthread_mutex_lock(&S->lock);
        now = sched_now();
        S->mx.steps++;
        histo_observe(&S->mx.batch, nt);
    }

    /* 6. Commit, cache full prompt blocks, sample and stream.
     * A device out of memory in the pass (scratch buffers that grow with
     * the batch; KV blocks were reserved before it) is an exhausted
     * budget too: nothing of the batch is committed, its requests are
     * preempted (recomputed later, their output unchanged) and later
     * batches take at most half as many tokens, until the scheduler is
     * idle again. A batch of one token that still does not fit fails. */
    const int shrink = fst == LLMS_ERR_DEVICE_MEMORY && nt > 1;
    if (shrink) S->dev_batch_cap = nt / 2;
    uint32_t li = 0;
    for (uint32_t j = 0; j < nm; j++) {
        request *r = S->members[j].r;
        llms_session *s = r->s;
        uint32_t n = S->members[j].n;
        int want = s->n_eval + n == s->n_tokens;
        if (fst) {
            /* The forward pass failed: the KV written for these tokens is
             * unknown, so the requests end with the error, or start over. */
            if (shrink) preempt(S, r);
            else terminate(S, r, LLMS_EVENT_ERROR, LLMS_FINISH_ERROR, fst, -1, NULL, 0);
            continue;
        }
        tenant_charge(&S->tenants[r->tenant], n);
        session_batch_commit(s, n, want ? S->logits + (size_t)li * S->m->hp.n_vocab : NULL);
        if (want) li++;
        if (S->p.cache) {
            uint32_t done = s->n_eval < r->n_prompt ? s->n_eval : r->n_prompt;
            /* The prompt's last, partial block too, once the prompt is
             * evaluated and before anything else is written into it. */
            int part = s->n_eval == r->n_prompt && r->n_prompt % KV_BLOCK_TOKENS && !r->partial_inserted;
            if (done / KV_BLOCK_TOKENS > r->inserted || part) {
                pcache_insert(S->p.cache, S->tenants[r->tenant].group, r->prompt, done, &s->kv, part);
                r->inserted = done / KV_BLOCK_TOKENS;
                if (part) r->partial_inserted = 1;
            }
        }
        if (want) generate_one(S, r, now);
    }
    compact(S, S->running, &S->n_running, RQ_RUNNING);

    /* Blocks the finished requests released may put the cache over budget. */
    if (S->p.cache) pcache_trim(S->p.cache);
    int32_t produced = S->step_events;
    deliver(S);
    /* Gone idle: the device's KV storage gives back what the prefix cache
     * does not hold (backend_kv_trim: only where little is in use), and a
     * device limit learnt is forgotten, the memory being free again or
     * another user's (the next device out of memory teaches it anew). */
    int trim = S->busy && !S->n_running && !S->n_waiting;
    if (trim) {
        S->busy = 0;
        S->dev_limited = 0;
        S->dev_batch_cap = 0;
    }
    pthread_mutex_unlock(&S->lock);
    /* Outside the lock: trimming waits for the device, and the host's log
     * callback may call the scheduler. */
    if (trim) backend_kv_trim(S->m);
    if (shrink)
        ctx_log(S->m->ctx, LLMS_LOG_WARN, "scheduler: out of device memory for a batch of %u tokens; "
                "its requests start over, batches of at most %u tokens until idle", nt, nt / 2);
    if (n_events) *n_events = produced;
    if (fst && !shrink) return fst;
    return nm || produced ? LLMS_OK : LLMS_AGAIN;
}

LLMS_API llms_status llms_scheduler_step(llms_scheduler *S, int32_t *n_events) {
    if (n_events) *n_events = 0;
    if (!S) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_scheduler_step: scheduler is NULL");
    if (S->has_thread) return err_set(LLMS_ERR_STATE, "the scheduler runs its own thread");
    pthread_mutex_lock(&S->step_lock);
    llms_status st = step_locked(S, n_events);
    pthread_mutex_unlock(&S->step_lock);
    return st;
}

static void *worker_main(void *arg) {
    llms_scheduler *S = arg;
    pthread_mutex_lock(&S->lock);
    while (!S->stop) {
        if (S->n_waiting == 0 && S->n_running == 0) {
            pthread_cond_wait(&S->work_cv, &S->lock);
            continue;
        }
        pthread_mutex_unlock(&S->lock);
        pthread_mutex_lock(&S->step_lock);
        llms_status st = step_locked(S, NULL);
        pthread_mutex_unlock(&S->step_lock);
        pthread_mutex_lock(&S->lock);
        if (st == LLMS_AGAIN && !S->stop) {
            /* Work exists but none could run (limits): wait briefly. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 1000000;
            if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
            pthread_cond_timedwait(&S->work_cv, &S->lock, &ts);
        }
    }
    pthread_mutex_unlock(&S->lock);
    return NULL;
}

/* ---- poll ---- */

LLMS_API llms_status llms_scheduler_poll(llms_scheduler *S, llms_event *ev, int32_t timeout_ms) {
    if (!S || !ev) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_scheduler_poll: NULL argument");
    if (ev->struct_size < sizeof(llms_event))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_event: struct_size too small");
    pthread_mutex_lock(&S->lock);
    if (!S->ev_head && timeout_ms != 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        if (timeout_ms > 0) {
            ts.tv_sec += timeout_ms / 1000;
            ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
        }
        while (!S->ev_head) {
            int rc = timeout_ms < 0 ? pthread_cond_wait(&S->event_cv, &S->lock)
                                    : pthread_cond_timedwait(&S->event_cv, &S->lock, &ts);
            if (rc == ETIMEDOUT) break;
        }
    }
    ev_item *e = S->ev_head;
    if (!e) {
        pthread_mutex_unlock(&S->lock);
        return LLMS_AGAIN;
    }
    size_t need = e->ev.text_len;
    /* Empty text needs no buffer; otherwise room for the text and its NUL. */
    if (need && (need + 1 > ev->text_cap || !ev->text_buf)) {
        pthread_mutex_unlock(&S->lock);
        ev->text_len = need;
        return err_set(LLMS_ERR_BUFFER_TOO_SMALL, "event text needs %zu bytes plus the NUL", need);
    }
    S->ev_head = e->next;
    if (!S->ev_head) S->ev_tail = NULL;
    pthread_mutex_unlock(&S->lock);
    char *buf = ev->text_buf;
    size_t cap = ev->text_cap;
    uint32_t size = ev->struct_size;
    *ev = e->ev;
    ev->struct_size = size;
    ev->text_buf = buf;
    ev->text_cap = cap;
    if (buf && cap) {
        memcpy(buf, e->text, need);
        buf[need] = 0;
    }
    xfree(S->a, e->text);
    xfree(S->a, e);
    return LLMS_OK;
}
