/*
 * libllmserve version: the single place the version is defined.
 * The Makefile (soname, file names), pkgconfig/llmserve.pc and the bindings
 * read these three numbers from here.
 */
#ifndef LLMSERVE_VERSION_H
#define LLMSERVE_VERSION_H

#define LLMS_VERSION_MAJOR 0
#define LLMS_VERSION_MINOR 2
#define LLMS_VERSION_PATCH 0

/* Encoded as MAJOR*1000000 + MINOR*1000 + PATCH, comparable with llms_version_number(). */
#define LLMS_VERSION_NUMBER \
    (LLMS_VERSION_MAJOR * 1000000 + LLMS_VERSION_MINOR * 1000 + LLMS_VERSION_PATCH)

#endif /* LLMSERVE_VERSION_H */
