/*
 * The batch scheduler (llms_scheduler): requests from any thread, served
 * together by continuous batching. Each step packs one decode token of every
 * running request plus chunks of waiting prompts into one backend_forward
 * call under a token budget; sampling and text streaming then run through
 * llms_session_step on each request's own session, exactly as for a session
 * driven alone. KV memory is bounded by a byte budget (cache eviction first,
 * then preemption of the lowest-priority request, recomputed later). Full
 * prompt blocks go to the optional prefix cache (src/cache).
 *
 * Tenants share by weight, at equal priority: the prompt tokens of each
 * step by water-filling on their virtual time (tokens computed over the
 * weight, decode tokens included), and the running slots (a tenant under
 * its share of max_running takes the slot of one over its share). So a
 * flooding tenant costs another's short prompt at most its share of the
 * steps, while a lone tenant still fills the whole budget.
 *
 * Locks: `lock` guards queues, events, tenants and metrics and is held
 * everywhere except during the forward pass and the event callbacks;
 * `step_lock` serialises steps, so sessions are only touched by the thread
 * running the current step. Order: step_lock, lock, then the cache's lock,
 * then the KV pool's.
 */
#ifndef LLMS_SCHEDULER_H
#define LLMS_SCHEDULER_H

#include "llmserve.h"

#endif
