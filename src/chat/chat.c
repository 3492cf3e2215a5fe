/*
 * Chat templates without a Jinja interpreter.
 *
 * Each family is rendered as its reference Jinja template renders it with
 * Hugging Face's settings (trim_blocks, lstrip_blocks); the reference of
 * each family is named above its renderer. Where a reference template
 * raises an exception (roles out of order, a role it does not know) we
 * return LLMS_ERR_TEMPLATE; we never fall back to another family.
 *
 * Output goes straight into the caller's buffer: nothing is allocated.
 * Bytes past the buffer are only counted, so one pass gives both the text
 * and the size needed.
 */
#include "chat.h"

#include <string.h>

#include "../core/error.h"

/* ------------------------------------------------------------------------ */
/* Output                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct out {
    char *buf;
    size_t cap;
    size_t len;      /* bytes produced so far; may exceed cap */
    int overflow;    /* len would exceed SIZE_MAX */
} out;

static void put(out *o, const char *s, size_t n) {
    if (o->overflow || n == 0) return;
    if (n > SIZE_MAX - o->len) {
        o->overflow = 1;
        return;
    }
    if (o->len < o->cap) {
        size_t room = o->cap - o->len;
        memcpy(o->buf + o->len, s, n < room ? n : room);
    }
    o->len += n;
}

static void put_str(out *o, const char *s) { put(o, s, strlen(s)); }

/* ------------------------------------------------------------------------ */
/* Whitespace as Jinja's trim / Python's str.strip() sees it                 */
/* ------------------------------------------------------------------------ */

/* Python's str.isspace() set, which str.strip() (and so Jinja's `trim`
 * filter) removes: not only ASCII blanks but also U+0085, U+00A0, the
 * U+2000 block, U+3000 and so on. */
static int py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Decodes one well-formed UTF-8 character; returns its length, or 0 if the
 * bytes are not one (such bytes are never whitespace). */
static size_t utf8_decode(const unsigned char *p, size_t n, uint32_t *cp) {
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t k;
    uint32_t c;
    if (n == 0) return 0;
    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    } else if ((p[0] & 0xe0) == 0xc0) {
        k = 2;
        c = p[0] & 0x1fu;
    } else if ((p[0] & 0xf0) == 0xe0) {
        k = 3;
        c = p[0] & 0x0fu;
    } else if ((p[0] & 0xf8) == 0xf0) {
        k = 4;
        c = p[0] & 0x07u;
    } else {
        return 0;
    }
    if (n < k) return 0;
    for (size_t i = 1; i < k; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        c = (c << 6) | (p[i] & 0x3fu);
    }
    if (c < min_cp[k] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return 0;
    *cp = c;
    return k;
}

/* Bytes of leading whitespace in s[0..n). */
static size_t lead_space(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        uint32_t c;
        size_t k = utf8_decode(p + i, n - i, &c);
        if (k == 0 || !py_space(c)) break;
        i += k;
    }
    return i;
}

/* Length of s[0..n) without its trailing whitespace. */
static size_t rstrip_len(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t end = n;
    while (end > 0) {
        size_t start = end - 1;
        while (start > 0 && end - start < 4 && (p[start] & 0xc0) == 0x80) start--;
        uint32_t c;
        size_t k = utf8_decode(p + start, end - start, &c);
        if (k != end - start || !py_space(c)) break;
        end = start;
    }
    return end;
}

static void put_trimmed(out *o, const char *s) {
    size_t n = strlen(s);
    size_t a = lead_space(s, n);
    put(o, s + a, rstrip_len(s + a, n - a));
}

/* ------------------------------------------------------------------------ */
/* Role checks                                                               */
/* ------------------------------------------------------------------------ */

static int is_role(const llms_chat_message *m, const char *role) {
    return strcmp(m->role, role) == 0;
}

/* Families whose template knows only system, user and assistant. */
static llms_status check_known_roles(const char *family, const llms_chat_message *m,
                                     size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!is_role(&m[i], "system") && !is_role(&m[i], "user") &&
            !is_role(&m[i], "assistant"))
            return err_set(LLMS_ERR_TEMPLATE,
                           "%s chat template: message %zu has role \"%.40s\"; only system, "
                           "user and assistant are supported",
                           family, i, m[i].role);
    }
    return LLMS_OK;
}

/* Families whose template takes an optional leading system message and then
 * requires user, assistant, user, ... (the reference raises otherwise).
 * Returns the index of the first non-system message in *first. */
static llms_status check_alternation(const char *family, const llms_chat_message *m, size_t n,
                                     size_t *first) {
    size_t f = (n > 0 && is_role(&m[0], "system")) ? 1 : 0;
    for (size_t i = f; i < n; i++) {
        const char *want = (i - f) % 2 == 0 ? "user" : "assistant";
        if (!is_role(&m[i], want))
            return err_set(LLMS_ERR_TEMPLATE,
                           "%s chat template: after an optional first system message, roles "
                           "must alternate user/assistant; message %zu is \"%.40s\", expected "
                           "\"%s\"",
                           family, i, m[i].role, want);
    }
    *first = f;
    return LLMS_OK;
}

/* ------------------------------------------------------------------------ */
/* Renderers                                                                 */
/* ------------------------------------------------------------------------ */

typedef llms_status (*render_fn)(out *o, const char *bos, const char *eos,
                                 const llms_chat_message *m, size_t n, int add_assistant);

/* ChatML, as teknium/OpenHermes-2.5-Mistral-7B's template: every role passes
 * through. (Qwen2-Instruct's template is the same but inserts a default
 * system message when there is none; we do not.) */
static llms_status render_chatml(out *o, const char *bos, const char *eos,
                                 const llms_chat_message *m, size_t n, int add_assistant) {
    (void)bos;
    (void)eos;
    for (size_t i = 0; i < n; i++) {
        put_str(o, "<|im_start|>");
        put_str(o, m[i].role);
        put_str(o, "\n");
        put_str(o, m[i].content);
        put_str(o, "<|im_end|>\n");
    }
    if (add_assistant) put_str(o, "<|im_start|>assistant\n");
    return LLMS_OK;
}

/* Llama 3, as meta-llama/Meta-Llama-3-8B-Instruct's template: BOS before the
 * first message, contents trimmed, every role passes through. */
static llms_status render_llama3(out *o, const char *bos, const char *eos,
                                 const llms_chat_message *m, size_t n, int add_assistant) {
    (void)eos;
    for (size_t i = 0; i < n; i++) {
        if (i == 0) put_str(o, bos);
        put_str(o, "<|start_header_id|>");
        put_str(o, m[i].role);
        put_str(o, "<|end_header_id|>\n\n");
        put_trimmed(o, m[i].content);
        put_str(o, "<|eot_id|>");
    }
    if (add_assistant) put_str(o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return LLMS_OK;
}

/* Llama 2, as meta-llama/Llama-2-7b-chat-hf's template: a leading system
 * message goes in <<SYS>> inside the first [INST]; each user turn is
 * BOS "[INST] " strip(content) " [/INST]", each assistant turn
 * " " strip(content) " " EOS. The template has no generation prompt (a user
 * turn already ends the way the assistant's begins), so add_assistant adds
 * nothing. */
static llms_status render_llama2(out *o, const char *bos, const char *eos,
                                 const llms_chat_message *m, size_t n, int add_assistant) {
    (void)add_assistant;
    size_t first;
    llms_status st = check_alternation("llama2", m, n, &first);
    if (st != LLMS_OK) return st;
    for (size_t i = first; i < n; i++) {
        const char *c = m[i].content;
        if (is_role(&m[i], "user")) {
            put_str(o, bos);
            put_str(o, "[INST] ");
            if (i == first && first == 1) {
                /* strip() applies to "<<SYS>>\n" + system + "\n<</SYS>>\n\n" +
                 * content as a whole: it removes the content's trailing
                 * whitespace, and the "\n\n" too when the content is blank. */
                size_t e = rstrip_len(c, strlen(c));
                put_str(o, "<<SYS>>\n");
                put_str(o, m[0].content);
                put_str(o, "\n<</SYS>>");
                if (e > 0) {
                    put_str(o, "\n\n");
                    put(o, c, e);
                }
            } else {
                put_trimmed(o, c);
            }
            put_str(o, " [/INST]");
        } else {
            put_str(o, " ");
            put_trimmed(o, c);
            put_str(o, " ");
            put_str(o, eos);
        }
    }
    return LLMS_OK;
}

/* Mistral, as the "v1" template of mistralai/Mistral-7B-Instruct-v0.1 and
 * v0.2 (the one with system-message support): BOS, then
 * " [INST] " content " [/INST]" per user turn, with a leading system message
 * placed before the first user content followed by "\n\n", and
 * " " content EOS per assistant turn. No trimming; no generation prompt. */
static llms_status render_mistral(out *o, const char *bos, const char *eos,
                                  const llms_chat_message *m, size_t n, int add_assistant) {
    (void)add_assistant;
    size_t first;
    llms_status st = check_alternation("mistral", m, n, &first);
    if (st != LLMS_OK) return st;
    put_str(o, bos);
    for (size_t i = first; i < n; i++) {
        if (is_role(&m[i], "user")) {
            put_str(o, " [INST] ");
            if (i == first && first == 1) {
                put_str(o, m[0].content);
                put_str(o, "\n\n");
            }
            put_str(o, m[i].content);
            put_str(o, " [/INST]");
        } else {
            put_str(o, " ");
            put_str(o, m[i].content);
            put_str(o, eos);
        }
    }
    return LLMS_OK;
}

/* Phi-3, as microsoft/Phi-3-mini-4k-instruct's current template (also
 * Phi-3.5-mini-instruct's): "<|role|>\n" content "<|end|>\n" for system,
 * user and assistant; then "<|assistant|>\n" with add_assistant, else EOS. */
static llms_status render_phi3(out *o, const char *bos, const char *eos,
                               const llms_chat_message *m, size_t n, int add_assistant) {
    (void)bos;
    llms_status st = check_known_roles("phi3", m, n);
    if (st != LLMS_OK) return st;
    for (size_t i = 0; i < n; i++) {
        put_str(o, "<|");
        put_str(o, m[i].role);
        put_str(o, "|>\n");
        put_str(o, m[i].content);
        put_str(o, "<|end|>\n");
    }
    put_str(o, add_assistant ? "<|assistant|>\n" : eos);
    return LLMS_OK;
}

/* Gemma, as google/gemma-2-9b-it's template: BOS, then per turn
 * "<start_of_turn>" role "\n" trim(content) "<end_of_turn>\n" with the
 * assistant called "model", and "<start_of_turn>model\n" to generate.
 * Gemma has no system role: a leading system message is prepended to the
 * first turn followed by "\n\n", as google/gemma-3-*-it's template does. */
static llms_status render_gemma(out *o, const char *bos, const char *eos,
                                const llms_chat_message *m, size_t n, int add_assistant) {
    (void)eos;
    size_t first;
    llms_status st = check_alternation("gemma", m, n, &first);
    if (st != LLMS_OK) return st;
    put_str(o, bos);
    for (size_t i = first; i < n; i++) {
        put_str(o, "<start_of_turn>");
        put_str(o, is_role(&m[i], "assistant") ? "model" : m[i].role);
        put_str(o, "\n");
        if (i == first && first == 1) {
            put_str(o, m[0].content);
            put_str(o, "\n\n");
        }
        put_trimmed(o, m[i].content);
        put_str(o, "<end_of_turn>\n");
    }
    if (add_assistant) put_str(o, "<start_of_turn>model\n");
    return LLMS_OK;
}

/* Zephyr, as HuggingFaceH4/zephyr-7b-beta's template rendered with
 * trim_blocks: "<|role|>\n" content EOS "\n" per message, and after the last
 * message "<|assistant|>\n" with add_assistant (inside the loop, so an empty
 * conversation gets nothing). */
static llms_status render_zephyr(out *o, const char *bos, const char *eos,
                                 const llms_chat_message *m, size_t n, int add_assistant) {
    (void)bos;
    llms_status st = check_known_roles("zephyr", m, n);
    if (st != LLMS_OK) return st;
    for (size_t i = 0; i < n; i++) {
        put_str(o, "<|");
        put_str(o, m[i].role);
        put_str(o, "|>\n");
        put_str(o, m[i].content);
        put_str(o, eos);
        put_str(o, "\n");
        if (i + 1 == n && add_assistant) put_str(o, "<|assistant|>\n");
    }
    return LLMS_OK;
}

/* ------------------------------------------------------------------------ */
/* Families                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct family {
    int32_t id;
    const char *name;   /* accepted as template_text, case-insensitively */
    const char *bos;    /* conventional bos_token text, used without a model */
    const char *eos;    /* conventional eos_token text */
    int uses_bos, uses_eos;
    render_fn render;
} family;

static const family families[] = {
    {LLMS_CHAT_CHATML, "chatml", "", "<|im_end|>", 0, 0, render_chatml},
    {LLMS_CHAT_LLAMA2, "llama2", "<s>", "</s>", 1, 1, render_llama2},
    {LLMS_CHAT_LLAMA3, "llama3", "<|begin_of_text|>", "<|eot_id|>", 1, 0, render_llama3},
    {LLMS_CHAT_MISTRAL, "mistral", "<s>", "</s>", 1, 1, render_mistral},
    {LLMS_CHAT_PHI3, "phi3", "<s>", "<|endoftext|>", 0, 1, render_phi3},
    {LLMS_CHAT_GEMMA, "gemma", "<bos>", "<eos>", 1, 0, render_gemma},
    {LLMS_CHAT_ZEPHYR, "zephyr", "<s>", "</s>", 0, 1, render_zephyr},
};

static const family *family_get(int32_t id) {
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (families[i].id == id) return &families[i];
    return NULL;
}

static int ascii_ieq(const char *a, const char *b) {
    for (;; a++, b++) {
        unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
        if (x >= 'A' && x <= 'Z') x = (unsigned char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = (unsigned char)(y - 'A' + 'a');
        if (x != y) return 0;
        if (x == 0) return 1;
    }
}

static int has(const char *t, const char *marker) { return strstr(t, marker) != NULL; }

int32_t chat_detect(const char *t) {
    if (!t) return LLMS_CHAT_UNKNOWN;
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (ascii_ieq(t, families[i].name)) return families[i].id;

    /* Each family's turn marker. A template that shows the markers of two
     * families is some other format (or a multi-format template), and we do
     * not guess which part applies. */
    int chatml = has(t, "<|im_start|>");
    int llama3 = has(t, "<|start_header_id|>");
    int gemma = has(t, "<start_of_turn>");
    int inst = has(t, "[INST]");
    int user = has(t, "<|user|>");
    if (chatml + llama3 + gemma + inst + user != 1) return LLMS_CHAT_UNKNOWN;

    if (chatml)  /* Phi-4 writes "<|im_start|>user<|im_sep|>": not ChatML */
        return has(t, "<|im_sep|>") ? LLMS_CHAT_UNKNOWN : LLMS_CHAT_CHATML;
    if (llama3) return LLMS_CHAT_LLAMA3;
    if (gemma) return LLMS_CHAT_GEMMA;
    if (inst) return has(t, "<<SYS>>") ? LLMS_CHAT_LLAMA2 : LLMS_CHAT_MISTRAL;
    /* "<|user|>": Phi-3 ends turns with <|end|>, Zephyr with the EOS token.
     * Tulu/OLMo-style templates (no <|system|>, no EOS after user turns)
     * render differently and stay unknown. */
    if (has(t, "<|end|>")) return LLMS_CHAT_PHI3;
    if (has(t, "<|system|>") && has(t, "<|assistant|>") &&
        (has(t, "eos_token") || has(t, "</s>")))
        return LLMS_CHAT_ZEPHYR;
    return LLMS_CHAT_UNKNOWN;
}

/* ------------------------------------------------------------------------ */
/* Entry points                                                              */
/* ------------------------------------------------------------------------ */

static llms_status fail(char *buf, size_t cap, llms_status st) {
    if (buf && cap > 0) buf[0] = 0;
    return st;
}

static llms_status check_args(const llms_chat_message *m, size_t n, char *buf, size_t cap,
                              size_t *len) {
    if (!len) return err_set(LLMS_ERR_INVALID_ARGUMENT, "chat template: len is NULL");
    *len = 0;
    if (!buf && cap > 0)
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "chat template: buf is NULL but cap is %zu",
                       cap);
    if (!m && n > 0)
        return fail(buf, cap,
                    err_set(LLMS_ERR_INVALID_ARGUMENT,
                            "chat template: messages is NULL but n_messages is %zu", n));
    for (size_t i = 0; i < n; i++) {
        if (!m[i].role || !m[i].content)
            return fail(buf, cap,
                        err_set(LLMS_ERR_INVALID_ARGUMENT,
                                "chat template: message %zu has a NULL %s", i,
                                m[i].role ? "content" : "role"));
    }
    return LLMS_OK;
}

llms_status chat_render(int32_t family_id, const char *bos_text, const char *eos_text,
                        const llms_chat_message *m, size_t n, int add_assistant, char *buf,
                        size_t cap, size_t *len) {
    llms_status st = check_args(m, n, buf, cap, len);
    if (st != LLMS_OK) return st;
    const family *f = family_get(family_id);
    if (!f)
        return fail(buf, cap,
                    err_set(LLMS_ERR_TEMPLATE, "chat template: unknown family %d",
                            (int)family_id));

    out o = {buf, cap, 0, 0};
    st = f->render(&o, bos_text ? bos_text : f->bos, eos_text ? eos_text : f->eos, m, n,
                   add_assistant != 0);
    if (st != LLMS_OK) return fail(buf, cap, st);
    if (o.overflow)
        return fail(buf, cap,
                    err_set(LLMS_ERR_INVALID_ARGUMENT,
                            "chat template: the rendered prompt is larger than SIZE_MAX"));
    *len = o.len;
    if (o.len >= cap)
        return fail(buf, cap,
                    err_set(LLMS_ERR_BUFFER_TOO_SMALL,
                            "chat template: the prompt needs %zu bytes plus a NUL, the "
                            "buffer holds %zu",
                            o.len, cap));
    buf[o.len] = 0;
    return LLMS_OK;
}

/* The text of one of the model's special tokens as the template's
 * bos_token / eos_token would show it. "" if the model has no such token;
 * NULL (use the family's conventional text) if its text cannot be had. */
static const char *special_text(const llms_model *model, int32_t which, char *tmp,
                                size_t cap) {
    int32_t id = llms_model_special_token(model, which);
    if (id < 0) return "";
    size_t l = 0;
    if (llms_token_to_piece(model, id, tmp, cap - 1, &l) == LLMS_OK && l > 0 && l < cap) {
        tmp[l] = 0;
        if (strlen(tmp) == l) return tmp;
    }
    /* Control tokens may have an empty piece; their text is what
     * detokenizing with LLMS_DETOKENIZE_SPECIAL gives. */
    l = 0;
    if (llms_detokenize(model, &id, 1, LLMS_DETOKENIZE_SPECIAL, tmp, cap, &l) == LLMS_OK &&
        l > 0 && l < cap && strlen(tmp) == l)
        return tmp;
    return NULL;
}

LLMS_API int32_t llms_chat_template_family(const char *template_text) {
    return chat_detect(template_text);
}

LLMS_API llms_status llms_chat_apply_template(const llms_model *model,
                                              const char *template_text,
                                              const llms_chat_message *messages,
                                              size_t n_messages, int32_t add_assistant,
                                              char *buf, size_t cap, size_t *len) {
    llms_status st = check_args(messages, n_messages, buf, cap, len);
    if (st != LLMS_OK) return st;

    const char *tmpl = template_text;
    if (!tmpl) {
        if (!model)
            return fail(buf, cap,
                        err_set(LLMS_ERR_TEMPLATE,
                                "chat template: no template_text and no model to take one from"));
        tmpl = llms_model_chat_template(model);
        if (!tmpl)
            return fail(buf, cap,
                        err_set(LLMS_ERR_TEMPLATE,
                                "chat template: the model has no tokenizer.chat_template; "
                                "pass template_text (e.g. \"chatml\")"));
    }
    int32_t fam = chat_detect(tmpl);
    const family *f = family_get(fam);
    if (!f)
        return fail(buf, cap,
                    err_set(LLMS_ERR_TEMPLATE,
                            "chat template not recognised (known families: chatml, llama2, "
                            "llama3, mistral, phi3, gemma, zephyr)"));

    char bos_tmp[128], eos_tmp[128];
    const char *bos = NULL, *eos = NULL;
    if (model) {
        if (f->uses_bos) bos = special_text(model, LLMS_SPECIAL_BOS, bos_tmp, sizeof bos_tmp);
        if (f->uses_eos) eos = special_text(model, LLMS_SPECIAL_EOS, eos_tmp, sizeof eos_tmp);
    }
    return chat_render(fam, bos, eos, messages, n_messages, add_assistant, buf, cap, len);
}
