/*
 * Internal error reporting. A failing internal function records a detail
 * message in the calling thread's buffer (read by llms_errmsg()) and returns
 * its status, so call sites read:  return err_set(LLMS_ERR_X, "...", ...);
 */
#ifndef LLMS_CORE_ERROR_H
#define LLMS_CORE_ERROR_H

#include "llmserve.h"

#if defined(__GNUC__)
#define LLMS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define LLMS_PRINTF(f, a)
#endif

/* Records the formatted message for this thread; returns `status`. */
llms_status err_set(llms_status status, const char *fmt, ...) LLMS_PRINTF(2, 3);

/* Clear this thread's message. */
void err_clear(void);

/* This thread's message ("" if none). */
const char *err_message(void);

#define ERR_OOM() err_set(LLMS_ERR_NO_MEMORY, "out of memory in %s", __func__)

#endif
