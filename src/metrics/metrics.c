#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "metrics.h"

const double histo_seconds_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                       0.5,   1,      2.5,   5,    10,    30,   60};
const uint32_t histo_seconds_n = sizeof histo_seconds_bounds / sizeof histo_seconds_bounds[0];
const double histo_tokens_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048};
const uint32_t histo_tokens_n = sizeof histo_tokens_bounds / sizeof histo_tokens_bounds[0];

void histo_init(histo *h, const double *bounds, uint32_t n_bounds) {
    memset(h, 0, sizeof *h);
    h->bounds = bounds;
    h->n_bounds = n_bounds < HISTO_MAX_BUCKETS ? n_bounds : HISTO_MAX_BUCKETS - 1;
}

void histo_observe(histo *h, double v) {
    uint32_t i = 0;
    while (i < h->n_bounds && v > h->bounds[i]) i++;
    h->bucket[i]++;
    h->count++;
    h->sum += v;
}

void msink_printf(msink *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = s->len < s->cap ? s->cap - s->len : 0;
    int n = vsnprintf(room ? s->buf + s->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0) s->len += (size_t)n;
}

void msink_header(msink *s, const char *name, const char *type, const char *help) {
    msink_printf(s, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void msink_histo(msink *s, const char *name, const char *labels, const histo *h) {
    const char *sep = labels[0] ? "," : "";
    uint64_t cum = 0;
    for (uint32_t i = 0; i < h->n_bounds; i++) {
        cum += h->bucket[i];
        msink_printf(s, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, h->bounds[i],
                     (unsigned long long)cum);
    }
    cum += h->bucket[h->n_bounds];
    msink_printf(s, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)cum);
    if (labels[0]) {
        msink_printf(s, "%s_sum{%s} %.9g\n", name, labels, h->sum);
        msink_printf(s, "%s_count{%s} %llu\n", name, labels, (unsigned long long)h->count);
    } else {
        msink_printf(s, "%s_sum %.9g\n", name, h->sum);
        msink_printf(s, "%s_count %llu\n", name, (unsigned long long)h->count);
    }
}

void msink_label_escape(const char *v, char *out, size_t cap) {
    size_t o = 0;
    if (!cap) return;
    for (; *v && o + 2 < cap; v++) {
        if (*v == '\\' || *v == '"') { out[o++] = '\\'; out[o++] = *v; }
        else if (*v == '\n') { out[o++] = '\\'; out[o++] = 'n'; }
        else out[o++] = *v;
    }
    out[o] = 0;
}
