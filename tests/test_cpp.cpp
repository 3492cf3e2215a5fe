// The C++ wrapper (include/llmserve.hpp): RAII, moves, streaming and errors
// as exceptions. A plain program (no cmocka): prints cmocka-style totals so
// tests/run_tests.sh counts it, and exits non-zero on any failure.
#include <llmserve.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

static int passed, failed;
#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (cond) passed++;                                                          \
        else { failed++; std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } \
    } while (0)

template <class F> static llms_status status_of(F &&f) {
    try {
        f();
    } catch (const llms::Error &e) {
        return e.status();
    }
    return LLMS_OK;
}

// The golden greedy completion for "The robot" (90 tokens), from the JSON
// fixture without a JSON parser: the "completion" value of that case.
static std::string golden_completion(const std::string &dir) {
    std::ifstream f(dir + "/models/aidreams260K.golden.json");
    std::stringstream ss;
    ss << f.rdbuf();
    std::string s = ss.str();
    size_t at = s.find("\"prompt\":\"The robot\"");
    at = s.find("\"completion\":\"", at);
    if (at == std::string::npos) return "";
    at += 14;
    return s.substr(at, s.find('"', at) - at);  // this completion has no escapes
}

int main() {
    const char *fx = std::getenv("LLMS_FIXTURES");
    std::string dir = fx ? fx : "../shared/fixtures";
    std::string path = dir + "/models/aidreams260K.gguf";
    std::string want = golden_completion(dir);
    CHECK(!want.empty());

    llms_context_params cp = llms::Context::default_params();
    cp.n_threads = 1;
    llms::Context ctx(cp);
    CHECK(ctx.n_threads() == 1);
    llms::Model model(ctx, path);
    CHECK(model.info().n_vocab == 512);
    CHECK(model.meta_string("general.architecture") == "llama");
    CHECK(model.detokenize(model.tokenize("The robot", 0)) == "The robot");

    // Streaming pieces join to the golden text; the finish reason comes back.
    llms::Session s = model.session();
    s.feed("The robot");
    std::string streamed;
    int pieces = 0;
    int32_t finish = s.generate(llms::sampling_params(0.0f, 90), [&](std::string_view p) {
        streamed.append(p);
        pieces++;
    });
    CHECK(streamed == want);
    CHECK(pieces > 10);
    CHECK(finish == LLMS_FINISH_LENGTH);

    // Moves transfer ownership; a fork continues identically.
    llms::Session moved = std::move(s);
    CHECK(!s.get() && moved.get());
    moved.truncate(8);
    llms::Session f = moved.fork();
    CHECK(f.generate(llms::sampling_params(0.0f, 90)) == want);

    // A bool-returning callback stops early.
    llms::Session s2(model);
    s2.feed("The robot");
    int n = 0;
    CHECK(s2.generate(llms::sampling_params(0.0f, 90), [&](std::string_view) { return ++n < 3; }) ==
          LLMS_FINISH_CANCELLED);
    CHECK(n == 3);

    // Errors throw with the status and the library's message.
    try {
        llms::Model bad(ctx, dir + "/models/does-not-exist.gguf");
        CHECK(false);
    } catch (const llms::Error &e) {
        CHECK(e.status() == LLMS_ERR_IO);
        CHECK(e.message().find("does-not-exist") != std::string::npos);
        CHECK(std::string(e.what()).find("LLMS_ERR_IO") != std::string::npos);
    }
    CHECK(status_of([&] { s2.feed(std::vector<int32_t>{1, 100000}); }) == LLMS_ERR_TOKEN_RANGE);
    CHECK(status_of([&] { model.meta_int("no.such.key"); }) == LLMS_ERR_NOT_FOUND);
    CHECK(status_of([&] { model.apply_chat_template({{"user", "hi"}}); }) == LLMS_ERR_TEMPLATE);
    CHECK(model.apply_chat_template({{"user", "hi"}}, true, "chatml").find("<|im_start|>user") == 0);

    std::printf("[  PASSED  ] %d test(s).\n", passed);
    if (failed) std::printf("[  FAILED  ] %d test(s).\n", failed);
    return failed != 0;
}
