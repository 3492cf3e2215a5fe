/*
 * Compute backend interface: one forward pass over a batch of tokens that
 * may belong to several sequences (the scheduler packs decode tokens of
 * many sessions and chunks of prompts into one batch). Each token carries
 * its sequence and position; its K/V are written into that sequence's
 * paged KV cache, and attention reads the sequence's positions <= its own.
 *
 * The CPU backend implements it in src/backend/cpu/; a GPU backend
 * implements the same entry point over device buffers.
 */
#ifndef LLMS_BACKEND_H
#define LLMS_BACKEND_H

#include <stdint.h>

#include "llmserve.h"
#include "../kvcache/kv.h"
#include "../model/model.h"

typedef struct fwd_batch {
    uint32_t n_tokens;
    const int32_t *tokens;      /* [n_tokens] */
    const uint32_t *pos;        /* [n_tokens] position of each token in its sequence */
    const uint32_t *seq;        /* [n_tokens] index into `seqs` */
    const uint8_t *want_logits; /* [n_tokens] 1 = write this token's logits */
    kv_seq *const *seqs;        /* block tables; reserved up to the largest pos + 1 */
    uint32_t n_seqs;
    uint32_t flags;             /* FWD_* (0 = default) */
} fwd_batch;

/* Each token's matrix products use kernels whose result for a token does
 * not depend on what else is in the batch: the repacked-weight kernel for
 * every batch size where the matrix has one, else the one-token kernels
 * (the GEMM path sums in a different order). The scheduler's deterministic
 * mode sets it; tests/test_model.c checks logits bit for bit. */
#define FWD_DETERMINISTIC 1u

/* Runs the model over the batch. Logits of the tokens with want_logits are
 * written to `logits` in batch order, n_vocab floats each. */
llms_status backend_forward(llms_model *m, const fwd_batch *b, float *logits);

/* Backend storage of the KV blocks (src/backend/vulkan/kv_resident.c; the
 * host pool of the CPU backend has none of it).
 *   capacity: bytes of blocks the storage holds without growing, which a
 *     device out of memory makes the limit (the scheduler's make_room);
 *     UINT64_MAX for host blocks.
 *   device_bytes: device memory the storage holds (0 for host blocks).
 *   trim: gives back device memory few blocks use (vk_kv_trim); for quiet
 *     moments. No lock of the pool, device or cache may be held. */
uint64_t backend_kv_capacity(llms_model *m);
uint64_t backend_kv_device_bytes(llms_model *m);
void backend_kv_trim(llms_model *m);

#endif
