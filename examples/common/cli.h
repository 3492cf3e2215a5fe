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

#endif
