#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_NV_cooperative_matrix : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require
// Y[t][r] = sum_c W[r][c] * X[t][c] for prefill, on cooperative matrices
// (tensor cores): the same contract as matmul.comp (bindings, push
// constants, weight types through weights.glsl), used instead of it only
// where the device passed device.c's detection and start-up self-check
// (coopmat.c); every other device runs matmul.comp.
//
// NV, not KHR: Debian 12's glslang (12.0.0) compiles GL_NV_cooperative_matrix
// but not GL_KHR_cooperative_matrix, and NVIDIA drivers expose
// VK_NV_cooperative_matrix. The extension implies the Vulkan memory model
// (the device enables vulkanMemoryModel) and f16 arithmetic (shaderFloat16).
// No 16-bit storage is needed: f16 lives only in shared memory.
//
// Tiling: a workgroup of 128 invocations = 4 subgroups of 32 (coopmat.c
// requires subgroupSize 32) computes a 64-token x 64-row output tile; each
// subgroup a 32 x 32 quarter as 2 x 2 accumulators of 16x16x16
// f16 * f16 + f32 products (the shape vkGetPhysicalDeviceCooperativeMatrix-
// PropertiesNV must list). K is walked in 32-wide slices staged in shared
// memory: activations converted to f16, weights dequantized to f16 (each
// dequantized once per 64 tokens). Edges (rows, tokens or K not multiples
// of the tile) stage zeros, and the output goes through shared memory so
// that only elements inside the matrix are written.
//
// Precision: inputs are rounded to f16 (11-bit significand; activations
// beyond +-65504 would overflow), sums stay f32.
layout(local_size_x = 128) in;
layout(constant_id = 0) const uint WTYPE = 0;
layout(std430, binding = 0) readonly buffer W { uint w[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
layout(push_constant) uniform P {
    uint rows, cols, row_bytes, w_off, x_stride, y_stride, n_tok;
} pc;
#include "weights.glsl"

#define BT 64u    // tokens per workgroup tile
#define BR 64u    // rows per workgroup tile
#define BK 32u    // K slice
// Row pitch of the staged tiles in f16 elements: 80 bytes keeps every
// 16x16 load 16-byte aligned (Vulkan's rule for cooperative matrix loads)
// and staggers the rows across banks.
#define LD 40u

shared float16_t xs[BT * LD];    // [token][k]
shared float16_t ws[BR * LD];    // [row][k]
shared float cs[4u * 256u];      // one 16x16 f32 tile per subgroup, for the edges

// gl_ScopeSubgroup (3) spelled out: the constant comes with
// GL_KHR_memory_scope_semantics, which this shader does not otherwise need.
#define ACC fcoopmatNV<32, 3, 16, 16>
#define HALF fcoopmatNV<16, 3, 16, 16>

void main() {
    uint tid = gl_LocalInvocationIndex;
    uint sg = gl_SubgroupID;                   // 0..3
    uint t0 = gl_WorkGroupID.y * BT, r0 = gl_WorkGroupID.x * BR;
    uint st = (sg >> 1) * 32u, sr = (sg & 1u) * 32u;   // this subgroup's quarter
    ACC c00 = ACC(0.0), c01 = ACC(0.0), c10 = ACC(0.0), c11 = ACC(0.0);
    for (uint k0 = 0u; k0 < pc.cols; k0 += BK) {
        // 64 x 32 of each operand, 16 elements per invocation; consecutive
        // invocations take consecutive k of one row (coalesced reads).
        for (uint i = tid; i < BT * BK; i += 128u) {
            uint j = i / BK, k = i % BK, c = k0 + k;
            uint t = t0 + j, r = r0 + j;
            xs[j * LD + k] = float16_t((t < pc.n_tok && c < pc.cols) ? x[t * pc.x_stride + c] : 0.0);
            ws[j * LD + k] = float16_t((r < pc.rows && c < pc.cols) ? deq(WTYPE, pc.w_off + r * pc.row_bytes, c) : 0.0);
        }
        barrier();
        for (uint kk = 0u; kk < BK; kk += 16u) {
            HALF a0, a1, b0, b1;
            // A = X rows (token-major, k contiguous): row-major 16x16.
            coopMatLoadNV(a0, xs, st * LD + kk, LD, false);
            coopMatLoadNV(a1, xs, (st + 16u) * LD + kk, LD, false);
            // B[k][r] = W[r][k]: the staged [row][k] tile read column-major.
            coopMatLoadNV(b0, ws, sr * LD + kk, LD, true);
            coopMatLoadNV(b1, ws, (sr + 16u) * LD + kk, LD, true);
            c00 = coopMatMulAddNV(a0, b0, c00);
            c01 = coopMatMulAddNV(a0, b1, c01);
            c10 = coopMatMulAddNV(a1, b0, c10);
            c11 = coopMatMulAddNV(a1, b1, c11);
        }
        barrier();
    }
    // C[t][r] row-major into this subgroup's staging tile, then the
    // elements inside the matrix to Y (token-major, y_stride apart).
    uint base = sg * 256u;
    for (uint q = 0u; q < 4u; q++) {
        if (q == 0u) coopMatStoreNV(c00, cs, base, 16u, false);
        else if (q == 1u) coopMatStoreNV(c01, cs, base, 16u, false);
        else if (q == 2u) coopMatStoreNV(c10, cs, base, 16u, false);
        else coopMatStoreNV(c11, cs, base, 16u, false);
        barrier();
        uint tq = t0 + st + (q >> 1) * 16u, rq = r0 + sr + (q & 1u) * 16u;
        for (uint e = gl_SubgroupInvocationID; e < 256u; e += gl_SubgroupSize) {
            uint t = tq + e / 16u, r = rq + e % 16u;
            if (t < pc.n_tok && r < pc.rows) y[t * pc.y_stride + r] = cs[base + e];
        }
        barrier();
    }
}
