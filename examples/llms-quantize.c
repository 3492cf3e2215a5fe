/*
 * llms-quantize: convert a GGUF model to another weight scheme.
 *   llms-quantize IN.gguf OUT.gguf TYPE [THREADS]
 * TYPE: F32 F16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K(_M) Q4_K_M Q5_K_M Q6_K
 */
#include <stdio.h>
#include <stdlib.h>

#include "llmserve.h"

int main(int argc, char **argv) {
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: %s IN.gguf OUT.gguf TYPE [THREADS]\n"
                        "types: F32 F16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K\n", argv[0]);
        return 2;
    }
    llms_quantize_params qp;
    llms_quantize_params_init(&qp);
    qp.ftype = llms_ftype_from_name(argv[3]);
    if (qp.ftype < 0) {
        fprintf(stderr, "llms-quantize: unknown type '%s'\n", argv[3]);
        return 2;
    }
    llms_context_params cp;
    llms_context_params_init(&cp);
    cp.backend = LLMS_BACKEND_CPU;
    if (argc == 5) cp.n_threads = atoi(argv[4]);
    llms_context *ctx;
    llms_status st = llms_context_create(&cp, &ctx);
    if (st) {
        fprintf(stderr, "context: %s (%s)\n", llms_status_string(st), llms_errmsg());
        return 1;
    }
    st = llms_model_quantize(ctx, argv[1], argv[2], &qp);
    if (st) fprintf(stderr, "llms-quantize: %s (%s)\n", llms_status_string(st), llms_errmsg());
    else fprintf(stderr, "wrote %s (%s)\n", argv[2], llms_ftype_name(qp.ftype));
    llms_context_destroy(ctx);
    return st ? 1 : 0;
}
