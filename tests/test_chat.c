/*
 * Chat templates: family detection from real Jinja templates, rendering of
 * each family compared with what its reference template renders, errors.
 *
 * The expected strings were written from the published templates (named at
 * each one) rendered the way Hugging Face's apply_chat_template renders them
 * (Jinja2 with trim_blocks and lstrip_blocks), with bos_token / eos_token
 * set to the family's usual text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "llmserve.h"
#include "chat/chat.h"
#include "support/fixtures.h"

/* ------------------------------------------------------------------------ */
/* Real templates (tokenizer_config.json "chat_template" values, JSON-decoded:
 * a "\n" there is a newline here, a "\\n" there is backslash-n here).       */
/* ------------------------------------------------------------------------ */

/* Qwen/Qwen2-7B-Instruct */
static const char *const TMPL_QWEN2 =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/* teknium/OpenHermes-2.5-Mistral-7B */
static const char *const TMPL_OPENHERMES =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}";

/* meta-llama/Meta-Llama-3-8B-Instruct */
static const char *const TMPL_LLAMA3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

/* meta-llama/Llama-2-7b-chat-hf */
static const char *const TMPL_LLAMA2 =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
    "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if "
    "(message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation "
    "roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 "
    "== 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] "
    "%}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
    "content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + "
    "content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/* mistralai/Mistral-7B-Instruct-v0.1 (current "v1" template) */
static const char *const TMPL_MISTRAL_V1 =
    "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = "
    "messages[0]['content'] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    "
    "{%- set loop_messages = messages %}\n{%- endif %}\n\n{{- bos_token }}\n{%- for message in "
    "loop_messages %}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n  "
    "      {{- raise_exception('After the optional system message, conversation roles must "
    "alternate user/assistant/user/assistant/...') }}\n    {%- endif %}\n    {%- if "
    "message['role'] == 'user' %}\n        {%- if loop.first and system_message is defined "
    "%}\n            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' "
    "[/INST]' }}\n        {%- else %}\n            {{- ' [INST] ' + message['content'] + ' "
    "[/INST]' }}\n        {%- endif %}\n    {%- elif message['role'] == 'assistant' %}\n     "
    "   {{- ' ' + message['content'] + eos_token}}\n    {%- else %}\n        {{- "
    "raise_exception('Only user and assistant roles are supported, with the exception of an "
    "initial optional system message!') }}\n    {%- endif %}\n{%- endfor %}\n";

/* mistralai/Mixtral-8x7B-Instruct-v0.1 (legacy template, no system role) */
static const char *const TMPL_MIXTRAL =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ "
    "'[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant "
    "roles are supported!') }}{% endif %}{% endfor %}";

/* microsoft/Phi-3-mini-4k-instruct (current template) */
static const char *const TMPL_PHI3 =
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + "
    "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + "
    "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if "
    "add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";

/* microsoft/Phi-3-mini-4k-instruct (April 2024 template; the one in
 * llama.cpp's ggml-vocab-phi-3.gguf) */
static const char *const TMPL_PHI3_APRIL =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}"
    "{{'<|user|>' + '\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}"
    "{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|end|>' + '\n'}}"
    "{% endif %}{% endfor %}";

/* google/gemma-2-9b-it */
static const char *const TMPL_GEMMA2 =
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role "
    "not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == "
    "'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must "
    "alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == "
    "'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + "
    "'<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{'<start_of_turn>model\n'}}{% endif %}";

/* HuggingFaceH4/zephyr-7b-beta */
static const char *const TMPL_ZEPHYR =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
    "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ "
    "'<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == "
    "'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif "
    "%}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
    "{% endfor %}";

/* Formats we do not render: each must be refused, not mistaken for a family. */

/* microsoft/phi-4: ChatML markers, but "<|im_sep|>" instead of a newline. */
static const char *const TMPL_PHI4 =
    "{% for message in messages %}{% if (message['role'] == 'system') %}"
    "{{'<|im_start|>system<|im_sep|>' + message['content'] + '<|im_end|>'}}{% elif "
    "(message['role'] == 'user') %}{{'<|im_start|>user<|im_sep|>' + message['content'] + "
    "'<|im_end|><|im_start|>assistant<|im_sep|>'}}{% elif (message['role'] == 'assistant') "
    "%}{{message['content'] + '<|im_end|>'}}{% endif %}{% endfor %}";

/* allenai/tulu-2-7b: "<|user|>" but no system turn and no EOS after users. */
static const char *const TMPL_TULU2 =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
    "message['content'] }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  "
    "+ message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and "
    "add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

/* deepseek-ai/DeepSeek-V2-Chat */
static const char *const TMPL_DEEPSEEK_V2 =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}"
    "{% endif %}{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' "
    "%}{{ 'User: ' + message['content'] + '\n\n' }}{% elif message['role'] == 'assistant' %}"
    "{{ 'Assistant: ' + message['content'] + eos_token }}{% elif message['role'] == "
    "'system' %}{{ message['content'] + '\n\n' }}{% endif %}{% endfor %}{% if "
    "add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

/* THUDM/chatglm3-6b */
static const char *const TMPL_CHATGLM3 =
    "{% for message in messages %}{% if loop.first %}[gMASK]sop<|{{ message['role'] }}|>\n "
    "{{ message['content'] }}{% else %}<|{{ message['role'] }}|>\n {{ message['content'] }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static const llms_chat_message CONV[] = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
};
#define N_CONV (sizeof CONV / sizeof CONV[0])

static char out_buf[8192];

/* Renders with model NULL; fails the test on an error. */
static const char *render(const char *tmpl, const llms_chat_message *m, size_t n, int add) {
    size_t len = 12345;
    llms_status st = llms_chat_apply_template(NULL, tmpl, m, n, add, out_buf, sizeof out_buf,
                                              &len);
    if (st != LLMS_OK) fail_msg("render(%.40s): status %d: %s", tmpl, (int)st, llms_errmsg());
    assert_int_equal(len, strlen(out_buf));
    return out_buf;
}

static llms_status render_status(const char *tmpl, const llms_chat_message *m, size_t n,
                                 int add, size_t *len) {
    return llms_chat_apply_template(NULL, tmpl, m, n, add, out_buf, sizeof out_buf, len);
}

/* ------------------------------------------------------------------------ */
/* Rendering: system + user + assistant + user, add_assistant = 1            */
/* ------------------------------------------------------------------------ */

/* ChatML (teknium/OpenHermes-2.5-Mistral-7B; Qwen/Qwen2-7B-Instruct renders
 * the same when a system message is given). */
static void test_render_chatml(void **state) {
    (void)state;
    static const char *const want =
        "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
        "<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\nHi there<|im_end|>\n"
        "<|im_start|>user\nWho are you<|im_end|>\n"
        "<|im_start|>assistant\n";
    assert_string_equal(render(TMPL_OPENHERMES, CONV, N_CONV, 1), want);
    assert_string_equal(render(TMPL_QWEN2, CONV, N_CONV, 1), want);
    assert_string_equal(render("chatml", CONV, N_CONV, 1), want);
}

/* meta-llama/Llama-2-7b-chat-hf, bos_token "<s>", eos_token "</s>". */
static void test_render_llama2(void **state) {
    (void)state;
    static const char *const want =
        "<s>[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]"
        " Hi there </s>"
        "<s>[INST] Who are you [/INST]";
    assert_string_equal(render(TMPL_LLAMA2, CONV, N_CONV, 1), want);
    assert_string_equal(render("llama2", CONV, N_CONV, 1), want);
    /* The template has no generation prompt: add_assistant changes nothing. */
    assert_string_equal(render("llama2", CONV, N_CONV, 0), want);
}

/* meta-llama/Meta-Llama-3-8B-Instruct, bos_token "<|begin_of_text|>". */
static void test_render_llama3(void **state) {
    (void)state;
    static const char *const want =
        "<|begin_of_text|>"
        "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n";
    assert_string_equal(render(TMPL_LLAMA3, CONV, N_CONV, 1), want);
    assert_string_equal(render("llama3", CONV, N_CONV, 1), want);
}

/* mistralai/Mistral-7B-Instruct-v0.1 "v1" template, bos "<s>", eos "</s>". */
static void test_render_mistral(void **state) {
    (void)state;
    static const char *const want =
        "<s> [INST] You are a helpful assistant\n\nHello [/INST]"
        " Hi there</s>"
        " [INST] Who are you [/INST]";
    assert_string_equal(render(TMPL_MISTRAL_V1, CONV, N_CONV, 1), want);
    assert_string_equal(render("mistral", CONV, N_CONV, 1), want);
}

/* microsoft/Phi-3-mini-4k-instruct (current), eos_token "<|endoftext|>". */
static void test_render_phi3(void **state) {
    (void)state;
    static const char *const want =
        "<|system|>\nYou are a helpful assistant<|end|>\n"
        "<|user|>\nHello<|end|>\n"
        "<|assistant|>\nHi there<|end|>\n"
        "<|user|>\nWho are you<|end|>\n"
        "<|assistant|>\n";
    assert_string_equal(render(TMPL_PHI3, CONV, N_CONV, 1), want);
    assert_string_equal(render("phi3", CONV, N_CONV, 1), want);
    /* Without the generation prompt the template ends with eos_token. */
    assert_string_equal(render("phi3", CONV, 2, 0),
                        "<|system|>\nYou are a helpful assistant<|end|>\n"
                        "<|user|>\nHello<|end|>\n<|endoftext|>");
}

/* google/gemma-2-9b-it, bos_token "<bos>"; the system message goes before
 * the first user text with "\n\n", as google/gemma-3-*-it's template does. */
static void test_render_gemma(void **state) {
    (void)state;
    static const char *const want =
        "<bos>"
        "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n"
        "<start_of_turn>model\nHi there<end_of_turn>\n"
        "<start_of_turn>user\nWho are you<end_of_turn>\n"
        "<start_of_turn>model\n";
    assert_string_equal(render(TMPL_GEMMA2, CONV, N_CONV, 1), want);
    assert_string_equal(render("gemma", CONV, N_CONV, 1), want);
}

/* HuggingFaceH4/zephyr-7b-beta with trim_blocks, eos_token "</s>". */
static void test_render_zephyr(void **state) {
    (void)state;
    static const char *const want =
        "<|system|>\nYou are a helpful assistant</s>\n"
        "<|user|>\nHello</s>\n"
        "<|assistant|>\nHi there</s>\n"
        "<|user|>\nWho are you</s>\n"
        "<|assistant|>\n";
    assert_string_equal(render(TMPL_ZEPHYR, CONV, N_CONV, 1), want);
    assert_string_equal(render("zephyr", CONV, N_CONV, 1), want);
    assert_string_equal(render("zephyr", CONV, 2, 0),
                        "<|system|>\nYou are a helpful assistant</s>\n<|user|>\nHello</s>\n");
}

/* ------------------------------------------------------------------------ */
/* Family details                                                            */
/* ------------------------------------------------------------------------ */

static void test_without_system(void **state) {
    (void)state;
    const llms_chat_message *m = CONV + 1; /* user, assistant, user */
    assert_string_equal(render("llama2", m, 3, 1),
                        "<s>[INST] Hello [/INST] Hi there </s><s>[INST] Who are you [/INST]");
    assert_string_equal(render("mistral", m, 3, 1),
                        "<s> [INST] Hello [/INST] Hi there</s> [INST] Who are you [/INST]");
    assert_string_equal(render("gemma", m, 1, 1),
                        "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n");
    assert_string_equal(render("chatml", m, 1, 0), "<|im_start|>user\nHello<|im_end|>\n");
}

/* Jinja's trim / str.strip() remove Unicode whitespace too. */
static void test_trimming(void **state) {
    (void)state;
    const llms_chat_message m[] = {
        {"user", " \t\n Hello \xc2\xa0\xe3\x80\x80\r\n"}, /* NBSP, ideographic space */
        {"assistant", "\n  Hi  \n"},
    };
    assert_string_equal(render("llama3", m, 2, 0),
                        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello"
                        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi"
                        "<|eot_id|>");
    assert_string_equal(render("gemma", m, 2, 0),
                        "<bos><start_of_turn>user\nHello<end_of_turn>\n"
                        "<start_of_turn>model\nHi<end_of_turn>\n");
    assert_string_equal(render("llama2", m, 2, 0),
                        "<s>[INST] Hello [/INST] Hi </s>");
    /* Mistral, ChatML, Phi-3 and Zephyr keep the content as it is. */
    assert_string_equal(render("mistral", m, 1, 0),
                        "<s> [INST]  \t\n Hello \xc2\xa0\xe3\x80\x80\r\n [/INST]");
    /* A lone continuation byte or a non-space character is not trimmed. */
    const llms_chat_message bad[] = {{"user", "\x80 x \xe3\x80"}};
    assert_string_equal(render("llama3", bad, 1, 0),
                        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
                        "\x80 x \xe3\x80<|eot_id|>");
}

/* Llama 2 strips "<<SYS>>...<</SYS>>\n\n" + content as a whole: the user
 * content keeps its leading spaces, and a blank one takes the "\n\n" along. */
static void test_llama2_system_strip(void **state) {
    (void)state;
    const llms_chat_message m[] = {{"system", " sys "}, {"user", "  hi  "}};
    assert_string_equal(render("llama2", m, 2, 1),
                        "<s>[INST] <<SYS>>\n sys \n<</SYS>>\n\n  hi [/INST]");
    const llms_chat_message blank[] = {{"system", "sys"}, {"user", " \n "}};
    assert_string_equal(render("llama2", blank, 2, 1), "<s>[INST] <<SYS>>\nsys\n<</SYS>> [/INST]");
}

static void test_roles(void **state) {
    (void)state;
    size_t len = 99;
    const llms_chat_message tool[] = {{"user", "2+2?"}, {"tool", "4"}};
    /* ChatML and Llama 3 pass any role through. */
    assert_string_equal(render("chatml", tool, 2, 0),
                        "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>tool\n4<|im_end|>\n");
    assert_string_equal(render("llama3", tool + 1, 1, 0),
                        "<|begin_of_text|><|start_header_id|>tool<|end_header_id|>\n\n4"
                        "<|eot_id|>");
    /* The others refuse roles their template does not know. */
    static const char *const strict[] = {"llama2", "mistral", "phi3", "gemma", "zephyr"};
    for (size_t i = 0; i < sizeof strict / sizeof strict[0]; i++) {
        out_buf[0] = 'x';
        assert_int_equal(render_status(strict[i], tool, 2, 1, &len), LLMS_ERR_TEMPLATE);
        assert_int_equal(len, 0);
        assert_string_equal(out_buf, "");
        assert_true(strlen(llms_errmsg()) > 0);
    }
}

/* Llama 2, Mistral and Gemma require user/assistant alternation after an
 * optional first system message (their templates raise otherwise). */
static void test_alternation(void **state) {
    (void)state;
    size_t len;
    const llms_chat_message two_users[] = {{"user", "a"}, {"user", "b"}};
    const llms_chat_message assistant_first[] = {{"assistant", "a"}, {"user", "b"}};
    const llms_chat_message late_system[] = {{"user", "a"}, {"assistant", "b"},
                                             {"system", "c"}};
    static const char *const fams[] = {"llama2", "mistral", "gemma"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(render_status(fams[i], two_users, 2, 1, &len), LLMS_ERR_TEMPLATE);
        assert_int_equal(render_status(fams[i], assistant_first, 2, 1, &len),
                         LLMS_ERR_TEMPLATE);
        assert_int_equal(render_status(fams[i], late_system, 3, 1, &len), LLMS_ERR_TEMPLATE);
    }
    /* Families without that rule render the same messages. */
    assert_int_equal(render_status("chatml", two_users, 2, 1, &len), LLMS_OK);
    assert_int_equal(render_status("phi3", late_system, 3, 1, &len), LLMS_OK);
    assert_int_equal(render_status("zephyr", assistant_first, 2, 1, &len), LLMS_OK);
}

static void test_empty_conversation(void **state) {
    (void)state;
    assert_string_equal(render("chatml", NULL, 0, 1), "<|im_start|>assistant\n");
    assert_string_equal(render("chatml", NULL, 0, 0), "");
    assert_string_equal(render("gemma", NULL, 0, 1), "<bos><start_of_turn>model\n");
    assert_string_equal(render("llama2", NULL, 0, 1), "");
    assert_string_equal(render("zephyr", NULL, 0, 1), "");
}

/* chat_render takes the BOS/EOS texts the model's tokens give. */
static void test_render_custom_bos_eos(void **state) {
    (void)state;
    char buf[512];
    size_t len = 0;
    assert_int_equal(chat_render(LLMS_CHAT_LLAMA2, "<B>", "<E>", CONV + 1, 3, 1, buf,
                                 sizeof buf, &len),
                     LLMS_OK);
    assert_string_equal(buf, "<B>[INST] Hello [/INST] Hi there <E><B>[INST] Who are you [/INST]");
    assert_int_equal(len, strlen(buf));
    /* An empty BOS (a model without one) is simply absent. */
    assert_int_equal(chat_render(LLMS_CHAT_LLAMA3, "", NULL, CONV + 1, 1, 0, buf, sizeof buf,
                                 &len),
                     LLMS_OK);
    assert_string_equal(buf, "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>");
    assert_int_equal(chat_render(LLMS_CHAT_UNKNOWN, NULL, NULL, CONV, 1, 1, buf, sizeof buf,
                                 &len),
                     LLMS_ERR_TEMPLATE);
    assert_int_equal(chat_render(99, NULL, NULL, CONV, 1, 1, buf, sizeof buf, &len),
                     LLMS_ERR_TEMPLATE);
}

/* ------------------------------------------------------------------------ */
/* Detection                                                                 */
/* ------------------------------------------------------------------------ */

static void test_detect_real_templates(void **state) {
    (void)state;
    assert_int_equal(llms_chat_template_family(TMPL_QWEN2), LLMS_CHAT_CHATML);
    assert_int_equal(llms_chat_template_family(TMPL_OPENHERMES), LLMS_CHAT_CHATML);
    assert_int_equal(llms_chat_template_family(TMPL_LLAMA3), LLMS_CHAT_LLAMA3);
    assert_int_equal(llms_chat_template_family(TMPL_LLAMA2), LLMS_CHAT_LLAMA2);
    assert_int_equal(llms_chat_template_family(TMPL_MISTRAL_V1), LLMS_CHAT_MISTRAL);
    assert_int_equal(llms_chat_template_family(TMPL_MIXTRAL), LLMS_CHAT_MISTRAL);
    assert_int_equal(llms_chat_template_family(TMPL_PHI3), LLMS_CHAT_PHI3);
    assert_int_equal(llms_chat_template_family(TMPL_PHI3_APRIL), LLMS_CHAT_PHI3);
    assert_int_equal(llms_chat_template_family(TMPL_GEMMA2), LLMS_CHAT_GEMMA);
    assert_int_equal(llms_chat_template_family(TMPL_ZEPHYR), LLMS_CHAT_ZEPHYR);
}

static void test_detect_unknown(void **state) {
    (void)state;
    assert_int_equal(llms_chat_template_family(NULL), LLMS_CHAT_UNKNOWN);
    assert_int_equal(llms_chat_template_family(""), LLMS_CHAT_UNKNOWN);
    assert_int_equal(llms_chat_template_family("{{ messages }}"), LLMS_CHAT_UNKNOWN);
    assert_int_equal(llms_chat_template_family(TMPL_PHI4), LLMS_CHAT_UNKNOWN);
    assert_int_equal(llms_chat_template_family(TMPL_TULU2), LLMS_CHAT_UNKNOWN);
    assert_int_equal(llms_chat_template_family(TMPL_DEEPSEEK_V2), LLMS_CHAT_UNKNOWN);
    assert_int_equal(llms_chat_template_family(TMPL_CHATGLM3), LLMS_CHAT_UNKNOWN);
    /* Markers of two families: not guessed. */
    assert_int_equal(llms_chat_template_family("<|im_start|> [INST]"), LLMS_CHAT_UNKNOWN);
    assert_int_equal(llms_chat_template_family("<|start_header_id|><start_of_turn>"),
                     LLMS_CHAT_UNKNOWN);
    /* Names must match exactly (case aside). */
    assert_int_equal(llms_chat_template_family("llama"), LLMS_CHAT_UNKNOWN);
    assert_int_equal(llms_chat_template_family("chatml "), LLMS_CHAT_UNKNOWN);
    assert_int_equal(llms_chat_template_family("vicuna"), LLMS_CHAT_UNKNOWN);
}

static void test_detect_names(void **state) {
    (void)state;
    assert_int_equal(llms_chat_template_family("chatml"), LLMS_CHAT_CHATML);
    assert_int_equal(llms_chat_template_family("ChatML"), LLMS_CHAT_CHATML);
    assert_int_equal(llms_chat_template_family("llama2"), LLMS_CHAT_LLAMA2);
    assert_int_equal(llms_chat_template_family("LLAMA3"), LLMS_CHAT_LLAMA3);
    assert_int_equal(llms_chat_template_family("mistral"), LLMS_CHAT_MISTRAL);
    assert_int_equal(llms_chat_template_family("phi3"), LLMS_CHAT_PHI3);
    assert_int_equal(llms_chat_template_family("gemma"), LLMS_CHAT_GEMMA);
    assert_int_equal(llms_chat_template_family("zephyr"), LLMS_CHAT_ZEPHYR);
}

/* ------------------------------------------------------------------------ */
/* Errors and buffer sizes                                                   */
/* ------------------------------------------------------------------------ */

static void test_unknown_template(void **state) {
    (void)state;
    size_t len = 77;
    strcpy(out_buf, "junk");
    assert_int_equal(render_status(TMPL_DEEPSEEK_V2, CONV, N_CONV, 1, &len), LLMS_ERR_TEMPLATE);
    assert_int_equal(len, 0);
    assert_string_equal(out_buf, "");
    assert_non_null(strstr(llms_errmsg(), "not recognised"));
    assert_int_equal(render_status("not a template", CONV, N_CONV, 1, &len), LLMS_ERR_TEMPLATE);
    /* No template text and no model to take one from. */
    len = 77;
    assert_int_equal(llms_chat_apply_template(NULL, NULL, CONV, N_CONV, 1, out_buf,
                                              sizeof out_buf, &len),
                     LLMS_ERR_TEMPLATE);
    assert_int_equal(len, 0);
}

static void test_buffer_too_small(void **state) {
    (void)state;
    size_t need = 0;
    char small[16];
    memset(small, 'x', sizeof small);
    assert_int_equal(llms_chat_apply_template(NULL, "llama3", CONV, N_CONV, 1, small,
                                              sizeof small, &need),
                     LLMS_ERR_BUFFER_TOO_SMALL);
    assert_string_equal(small, "");
    render("llama3", CONV, N_CONV, 1);
    assert_int_equal(need, strlen(out_buf));

    /* A size query with no buffer at all. */
    size_t need2 = 0;
    assert_int_equal(llms_chat_apply_template(NULL, "llama3", CONV, N_CONV, 1, NULL, 0, &need2),
                     LLMS_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(need2, need);

    /* Exactly `need` bytes leaves no room for the NUL. */
    char exact[1024];
    assert_true(need + 1 <= sizeof exact);
    size_t len = 0;
    assert_int_equal(llms_chat_apply_template(NULL, "llama3", CONV, N_CONV, 1, exact, need,
                                              &len),
                     LLMS_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(len, need);

    /* need + 1 is enough, and gives the same text. */
    memset(exact, 'x', sizeof exact);
    assert_int_equal(llms_chat_apply_template(NULL, "llama3", CONV, N_CONV, 1, exact, need + 1,
                                              &len),
                     LLMS_OK);
    assert_int_equal(len, need);
    assert_string_equal(exact, out_buf);
}

static void test_null_args(void **state) {
    (void)state;
    size_t len = 5;
    char buf[256];
    /* len is required */
    assert_int_equal(llms_chat_apply_template(NULL, "chatml", CONV, N_CONV, 1, buf, sizeof buf,
                                              NULL),
                     LLMS_ERR_INVALID_ARGUMENT);
    /* buf NULL with a capacity */
    assert_int_equal(llms_chat_apply_template(NULL, "chatml", CONV, N_CONV, 1, NULL, 10, &len),
                     LLMS_ERR_INVALID_ARGUMENT);
    assert_int_equal(len, 0);
    /* messages NULL with a count */
    len = 5;
    assert_int_equal(llms_chat_apply_template(NULL, "chatml", NULL, 2, 1, buf, sizeof buf, &len),
                     LLMS_ERR_INVALID_ARGUMENT);
    assert_int_equal(len, 0);
    /* NULL role or content, in any family, checked before the template */
    const llms_chat_message no_role[] = {{"user", "a"}, {NULL, "b"}};
    const llms_chat_message no_content[] = {{"user", NULL}};
    assert_int_equal(llms_chat_apply_template(NULL, "chatml", no_role, 2, 1, buf, sizeof buf,
                                              &len),
                     LLMS_ERR_INVALID_ARGUMENT);
    assert_int_equal(llms_chat_apply_template(NULL, "gemma", no_content, 1, 1, buf, sizeof buf,
                                              &len),
                     LLMS_ERR_INVALID_ARGUMENT);
    assert_int_equal(llms_chat_apply_template(NULL, "unknown", no_content, 1, 1, buf,
                                              sizeof buf, &len),
                     LLMS_ERR_INVALID_ARGUMENT);
    assert_int_equal(chat_render(LLMS_CHAT_CHATML, NULL, NULL, CONV, 1, 1, buf, sizeof buf,
                                 NULL),
                     LLMS_ERR_INVALID_ARGUMENT);
}

/* ------------------------------------------------------------------------ */
/* With a real vocabulary: BOS/EOS text and the template from the model      */
/* ------------------------------------------------------------------------ */

static llms_model *load_vocab(llms_context **ctx, const char *rel) {
    const char *path = fixture_path(rel);
    if (!path) {
        fixture_missing(rel);
        return NULL;
    }
    assert_int_equal(llms_context_create(NULL, ctx), LLMS_OK);
    llms_model_params mp;
    llms_model_params_init(&mp);
    mp.flags |= LLMS_MODEL_VOCAB_ONLY;
    llms_model *model = NULL;
    llms_status st = llms_model_load(*ctx, path, &mp, &model);
    if (st != LLMS_OK) {
        llms_context_destroy(*ctx);
        *ctx = NULL;
        fprintf(stderr, "SKIP: cannot load %s (%s)\n", rel, llms_status_string(st));
        skip();
    }
    return model;
}

static void test_model_phi3_vocab(void **state) {
    (void)state;
    llms_context *ctx = NULL;
    llms_model *model = load_vocab(&ctx, "vocab/ggml-vocab-phi-3.gguf");
    char buf[256];
    size_t len = 0;
    const llms_chat_message m[] = {{"user", "Hello"}};
    /* The file holds Phi-3's April 2024 template; it is rendered as the Phi-3
     * family (the current template), with EOS <|endoftext|> from the vocabulary. */
    assert_int_equal(llms_chat_template_family(llms_model_chat_template(model)),
                     LLMS_CHAT_PHI3);
    assert_int_equal(llms_chat_apply_template(model, NULL, m, 1, 1, buf, sizeof buf, &len),
                     LLMS_OK);
    assert_string_equal(buf, "<|user|>\nHello<|end|>\n<|assistant|>\n");
    assert_int_equal(llms_chat_apply_template(model, NULL, m, 1, 0, buf, sizeof buf, &len),
                     LLMS_OK);
    assert_string_equal(buf, "<|user|>\nHello<|end|>\n<|endoftext|>");
    llms_model_destroy(model);
    llms_context_destroy(ctx);
}

static void test_model_llama_vocab(void **state) {
    (void)state;
    llms_context *ctx = NULL;
    llms_model *model = load_vocab(&ctx, "vocab/ggml-vocab-llama-spm.gguf");
    char buf[256];
    size_t len = 0;
    /* No chat template in this file. */
    assert_int_equal(llms_chat_apply_template(model, NULL, CONV, N_CONV, 1, buf, sizeof buf,
                                              &len),
                     LLMS_ERR_TEMPLATE);
    /* BOS <s> (id 1) and EOS </s> (id 2) come from the vocabulary. */
    assert_int_equal(llms_chat_apply_template(model, "llama2", CONV + 1, 3, 1, buf, sizeof buf,
                                              &len),
                     LLMS_OK);
    assert_string_equal(buf, "<s>[INST] Hello [/INST] Hi there </s><s>[INST] Who are you [/INST]");
    llms_model_destroy(model);
    llms_context_destroy(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_chatml),
        cmocka_unit_test(test_render_llama2),
        cmocka_unit_test(test_render_llama3),
        cmocka_unit_test(test_render_mistral),
        cmocka_unit_test(test_render_phi3),
        cmocka_unit_test(test_render_gemma),
        cmocka_unit_test(test_render_zephyr),
        cmocka_unit_test(test_without_system),
        cmocka_unit_test(test_trimming),
        cmocka_unit_test(test_llama2_system_strip),
        cmocka_unit_test(test_roles),
        cmocka_unit_test(test_alternation),
        cmocka_unit_test(test_empty_conversation),
        cmocka_unit_test(test_render_custom_bos_eos),
        cmocka_unit_test(test_detect_real_templates),
        cmocka_unit_test(test_detect_unknown),
        cmocka_unit_test(test_detect_names),
        cmocka_unit_test(test_unknown_template),
        cmocka_unit_test(test_buffer_too_small),
        cmocka_unit_test(test_null_args),
        cmocka_unit_test(test_model_phi3_vocab),
        cmocka_unit_test(test_model_llama_vocab),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
