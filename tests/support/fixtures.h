/* Locating ../shared/fixtures (overridable with LLMS_FIXTURES). In CI
 * (CI set) a missing fixture fails the test; elsewhere the test is skipped. */
#ifndef LLMS_TEST_FIXTURES_H
#define LLMS_TEST_FIXTURES_H
#include <stddef.h>

#include "llmserve.h"

/* Full path of a fixture (static buffer per call slot), or NULL if missing. */
const char *fixture_path(const char *relative);
/* Reads a whole file (malloc'd, NUL-terminated); NULL on failure. */
char *read_file_all(const char *path, size_t *len);
/* Call from a cmocka test when fixture_path returned NULL: fails in CI, skips otherwise. */
void fixture_missing(const char *relative);

/* Group setup shared by tests that run on one fixture model: a context with
 * 2 threads and the model. Returns 0 on success; -1 on failure, or when the
 * fixture is missing in CI. Outside CI a missing fixture leaves *model NULL,
 * and each test then calls fixture_missing(). */
int fixture_setup_model(const char *relative, llms_context **ctx, llms_model **model);
void fixture_teardown_model(llms_context *ctx, llms_model *model);

#endif
