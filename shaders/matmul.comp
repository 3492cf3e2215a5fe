#version 450
#extension GL_GOOGLE_include_directive : require
// Y[t][r] = sum_c W[r][c] * X[t][c] for prefill: 16x16 output tiles, the K
// dimension walked in 16-wide slices staged in shared memory, so each
// dequantized weight is reused by 16 tokens and each activation by 16 rows.
// Edges (rows, tokens or columns not multiples of 16) load zeros.
layout(local_size_x = 16, local_size_y = 16) in;
layout(constant_id = 0) const uint WTYPE = 0;
layout(std430, binding = 0) readonly buffer W { uint w[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
layout(push_constant) uniform P {
    uint rows, cols, row_bytes, w_off, x_stride, y_stride, n_tok;
} pc;
#include "weights.glsl"
shared float ws[16][17];  // [row][k], padded against bank conflicts
shared float xs[16][17];  // [token][k]
void main() {
    uint lx = gl_LocalInvocationID.x, ly = gl_LocalInvocationID.y;
    uint r0 = gl_WorkGroupID.x * 16u, t0 = gl_WorkGroupID.y * 16u;
    float acc = 0.0;
    for (uint k0 = 0u; k0 < pc.cols; k0 += 16u) {
        uint k = k0 + lx;
        uint lr = r0 + ly, lt = t0 + ly;
        ws[ly][lx] = (lr < pc.rows && k < pc.cols) ? deq(WTYPE, pc.w_off + lr * pc.row_bytes, k) : 0.0;
        xs[ly][lx] = (lt < pc.n_tok && k < pc.cols) ? x[lt * pc.x_stride + k] : 0.0;
        barrier();
        // This invocation computes row r0 + lx for token t0 + ly.
        for (uint j = 0u; j < 16u; j++) acc += ws[lx][j] * xs[ly][j];
        barrier();
    }
    uint r = r0 + lx, t = t0 + ly;
    if (r < pc.rows && t < pc.n_tok) y[t * pc.y_stride + r] = acc;
}
