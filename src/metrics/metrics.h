/*
 * Metric building blocks for the scheduler: fixed-bucket histograms and a
 * writer of the Prometheus text exposition format into a caller's buffer
 * (it counts what does not fit, so the caller learns the size needed without
 * the library allocating). The values themselves live in the objects they
 * describe and are updated under those objects' locks.
 */
#ifndef LLMS_METRICS_H
#define LLMS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"

#define HISTO_MAX_BUCKETS 20

typedef struct histo {
    const double *bounds;       /* upper bounds, ascending; +Inf is implied */
    uint32_t n_bounds;
    uint64_t bucket[HISTO_MAX_BUCKETS]; /* non-cumulative counts per bound, then +Inf */
    uint64_t count;
    double sum;
} histo;

/* Seconds, from 1 ms to 60 s; and batch sizes in tokens. */
extern const double histo_seconds_bounds[];
extern const uint32_t histo_seconds_n;
extern const double histo_tokens_bounds[];
extern const uint32_t histo_tokens_n;

void histo_init(histo *h, const double *bounds, uint32_t n_bounds);
void histo_observe(histo *h, double v);

typedef struct msink {
    char *buf;
    size_t cap;
    size_t len;                 /* bytes produced (may exceed cap) */
} msink;

void msink_printf(msink *s, const char *fmt, ...) LLMS_PRINTF(2, 3);
/* "# HELP" and "# TYPE" lines. */
void msink_header(msink *s, const char *name, const char *type, const char *help);
/* One histogram series; `labels` is "" or `key="value",...` without braces.
 * Values are escaped by the caller with msink_label_escape. */
void msink_histo(msink *s, const char *name, const char *labels, const histo *h);
/* Escape a label value (backslash, quote, newline) into out (cap bytes). */
void msink_label_escape(const char *v, char *out, size_t cap);

#endif
