/*
 * Tiny helpers shared by the example programs: option parsing and error
 * reporting. Header-only so each example stays a single translation unit
 * that uses nothing but the public API.
 */
#ifndef LLMS_EXAMPLES_CLI_H
#define LLMS_EXAMPLES_CLI_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmserve.h"

/* Prints "prog: what: STATUS (detail)" to stderr. */
static inline void cli_report(const char *prog, const char *what, llms_status st) {
    const char *d = llms_errmsg();
    fprintf(stderr, "%s: %s: %s%s%s%s\n", prog, what, llms_status_string(st), *d ? " (" : "", d,
            *d ? ")" : "");
}

static inline int cli_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static inline int cli_float(const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end) return 0;
    *out = v;
    return 1;
}

/* "--name VALUE": returns VALUE and advances *i, or NULL if argv[*i] is not --name. */
static inline const char *cli_opt(int argc, char **argv, int *i, const char *name) {
    if (strcmp(argv[*i], name) != 0) return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "%s: option %s needs a value\n", argv[0], name);
        exit(2);
    }
    return argv[++*i];
}

/* "cpu", "vulkan", "auto" → LLMS_BACKEND_*; -1 if unknown. */
static inline int cli_backend(const char *s) {
    if (!strcmp(s, "auto")) return LLMS_BACKEND_AUTO;
    if (!strcmp(s, "cpu")) return LLMS_BACKEND_CPU;
    if (!strcmp(s, "vulkan")) return LLMS_BACKEND_VULKAN;
    return -1;
}

/* Options every generating example shares: sampling (--max-tokens,
 * --temperature, --top-k, --top-p, --min-p, --seed) and runtime (--threads,
 * --backend). Returns 1 if argv[*i] was one of them (value consumed), 0 if
 * not, -1 if its value is malformed. Value ranges are the library's to check. */
static inline int cli_common_opt(int argc, char **argv, int *i, llms_sampling_params *sp,
                                 llms_context_params *cp) {
    const char *v;
    long l;
    if ((v = cli_opt(argc, argv, i, "--max-tokens"))) {
        if (!cli_long(v, -1, 1 << 30, &l)) return -1;
        sp->max_tokens = (int32_t)l;
    } else if ((v = cli_opt(argc, argv, i, "--temperature"))) {
        if (!cli_float(v, &sp->temperature)) return -1;
    } else if ((v = cli_opt(argc, argv, i, "--top-k"))) {
        if (!cli_long(v, 0, 1 << 30, &l)) return -1;
        sp->top_k = (int32_t)l;
    } else if ((v = cli_opt(argc, argv, i, "--top-p"))) {
        if (!cli_float(v, &sp->top_p)) return -1;
    } else if ((v = cli_opt(argc, argv, i, "--min-p"))) {
        if (!cli_float(v, &sp->min_p)) return -1;
    } else if ((v = cli_opt(argc, argv, i, "--seed"))) {
        char *end;
        errno = 0;
        sp->seed = strtoull(v, &end, 10);
        if (errno || end == v || *end) return -1;
    } else if ((v = cli_opt(argc, argv, i, "--threads"))) {
        if (!cli_long(v, 0, 1024, &l)) return -1;
        cp->n_threads = (int32_t)l;
    } else if ((v = cli_opt(argc, argv, i, "--backend"))) {
        if ((cp->backend = cli_backend(v)) < 0) return -1;
    } else {
        return 0;
    }
    return 1;
}

#endif
