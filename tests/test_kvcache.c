/*
 * The paged KV cache's host storage (src/kvcache/kv.h): slots handed out
 * lowest first, so a growing sequence's pieces lie side by side in its
 * slab; kv_put's layout (K transposed, V by rows, heads in order, values
 * rounded to binary16); fresh blocks zeroed even where an earlier block's
 * data lay; copy-on-write copies every piece and leaves the original
 * alone; slab memory taken and given back whole; the budget's error; an
 * allocation failure at any point leaves the pool as it was; and threads
 * allocating and releasing at once (also run under ThreadSanitizer).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "llmserve.h"
#include "core/error.h"
#include "kvcache/kv.h"
#include "quant/half.h"

enum { LAYERS = 3, HEADS = 2, HEAD_DIM = 24, KV_DIM = HEADS * HEAD_DIM };

static kv_pool *new_pool(const lalloc *a, uint64_t budget) {
    kv_pool *p = malloc(sizeof *p);
    assert_non_null(p);
    assert_int_equal(kv_pool_init(p, a, LAYERS, HEADS, HEAD_DIM, budget), LLMS_OK);
    return p;
}

static void free_pool(kv_pool *p) {
    assert_int_equal(kv_pool_used_bytes(p), 0);
    assert_int_equal(kv_pool_slab_bytes(p), 0);
    kv_pool_destroy(p);
    free(p);
}

/* Deterministic values of position pos, layer l, element i, in steps of
 * 0.37: most need rounding to binary16. */
static float val(uint32_t pos, uint32_t l, uint32_t i, int is_v) {
    return (float)((pos * 131 + l * 17 + i * 7 + (uint32_t)is_v * 3) % 101) * 0.37f - 18.0f;
}

static void put_positions(kv_pool *p, const kv_seq *s, uint32_t from, uint32_t to) {
    float k[KV_DIM], v[KV_DIM];
    for (uint32_t pos = from; pos < to; pos++)
        for (uint32_t l = 0; l < LAYERS; l++) {
            for (uint32_t i = 0; i < KV_DIM; i++) {
                k[i] = val(pos, l, i, 0);
                v[i] = val(pos, l, i, 1);
            }
            kv_put(p, s, l, pos, k, v);
        }
}

/* Every stored element of positions [from, to) is its value rounded to
 * binary16, read back through the documented piece layout. */
static void check_positions(const kv_pool *p, const kv_seq *s, uint32_t from, uint32_t to) {
    for (uint32_t pos = from; pos < to; pos++)
        for (uint32_t l = 0; l < LAYERS; l++)
            for (uint32_t h = 0; h < HEADS; h++) {
                const kv_half *piece = kv_piece(p, s->blocks[pos / KV_BLOCK_TOKENS], l, h);
                const uint32_t t = pos % KV_BLOCK_TOKENS;
                for (uint32_t d = 0; d < HEAD_DIM; d++) {
                    const uint32_t i = h * HEAD_DIM + d;
                    const kv_half k = piece[d * KV_BLOCK_TOKENS + t];
                    const kv_half v = piece[KV_BLOCK_TOKENS * HEAD_DIM + t * HEAD_DIM + d];
                    if (k != half_from_f32(val(pos, l, i, 0)) || v != half_from_f32(val(pos, l, i, 1)))
                        fail_msg("pos %u layer %u elem %u: K %g V %g, want %g %g", pos, l, i, half_to_f32(k),
                                 half_to_f32(v), val(pos, l, i, 0), val(pos, l, i, 1));
                }
            }
}

static int all_zero(const kv_pool *p, const kv_block *b) {
    for (uint32_t l = 0; l < LAYERS; l++)
        for (uint32_t h = 0; h < HEADS; h++) {
            const kv_half *piece = kv_piece(p, b, l, h);
            for (size_t i = 0; i < p->piece_elems; i++)
                if (piece[i]) return 0;
        }
    return 1;
}

static void test_layout_and_contiguity(void **state) {
    (void)state;
    kv_pool *p = new_pool(&lalloc_libc, 0);
    kv_seq s = {0};
    const uint32_t n_pos = 40 * KV_BLOCK_TOKENS;
    assert_int_equal(kv_seq_reserve(p, &s, n_pos, 0), LLMS_OK);
    assert_int_equal(s.n_blocks, 40);
    /* One sequence growing alone: slots 0, 1, 2, ... and within a slab the
     * pieces of one layer and head follow each other. */
    for (uint32_t b = 0; b < s.n_blocks; b++) {
        assert_int_equal(s.blocks[b]->slot, b);
        if (b % KV_SLAB_BLOCKS == 0) continue;
        for (uint32_t l = 0; l < LAYERS; l++)
            for (uint32_t h = 0; h < HEADS; h++)
                assert_ptr_equal(kv_piece(p, s.blocks[b], l, h), kv_piece(p, s.blocks[b - 1], l, h) + p->piece_elems);
    }
    assert_int_equal(kv_pool_slab_bytes(p), 3 * KV_SLAB_BLOCKS * kv_block_bytes(p));
    assert_int_equal(kv_block_bytes(p), (uint64_t)LAYERS * 2 * KV_BLOCK_TOKENS * KV_DIM * sizeof(kv_half));
    put_positions(p, &s, 0, n_pos);
    check_positions(p, &s, 0, n_pos);
    kv_seq_free(p, &s);
    free_pool(p);
}

/* A block that takes over a slot must read as zeros, whatever was there. */
static void test_fresh_blocks_zeroed(void **state) {
    (void)state;
    kv_pool *p = new_pool(&lalloc_libc, 0);
    kv_seq a = {0}, b = {0};
    assert_int_equal(kv_seq_reserve(p, &a, 3 * KV_BLOCK_TOKENS, 0), LLMS_OK);
    assert_int_equal(kv_seq_reserve(p, &b, KV_BLOCK_TOKENS, 0), LLMS_OK);   /* keeps the slab alive */
    put_positions(p, &a, 0, 3 * KV_BLOCK_TOKENS);
    const uint32_t slot1 = a.blocks[1]->slot;
    kv_seq_truncate(p, &a, KV_BLOCK_TOKENS);                                   /* frees slots 1 and 2 */
    kv_seq c = {0};
    assert_int_equal(kv_seq_reserve(p, &c, KV_BLOCK_TOKENS, 0), LLMS_OK);
    assert_int_equal(c.blocks[0]->slot, slot1);                                 /* lowest free slot */
    assert_true(all_zero(p, c.blocks[0]));
    check_positions(p, &a, 0, KV_BLOCK_TOKENS);                                 /* neighbours untouched */
    kv_seq_free(p, &a);
    kv_seq_free(p, &b);
    kv_seq_free(p, &c);
    free_pool(p);
}

static void test_copy_on_write(void **state) {
    (void)state;
    kv_pool *p = new_pool(&lalloc_libc, 0);
    kv_seq a = {0}, b = {0};
    const uint32_t n = 2 * KV_BLOCK_TOKENS + 5;
    assert_int_equal(kv_seq_reserve(p, &a, n, 0), LLMS_OK);
    put_positions(p, &a, 0, n);
    assert_int_equal(kv_seq_share(p, &b, &a, n), LLMS_OK);
    assert_int_equal(kv_block_refcount(p, a.blocks[2]), 2);
    /* b writes from position n - 2 on: its last block is copied, the
     * others stay shared. */
    assert_int_equal(kv_seq_reserve(p, &b, n + 1, n - 2), LLMS_OK);
    assert_ptr_equal(b.blocks[0], a.blocks[0]);
    assert_ptr_not_equal(b.blocks[2], a.blocks[2]);
    assert_int_equal(kv_block_refcount(p, a.blocks[2]), 1);
    check_positions(p, &b, 0, n);                       /* every piece copied */
    float k[KV_DIM], v[KV_DIM];
    for (uint32_t i = 0; i < KV_DIM; i++) k[i] = v[i] = 1000.0f;
    for (uint32_t l = 0; l < LAYERS; l++) kv_put(p, &b, l, n - 2, k, v);
    check_positions(p, &a, 0, n);                       /* the original is intact */
    assert_true(kv_piece(p, b.blocks[2], 1, 1)[KV_BLOCK_TOKENS * HEAD_DIM + ((n - 2) % KV_BLOCK_TOKENS) * HEAD_DIM] ==
                half_from_f32(1000.0f));
    kv_seq_free(p, &a);
    kv_seq_free(p, &b);
    free_pool(p);
}

/* A slab's memory goes when its last block does, and an emptied entry is
 * used again before the table grows. */
static void test_slab_memory(void **state) {
    (void)state;
    kv_pool *p = new_pool(&lalloc_libc, 0);
    const uint64_t slab = KV_SLAB_BLOCKS * kv_block_bytes(p);
    kv_seq a = {0}, b = {0};
    assert_int_equal(kv_seq_reserve(p, &a, KV_SLAB_BLOCKS * KV_BLOCK_TOKENS, 0), LLMS_OK);
    assert_int_equal(kv_seq_reserve(p, &b, 1, 0), LLMS_OK);
    assert_int_equal(b.blocks[0]->slot, KV_SLAB_BLOCKS);
    assert_int_equal(kv_pool_slab_bytes(p), 2 * slab);
    kv_seq_free(p, &a);
    assert_int_equal(kv_pool_slab_bytes(p), slab);
    assert_int_equal(kv_pool_used_bytes(p), kv_block_bytes(p));
    /* The next block joins b's live slab rather than taking new memory. */
    assert_int_equal(kv_seq_reserve(p, &a, 1, 0), LLMS_OK);
    assert_int_equal(a.blocks[0]->slot, KV_SLAB_BLOCKS + 1);
    assert_int_equal(kv_pool_slab_bytes(p), slab);
    /* Filling that slab, the emptied first entry comes back. */
    assert_int_equal(kv_seq_reserve(p, &a, KV_SLAB_BLOCKS * KV_BLOCK_TOKENS, 0), LLMS_OK);
    assert_int_equal(a.blocks[KV_SLAB_BLOCKS - 1]->slot, 0);
    assert_int_equal(p->n_slabs, 2);
    assert_true(all_zero(p, a.blocks[KV_SLAB_BLOCKS - 1]));
    kv_seq_free(p, &a);
    kv_seq_free(p, &b);
    free_pool(p);
}

static void test_budget(void **state) {
    (void)state;
    kv_pool probe;
    assert_int_equal(kv_pool_init(&probe, &lalloc_libc, LAYERS, HEADS, HEAD_DIM, 0), LLMS_OK);
    const uint64_t bb = kv_block_bytes(&probe);
    kv_pool_destroy(&probe);
    kv_pool *p = new_pool(&lalloc_libc, 5 * bb);
    kv_seq s = {0};
    assert_int_equal(kv_seq_reserve(p, &s, 5 * KV_BLOCK_TOKENS, 0), LLMS_OK);
    put_positions(p, &s, 0, 5 * KV_BLOCK_TOKENS);
    assert_int_equal(kv_seq_reserve(p, &s, 6 * KV_BLOCK_TOKENS, 0), LLMS_ERR_NO_MEMORY);
    assert_non_null(strstr(llms_errmsg(), "budget"));
    assert_int_equal(s.n_blocks, 5);
    assert_int_equal(kv_pool_used_bytes(p), 5 * bb);
    check_positions(p, &s, 0, 5 * KV_BLOCK_TOKENS);   /* nothing accepted is lost */
    kv_seq_free(p, &s);
    free_pool(p);
}

/* An allocator that fails its n-th call (0: never). */
typedef struct failing {
    int calls, fail_at;
} failing;

static void *f_malloc(void *u, size_t n) {
    failing *f = u;
    return ++f->calls == f->fail_at ? NULL : malloc(n);
}
static void *f_realloc(void *u, void *p, size_t n) {
    failing *f = u;
    return ++f->calls == f->fail_at ? NULL : realloc(p, n);
}
static void f_free(void *u, void *p) {
    (void)u;
    free(p);
}

/* Growing a sequence across slabs with the n-th allocation failing, for
 * every n: an error, and the pool exactly as before the call. */
static void test_allocation_failures(void **state) {
    (void)state;
    int failures = 0;
    for (int n = 1;; n++) {
        failing f = {0, 0};
        const lalloc a = {&f, f_malloc, f_realloc, f_free};
        kv_pool *p = new_pool(&a, 0);
        kv_seq s = {0};
        assert_int_equal(kv_seq_reserve(p, &s, 3 * KV_BLOCK_TOKENS, 0), LLMS_OK);
        put_positions(p, &s, 0, 3 * KV_BLOCK_TOKENS);
        const uint64_t used = kv_pool_used_bytes(p), slabs = kv_pool_slab_bytes(p);
        f.calls = 0;
        f.fail_at = n;
        llms_status st = kv_seq_reserve(p, &s, 40 * KV_BLOCK_TOKENS, 0);
        f.fail_at = 0;
        if (st == LLMS_OK) {
            kv_seq_free(p, &s);
            free_pool(p);
            break;
        }
        failures++;
        assert_int_equal(st, LLMS_ERR_NO_MEMORY);
        assert_int_equal(s.n_blocks, 3);
        assert_int_equal(kv_pool_used_bytes(p), used);
        assert_int_equal(kv_pool_slab_bytes(p), slabs);
        check_positions(p, &s, 0, 3 * KV_BLOCK_TOKENS);
        /* And the pool still works. */
        assert_int_equal(kv_seq_reserve(p, &s, 40 * KV_BLOCK_TOKENS, 0), LLMS_OK);
        kv_seq_free(p, &s);
        free_pool(p);
    }
    assert_true(failures >= 37 + 2); /* each new block, its two new slabs */
}

typedef struct churn_arg {
    kv_pool *p;
    int seed;
} churn_arg;

/* Sequences grown, written, checked and freed over and over. */
static void *churn(void *arg) {
    churn_arg *c = arg;
    unsigned r = (unsigned)c->seed;
    for (int it = 0; it < 200; it++) {
        kv_seq s = {0};
        r = r * 1103515245u + 12345u;
        const uint32_t n = 1 + (r >> 16) % (3 * KV_SLAB_BLOCKS * KV_BLOCK_TOKENS / 2);
        if (kv_seq_reserve(c->p, &s, n, 0) != LLMS_OK) return "reserve failed";
        put_positions(c->p, &s, 0, n);
        check_positions(c->p, &s, 0, n);
        kv_seq_free(c->p, &s);
    }
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    kv_pool *p = new_pool(&lalloc_libc, 0);
    pthread_t t[3];
    churn_arg args[3];
    for (int i = 0; i < 3; i++) {
        args[i] = (churn_arg){p, i + 1};
        assert_int_equal(pthread_create(&t[i], NULL, churn, &args[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        void *ret;
        assert_int_equal(pthread_join(t[i], &ret), 0);
        assert_null(ret);
    }
    free_pool(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_and_contiguity),
        cmocka_unit_test(test_fresh_blocks_zeroed),
        cmocka_unit_test(test_copy_on_write),
        cmocka_unit_test(test_slab_memory),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
