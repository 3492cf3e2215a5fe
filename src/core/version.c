#include "llmserve.h"

#define STR2(x) #x
#define STR(x) STR2(x)

LLMS_API const char *llms_version_string(void) {
    return STR(LLMS_VERSION_MAJOR) "." STR(LLMS_VERSION_MINOR) "." STR(LLMS_VERSION_PATCH);
}

LLMS_API uint32_t llms_version_number(void) { return LLMS_VERSION_NUMBER; }

LLMS_API const char *llms_build_features(void) {
    return "cpu openblas vulkan"
#if defined(__x86_64__)
           " x86_64"
#endif
        ;
}
