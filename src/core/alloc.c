#include "alloc.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static void *libc_malloc(void *user, size_t size) { (void)user; return malloc(size); }
static void *libc_realloc(void *user, void *ptr, size_t size) { (void)user; return realloc(ptr, size); }
static void libc_free(void *user, void *ptr) { (void)user; free(ptr); }

const lalloc lalloc_libc = { NULL, libc_malloc, libc_realloc, libc_free };

void *xmalloc(const lalloc *a, size_t size) {
    if (size == 0) size = 1;  /* a zero-size request still yields a unique pointer */
    return a->malloc_fn(a->user, size);
}

void *xcalloc(const lalloc *a, size_t n, size_t size) {
    uint64_t total;
    if (!mul_ok(n, size, &total) || total > SIZE_MAX) return NULL;
    void *p = xmalloc(a, (size_t)total);
    if (p) memset(p, 0, (size_t)total);
    return p;
}

void *xrealloc(const lalloc *a, void *ptr, size_t size) {
    if (size == 0) size = 1;
    return a->realloc_fn(a->user, ptr, size);
}

void *xrealloc_array(const lalloc *a, void *ptr, size_t n, size_t size) {
    uint64_t total;
    if (!mul_ok(n, size, &total) || total > SIZE_MAX) return NULL;
    return xrealloc(a, ptr, (size_t)total);
}

void xfree(const lalloc *a, void *ptr) {
    if (ptr) a->free_fn(a->user, ptr);
}

char *xstrndup(const lalloc *a, const char *s, size_t n) {
    if (n == SIZE_MAX) return NULL;
    char *p = xmalloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* The host allocator only promises malloc alignment, so over-allocate and
 * keep the original pointer just before the aligned block. */
void *xmalloc_aligned(const lalloc *a, size_t size, size_t align) {
    if (align < sizeof(void *)) align = sizeof(void *);
    uint64_t total;
    if (!add_ok(size, align + sizeof(void *), &total) || total > SIZE_MAX) return NULL;
    char *raw = xmalloc(a, (size_t)total);
    if (!raw) return NULL;
    uintptr_t p = ((uintptr_t)raw + sizeof(void *) + align - 1) & ~(uintptr_t)(align - 1);
    ((void **)p)[-1] = raw;
    return (void *)p;
}

void xfree_aligned(const lalloc *a, void *ptr) {
    if (ptr) xfree(a, ((void **)ptr)[-1]);
}

void alloc_advise_huge_pages(void *p, size_t bytes) {
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t b = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    uintptr_t e = ((uintptr_t)p + bytes) & ~(huge - 1);
    if (e > b) (void)madvise((void *)b, e - b, MADV_HUGEPAGE);
#else
    (void)p;
    (void)bytes;
#endif
}
