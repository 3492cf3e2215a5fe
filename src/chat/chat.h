/*
 * Chat templates: recognise a model's Jinja chat template by the markers of
 * its family and render messages the way that family's reference template
 * does. There is no Jinja interpreter: each family's rendering is written
 * out in C, and a template of no known family is refused, never guessed.
 *
 * Rendering writes straight into the caller's buffer and allocates nothing.
 */
#ifndef LLMS_CHAT_H
#define LLMS_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "llmserve.h"

/* The LLMS_CHAT_* family of a template text or family name
 * ("chatml", "llama2", "llama3", "mistral", "phi3", "gemma", "zephyr",
 * compared case-insensitively); LLMS_CHAT_UNKNOWN for NULL or anything else. */
int32_t chat_detect(const char *tmpl);

/* Render `n` messages in `family`'s format. `bos_text` / `eos_text` are what
 * the template's bos_token / eos_token stand for (NULL: the family's
 * conventional text, e.g. "<s>"). Output is NUL-terminated in `buf`; *len is
 * always set: the bytes needed without the NUL (0 on errors other than
 * LLMS_ERR_BUFFER_TOO_SMALL). On any error `buf` (if cap > 0) holds "".
 * Errors: LLMS_ERR_INVALID_ARGUMENT (NULL len, NULL role/content, NULL buf
 * with cap > 0, NULL messages with n > 0), LLMS_ERR_TEMPLATE (unknown
 * family, a role or role order the family's template rejects),
 * LLMS_ERR_BUFFER_TOO_SMALL. */
llms_status chat_render(int32_t family, const char *bos_text, const char *eos_text,
                        const llms_chat_message *m, size_t n, int add_assistant,
                        char *buf, size_t cap, size_t *len);

#endif
