/*
 * Internal allocation. Every library allocation goes through an lalloc,
 * which wraps the host's llms_allocator (or libc). This single choke point
 * is what makes the fail-the-N-th-allocation tests possible.
 */
#ifndef LLMS_CORE_ALLOC_H
#define LLMS_CORE_ALLOC_H

#include <stddef.h>
#include <stdint.h>

typedef struct lalloc {
    void *user;
    void *(*malloc_fn)(void *user, size_t size);
    void *(*realloc_fn)(void *user, void *ptr, size_t size);
    void (*free_fn)(void *user, void *ptr);
} lalloc;

/* The libc allocator, for code paths without a context (e.g. fuzzing). */
extern const lalloc lalloc_libc;

/* All return NULL on failure (or on size overflow) and never abort. */
void *xmalloc(const lalloc *a, size_t size);
void *xcalloc(const lalloc *a, size_t n, size_t size);  /* zeroed, overflow-checked */
void *xrealloc(const lalloc *a, void *ptr, size_t size);
void *xrealloc_array(const lalloc *a, void *ptr, size_t n, size_t size);
void xfree(const lalloc *a, void *ptr);
char *xstrndup(const lalloc *a, const char *s, size_t n);  /* NUL-terminates */

/* Aligned allocation (for SIMD buffers); free with xfree_aligned. */
void *xmalloc_aligned(const lalloc *a, size_t size, size_t align);
void xfree_aligned(const lalloc *a, void *ptr);

/* Asks the kernel for transparent huge pages over the whole 2 MiB pages
 * inside [p, p + bytes) (Debian's default THP mode, "madvise", gives them
 * only to regions that ask). For memory streamed at full speed (weights,
 * the KV cache): a 4 KiB page is a TLB miss every 4 KiB and the hardware
 * prefetchers stop at each page edge. A hint: failure changes nothing. */
void alloc_advise_huge_pages(void *p, size_t bytes);

/* Checked arithmetic: return 0 on overflow, 1 on success. */
static inline int mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline int add_ok(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

#endif
