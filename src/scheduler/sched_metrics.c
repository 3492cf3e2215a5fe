/*
 * Scheduler metrics: the stats snapshot and the Prometheus rendering. Both
 * read under the scheduler's lock, so a scrape sees one consistent moment.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "sched_internal.h"
#include "../core/error.h"
#include "../core/params.h"

static const char *const outcome_names[OUT_COUNT] = {"finished", "cancelled", "timeout", "rejected", "failed"};

static void kv_blocks(llms_scheduler *S, uint32_t *used, uint32_t *free_) {
    uint64_t bb = kv_block_bytes(&S->m->kv), u = kv_pool_used_bytes(&S->m->kv);
    *used = (uint32_t)(u / bb);
    *free_ = S->p.kv_budget_bytes > u ? (uint32_t)((S->p.kv_budget_bytes - u) / bb) : 0;
}

LLMS_API llms_status llms_scheduler_get_stats(llms_scheduler *S, llms_scheduler_stats *out) {
    if (!S || !out) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_scheduler_get_stats: NULL argument");
    llms_scheduler_stats s;
    llms_scheduler_stats_init(&s);
    pthread_mutex_lock(&S->lock);
    const metrics *M = &S->mx;
    s.requests_submitted = M->submitted;
    s.requests_finished = M->outcome[OUT_FINISHED];
    s.requests_cancelled = M->outcome[OUT_CANCELLED];
    s.requests_timed_out = M->outcome[OUT_TIMEOUT];
    s.requests_rejected = M->outcome[OUT_REJECTED];
    s.requests_failed = M->outcome[OUT_FAILED];
    s.prompt_tokens = M->prompt_tokens;
    s.cached_tokens = M->cached_tokens;
    s.generated_tokens = M->generated_tokens;
    s.preemptions = M->preemptions;
    s.steps = M->steps;
    s.queue_depth = S->n_waiting;
    s.running = S->n_running;
    s.last_batch_tokens = M->last_batch;
    s.ttft_count = M->ttft.count;
    s.ttft_sum_s = M->ttft.sum;
    s.e2e_count = M->e2e.count;
    s.e2e_sum_s = M->e2e.sum;
    pthread_mutex_unlock(&S->lock);
    kv_blocks(S, &s.kv_blocks_used, &s.kv_blocks_free);
    if (!params_emit(out, &s, sizeof s))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_scheduler_stats: struct_size too small");
    return LLMS_OK;
}

static void counter(msink *k, const char *name, const char *help, uint64_t v) {
    msink_header(k, name, "counter", help);
    msink_printf(k, "%s %llu\n", name, (unsigned long long)v);
}

static void gauge(msink *k, const char *name, const char *help, uint64_t v) {
    msink_header(k, name, "gauge", help);
    msink_printf(k, "%s %llu\n", name, (unsigned long long)v);
}

/* Per-tenant counter family: one series per tenant. */
static void tenant_counter(msink *k, llms_scheduler *S, const char *name, const char *help, size_t off) {
    msink_header(k, name, "counter", help);
    for (uint32_t i = 0; i < S->n_tenants; i++) {
        char esc[600];
        msink_label_escape(S->tenants[i].name, esc, sizeof esc);
        uint64_t v;
        memcpy(&v, (const char *)&S->tenants[i] + off, sizeof v);
        msink_printf(k, "%s{tenant=\"%s\"} %llu\n", name, esc, (unsigned long long)v);
    }
}

LLMS_API llms_status llms_scheduler_metrics_prometheus(llms_scheduler *S, char *buf, size_t cap, size_t *len) {
    if (len) *len = 0;
    if (!S || (!buf && cap)) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_scheduler_metrics_prometheus: NULL argument");
    msink k = {buf, cap, 0};
    uint32_t used, free_;
    kv_blocks(S, &used, &free_);
    const uint64_t kv_host = kv_pool_slab_bytes(&S->m->kv);
    pthread_mutex_lock(&S->lock);
    const metrics *M = &S->mx;
    counter(&k, "llms_requests_submitted_total", "Requests accepted by submit.", M->submitted);
    msink_header(&k, "llms_requests_total", "counter", "Requests by outcome (rejected includes refused submits).");
    for (int o = 0; o < OUT_COUNT; o++)
        msink_printf(&k, "llms_requests_total{outcome=\"%s\"} %llu\n", outcome_names[o],
                     (unsigned long long)M->outcome[o]);
    counter(&k, "llms_prompt_tokens_total", "Prompt tokens of admitted requests.", M->prompt_tokens);
    counter(&k, "llms_cached_tokens_total", "Prompt tokens served from the prefix cache.", M->cached_tokens);
    counter(&k, "llms_generated_tokens_total", "Tokens generated.", M->generated_tokens);
    counter(&k, "llms_preemptions_total", "Requests preempted for KV memory.", M->preemptions);
    counter(&k, "llms_steps_total", "Batched forward passes.", M->steps);
    gauge(&k, "llms_queue_depth", "Requests waiting (including preempted ones).", S->n_waiting);
    gauge(&k, "llms_running_requests", "Requests running.", S->n_running);
    gauge(&k, "llms_batch_tokens_last", "Tokens in the last forward pass.", M->last_batch);
    gauge(&k, "llms_kv_blocks_used", "KV blocks alive in the model's pool.", used);
    gauge(&k, "llms_kv_blocks_free", "KV blocks left under the budget (0 without a budget).", free_);
    gauge(&k, "llms_kv_host_bytes", "Host memory of the KV cache (CPU backend): live blocks rounded up to slabs of 16.",
          kv_host);
    msink_header(&k, "llms_batch_tokens", "histogram", "Tokens per forward pass.");
    msink_histo(&k, "llms_batch_tokens", "", &M->batch);
    msink_header(&k, "llms_queue_time_seconds", "histogram", "Time from submission to admission.");
    msink_histo(&k, "llms_queue_time_seconds", "", &M->queue_time);
    msink_header(&k, "llms_time_to_first_token_seconds", "histogram", "Time from submission to the first token.");
    msink_histo(&k, "llms_time_to_first_token_seconds", "", &M->ttft);
    msink_header(&k, "llms_time_between_tokens_seconds", "histogram", "Time between a request's tokens.");
    msink_histo(&k, "llms_time_between_tokens_seconds", "", &M->tbt);
    msink_header(&k, "llms_e2e_latency_seconds", "histogram", "Time from submission to the terminal event.");
    msink_histo(&k, "llms_e2e_latency_seconds", "", &M->e2e);

    msink_header(&k, "llms_tenant_requests_total", "counter", "Requests per tenant by outcome.");
    for (uint32_t i = 0; i < S->n_tenants; i++) {
        char esc[600];
        msink_label_escape(S->tenants[i].name, esc, sizeof esc);
        for (int o = 0; o < OUT_COUNT; o++)
            msink_printf(&k, "llms_tenant_requests_total{tenant=\"%s\",outcome=\"%s\"} %llu\n", esc,
                         outcome_names[o], (unsigned long long)S->tenants[i].outcome[o]);
    }
    tenant_counter(&k, S, "llms_tenant_prompt_tokens_total", "Prompt tokens per tenant.",
                   offsetof(tenant, prompt_tokens));
    tenant_counter(&k, S, "llms_tenant_cached_tokens_total", "Cached prompt tokens per tenant.",
                   offsetof(tenant, cached_tokens));
    tenant_counter(&k, S, "llms_tenant_generated_tokens_total", "Generated tokens per tenant.",
                   offsetof(tenant, generated_tokens));
    msink_header(&k, "llms_tenant_running_requests", "gauge", "Requests running per tenant.");
    for (uint32_t i = 0; i < S->n_tenants; i++) {
        char esc[600];
        msink_label_escape(S->tenants[i].name, esc, sizeof esc);
        msink_printf(&k, "llms_tenant_running_requests{tenant=\"%s\"} %u\n", esc, S->tenants[i].running);
    }
    msink_header(&k, "llms_tenant_time_to_first_token_seconds", "histogram", "Time to first token per tenant.");
    for (uint32_t i = 0; i < S->n_tenants; i++) {
        char esc[600], lab[640];
        msink_label_escape(S->tenants[i].name, esc, sizeof esc);
        snprintf(lab, sizeof lab, "tenant=\"%s\"", esc);
        msink_histo(&k, "llms_tenant_time_to_first_token_seconds", lab, &S->tenants[i].ttft);
    }
    pthread_mutex_unlock(&S->lock);
    if (len) *len = k.len;
    if (k.len + 1 > cap)
        return err_set(LLMS_ERR_BUFFER_TOO_SMALL, "metrics need %zu bytes plus the NUL", k.len);
    return LLMS_OK;
}
