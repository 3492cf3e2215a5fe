/*
 * llmserve.hpp: a header-only C++17 wrapper over the C API of llmserve.h.
 *
 * Move-only RAII handles (Context, Model, Session) destroy their C object in
 * the destructor; failures throw llms::Error carrying the status and the
 * library's detail message. Nothing here is part of the C ABI: the wrapper is
 * compiled into the host, so it may change with the header it ships with.
 *
 * Lifetimes are the C ones: a Context must outlive its Models and a Model
 * its Sessions (destroy in reverse order of creation, which C++ scoping
 * does by itself). Thread rules are those of the wrapped functions.
 */
#ifndef LLMSERVE_HPP
#define LLMSERVE_HPP

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "llmserve.h"

namespace llms {

/* A failed library call: status() is the negative llms_status. */
class Error : public std::runtime_error {
public:
    Error(llms_status status, const std::string &message)
        : std::runtime_error(std::string(llms_status_string(status)) +
                             (message.empty() ? "" : " (" + message + ")")),
          status_(status), message_(message) {}
    llms_status status() const noexcept { return status_; }
    /* The library's detail text (may be empty). */
    const std::string &message() const noexcept { return message_; }

private:
    llms_status status_;
    std::string message_;
};

namespace detail {
/* The detail is read at once: llms_errmsg() is per thread and the next
 * failing call on this thread overwrites it. */
inline llms_status check(llms_status st, const llms_session *s = nullptr) {
    if (st < 0) {
        const char *m = s ? llms_session_errmsg(s) : "";
        if (!m || !*m) m = llms_errmsg();
        throw Error(st, m ? m : "");
    }
    return st;
}

/* Calls f(buf, cap, &len) with a buffer grown to fit the result. */
template <class F> std::string grow(F &&f) {
    std::string out(256, '\0');
    size_t len = 0;
    llms_status st = f(&out[0], out.size(), &len);
    if (st == LLMS_ERR_BUFFER_TOO_SMALL) {
        out.assign(len + 1, '\0');
        st = f(&out[0], out.size(), &len);
    }
    check(st);
    out.resize(len);
    return out;
}

/* Owns one handle; T* destroyed with D. */
template <class T, void (*D)(T *)> class Handle {
public:
    Handle() noexcept = default;
    explicit Handle(T *h) noexcept : h_(h) {}
    Handle(Handle &&o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
    Handle &operator=(Handle &&o) noexcept {
        if (this != &o) reset(std::exchange(o.h_, nullptr));
        return *this;
    }
    Handle(const Handle &) = delete;
    Handle &operator=(const Handle &) = delete;
    ~Handle() { reset(); }
    void reset(T *h = nullptr) noexcept {
        if (h_) D(h_);
        h_ = h;
    }
    T *get() const noexcept { return h_; }
    explicit operator bool() const noexcept { return h_ != nullptr; }

private:
    T *h_ = nullptr;
};
} // namespace detail

inline std::string version() { return llms_version_string(); }

class Context {
public:
    /* Default parameters (AUTO backend, all cores). */
    Context() { create(nullptr); }
    /* p from llms_context_params_init, adjusted by the caller. */
    explicit Context(const llms_context_params &p) { create(&p); }
    llms_context *get() const noexcept { return h_.get(); }
    int32_t backend() const { return llms_context_backend(h_.get()); }
    int32_t n_threads() const { return llms_context_n_threads(h_.get()); }
    static llms_context_params default_params() {
        llms_context_params p;
        llms_context_params_init(&p);
        return p;
    }

private:
    void create(const llms_context_params *p) {
        llms_context *c = nullptr;
        detail::check(llms_context_create(p, &c));
        h_.reset(c);
    }
    detail::Handle<llms_context, llms_context_destroy> h_;
};

struct ChatMessage {
    std::string role, content;
};

class Session;

class Model {
public:
    Model(Context &ctx, const std::string &path, uint32_t flags = 0) {
        llms_model_params p;
        llms_model_params_init(&p);
        p.flags = flags;
        llms_model *m = nullptr;
        detail::check(llms_model_load(ctx.get(), path.c_str(), &p, &m));
        h_.reset(m);
    }
    llms_model *get() const noexcept { return h_.get(); }

    llms_model_info info() const {
        llms_model_info i;
        llms_model_info_init(&i);
        detail::check(llms_model_get_info(h_.get(), &i));
        return i;
    }
    int32_t n_vocab() const { return llms_model_n_vocab(h_.get()); }
    int32_t special_token(int32_t which) const { return llms_model_special_token(h_.get(), which); }
    bool is_eog(int32_t token) const { return llms_model_token_is_eog(h_.get(), token) != 0; }

    int64_t meta_int(const std::string &key) const {
        int64_t v = 0;
        detail::check(llms_model_meta_int(h_.get(), key.c_str(), &v));
        return v;
    }
    double meta_float(const std::string &key) const {
        double v = 0;
        detail::check(llms_model_meta_float(h_.get(), key.c_str(), &v));
        return v;
    }
    std::string meta_string(const std::string &key) const {
        const char *v = nullptr;
        size_t n = 0;
        detail::check(llms_model_meta_string(h_.get(), key.c_str(), &v, &n));
        return std::string(v, n);
    }
    /* The template text, or "" if the model has none. */
    std::string chat_template() const {
        const char *t = llms_model_chat_template(h_.get());
        return t ? t : "";
    }

    std::vector<int32_t> tokenize(std::string_view text,
                                  uint32_t flags = LLMS_TOKENIZE_MODEL_DEFAULTS) const {
        std::vector<int32_t> out(text.size() + 4);
        size_t n = 0;
        llms_status st = llms_tokenize(h_.get(), text.data(), text.size(), flags, out.data(),
                                       out.size(), &n);
        if (st == LLMS_ERR_BUFFER_TOO_SMALL) {
            out.resize(n);
            st = llms_tokenize(h_.get(), text.data(), text.size(), flags, out.data(), out.size(), &n);
        }
        detail::check(st);
        out.resize(n);
        return out;
    }
    std::string detokenize(const std::vector<int32_t> &tokens, uint32_t flags = 0) const {
        return detail::grow([&](char *b, size_t c, size_t *n) {
            return llms_detokenize(h_.get(), tokens.data(), tokens.size(), flags, b, c, n);
        });
    }
    /* Renders messages with the model's template (or `template_text`, a
     * template or a family name such as "chatml"). */
    std::string apply_chat_template(const std::vector<ChatMessage> &messages,
                                    bool add_assistant = true,
                                    const char *template_text = nullptr) const {
        std::vector<llms_chat_message> m;
        m.reserve(messages.size());
        for (const auto &x : messages) m.push_back({x.role.c_str(), x.content.c_str()});
        return detail::grow([&](char *b, size_t c, size_t *n) {
            return llms_chat_apply_template(h_.get(), template_text, m.data(), m.size(),
                                            add_assistant ? 1 : 0, b, c, n);
        });
    }

    inline Session session(uint32_t n_ctx = 0) const;

private:
    detail::Handle<llms_model, llms_model_destroy> h_;
};

/* Sampling parameters with the library's defaults; adjust fields before use. */
inline llms_sampling_params sampling_params(float temperature, int32_t max_tokens) {
    llms_sampling_params p;
    llms_sampling_params_init(&p);
    p.temperature = temperature;
    p.max_tokens = max_tokens;
    return p;
}

class Session {
public:
    explicit Session(const Model &model, uint32_t n_ctx = 0) {
        llms_session_params p;
        llms_session_params_init(&p);
        p.n_ctx = n_ctx;
        llms_session *s = nullptr;
        detail::check(llms_session_create(model.get(), &p, &s));
        h_.reset(s);
    }
    llms_session *get() const noexcept { return h_.get(); }

    Session fork() const {
        llms_session *s = nullptr;
        check(llms_session_fork(h_.get(), &s));
        return Session(s);
    }
    void reset() { check(llms_session_reset(h_.get())); }
    void truncate(uint32_t n_tokens) { check(llms_session_truncate(h_.get(), n_tokens)); }
    uint32_t n_tokens() const { return llms_session_n_tokens(h_.get()); }
    uint32_t n_ctx() const { return llms_session_n_ctx(h_.get()); }

    void feed(std::string_view text, uint32_t flags = LLMS_TOKENIZE_MODEL_DEFAULTS) {
        check(llms_session_feed_text(h_.get(), text.data(), text.size(), flags));
    }
    void feed(const std::vector<int32_t> &tokens) {
        check(llms_session_feed_tokens(h_.get(), tokens.data(), tokens.size()));
    }

    /* Generates after what was fed, calling on_text(std::string_view) for
     * each piece of text as it is released; returns the LLMS_FINISH_*
     * reason. on_text may return void, or bool where false stops early
     * (then LLMS_FINISH_CANCELLED is returned). */
    template <class F> int32_t generate(const llms_sampling_params &params, F &&on_text) {
        check(llms_session_generate_begin(h_.get(), &params));
        llms_step_result r;
        llms_step_result_init(&r);
        for (;;) {
            llms_status st = check(llms_session_step(h_.get(), &r));
            if (r.text_len) {
                std::string_view piece(r.text, r.text_len);
                if constexpr (std::is_same_v<decltype(on_text(piece)), bool>) {
                    if (!on_text(piece)) return LLMS_FINISH_CANCELLED;
                } else {
                    on_text(piece);
                }
            }
            if (st == LLMS_DONE) return r.finish_reason;
        }
    }
    /* The whole completion as one string. */
    std::string generate(const llms_sampling_params &params) {
        std::string out;
        generate(params, [&](std::string_view p) { out.append(p); });
        return out;
    }

private:
    explicit Session(llms_session *s) { h_.reset(s); }
    llms_status check(llms_status st) const { return detail::check(st, h_.get()); }
    detail::Handle<llms_session, llms_session_destroy> h_;
};

inline Session Model::session(uint32_t n_ctx) const { return Session(*this, n_ctx); }

} // namespace llms

#endif /* LLMSERVE_HPP */
