/*
 * The scheduler's private state, shared by its core (scheduler.c) and its
 * metrics (sched_metrics.c).
 */
#ifndef LLMS_SCHED_INTERNAL_H
#define LLMS_SCHED_INTERNAL_H

#include <pthread.h>

#include "llmserve.h"
#include "../metrics/metrics.h"
#include "../session/session.h"
#include "../tokenizer/tokenizer.h"

enum { RQ_QUEUED = 0, RQ_RUNNING = 1, RQ_DONE = 2 };
enum { OUT_FINISHED, OUT_CANCELLED, OUT_TIMEOUT, OUT_REJECTED, OUT_FAILED, OUT_COUNT };

typedef struct request {
    uint64_t id, user_tag;
    uint32_t tenant;
    int32_t priority;
    int state;
    int cancel;                 /* set by llms_scheduler_cancel, acted on by the next step */
    int admitted, started, in_batch, lost_event;
    double key;                 /* effective priority during one step */
    double t_submit, t_deadline, t_first, t_last;
    int32_t *prompt;
    uint32_t n_prompt;
    uint32_t cached_reported;   /* prompt tokens from the cache at the first start */
    uint32_t inserted;          /* prompt blocks already offered to the cache */
    int partial_inserted;       /* its last, partial block too */
    uint32_t n_generated_final;
    llms_session *s;
    struct ev_item *term;       /* the terminal event, allocated at submit */
} request;

typedef struct tenant {
    char *name;
    char *group;                /* prefix-cache sharing group key */
    llms_tenant_params p;
    double bucket, t_refill;    /* token bucket */
    uint32_t running;
    uint64_t served;            /* tokens computed (prompt and generated) */
    /* The fair share (see fair_share in scheduler.c): tokens computed over
     * the weight, raised when the tenant wakes up or leaves its share of a
     * step unused, so that idle time is not saved up as credit. */
    double vtime;
    int active;                 /* had prompt tokens to evaluate last step */
    /* Scratch of one step, under lock: tokens already in the batch, prompt
     * tokens wanted at the level being filled, and its share of them. */
    uint32_t step_tokens, demand, alloc;
    int want, backlog;
    uint64_t submitted, outcome[OUT_COUNT];
    uint64_t prompt_tokens, cached_tokens, generated_tokens;
    histo ttft;
} tenant;

typedef struct metrics {
    uint64_t submitted, outcome[OUT_COUNT];
    uint64_t prompt_tokens, cached_tokens, generated_tokens, preemptions, steps;
    uint32_t last_batch;
    histo queue_time, ttft, tbt, e2e, batch;
} metrics;

typedef struct ev_item {
    struct ev_item *next;
    llms_event ev;
    char *text;
} ev_item;

typedef struct member {
    request *r;
    uint32_t n;
} member;

struct llms_scheduler {
    llms_model *m;
    const lalloc *a;
    llms_scheduler_params p;
    pthread_mutex_t lock, step_lock;
    pthread_cond_t work_cv, event_cv;
    int sync_ready;
    pthread_t thread;
    int has_thread, stop;
    request **waiting;          /* queued and preempted requests */
    uint32_t n_waiting, n_reserved, cap_waiting;
    request **running;
    uint32_t n_running;
    request **order;            /* running, by priority, during a step */
    uint64_t next_id;
    tenant *tenants;            /* [0] is the default tenant "" */
    uint32_t n_tenants, cap_tenants;
    ev_item *ev_head, *ev_tail; /* for poll */
    ev_item *step_head, *step_tail; /* produced by the current step */
    int32_t step_events;
    metrics mx;
    /* The KV capacity a device out of memory revealed (bytes; dev_limited
     * says whether one did): a limit like kv_budget_bytes until the
     * scheduler next goes idle (see kv_limit in scheduler.c). */
    uint64_t dev_kv_limit;
    int dev_limited;
    /* Tokens per batch at most after a forward pass ran out of device
     * memory (its scratch grows with the batch); 0: max_batch_tokens. */
    uint32_t dev_batch_cap;
    int busy;                   /* had requests since it was last idle */
    /* batch scratch */
    int32_t *b_tokens;
    uint32_t *b_pos, *b_seq;
    uint8_t *b_want;
    kv_seq **b_seqs;
    member *members;
    float *logits;
};

double sched_now(void);

#endif
