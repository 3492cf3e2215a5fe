// cpp-example MODEL.gguf PROMPT: the C++ wrapper (include/llmserve.hpp)
// streaming a greedy completion; errors arrive as llms::Error.
#include <llmserve.hpp>

#include <cstdio>
#include <iostream>

int main(int argc, char **argv) {
    if (argc < 3) {
        std::cerr << "usage: " << argv[0] << " MODEL.gguf PROMPT\n";
        return 2;
    }
    try {
        llms::Context ctx;
        llms::Model model(ctx, argv[1]);
        llms::Session session = model.session();
        session.feed(argv[2]);
        int32_t finish = session.generate(llms::sampling_params(0.0f, 64), [](std::string_view piece) {
            std::cout << piece << std::flush;
        });
        std::cout << "\n";
        std::cerr << "[finish reason " << finish << ", " << session.n_tokens() << " tokens]\n";
    } catch (const llms::Error &e) {
        std::cerr << "error: " << e.what() << " [status " << e.status() << "]\n";
        return 1;
    }
    return 0;
}
