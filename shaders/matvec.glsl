// Body of matvec.comp (portable) and matvec_sg.comp (subgroup reduction).
// y[t][r] = sum_c W[r][c] * x[t][c] for the decode path: one workgroup per
// (row, token), the row's weights dequantized in the shader 16 at a time
// (one scale decode per 16) and reduced in shared memory (portable; no
// subgroup operations needed).
layout(local_size_x = 64) in;
layout(constant_id = 0) const uint WTYPE = 0;
layout(std430, binding = 0) readonly buffer W { uint w[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
layout(push_constant) uniform P {
    uint rows, cols, row_bytes, w_off, x_stride, y_stride;
} pc;
#include "weights.glsl"
shared float red[64];
void main() {
    uint r = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    uint t = gl_WorkGroupID.z;
    if (r >= pc.rows) return;  // whole workgroup: no barrier is skipped by part of it
    uint tid = gl_LocalInvocationID.x;
    uint ro = pc.w_off + r * pc.row_bytes;
    uint xo = t * pc.x_stride;
    float acc = 0.0;
    if (WTYPE == T_F32 || WTYPE == T_F16) {
        for (uint c = tid; c < pc.cols; c += 64u) acc += deq(WTYPE, ro, c) * x[xo + c];
    } else {
        // Block types: rows are whole blocks, so cols is a multiple of 16.
        for (uint c0 = tid * 16u; c0 < pc.cols; c0 += 64u * 16u) acc += dot16(WTYPE, ro, c0, xo);
    }
#ifdef USE_SUBGROUP
    // One subgroup reduction, then one partial per subgroup in shared
    // memory: any subgroup size works (gl_NumSubgroups <= 64).
    float part = subgroupAdd(acc);
    if (subgroupElect()) red[gl_SubgroupID] = part;
    barrier();
    if (tid == 0u) {
        float sum = 0.0;
        for (uint i = 0u; i < gl_NumSubgroups; i++) sum += red[i];
        y[t * pc.y_stride + r] = sum;
    }
#else
    red[tid] = acc;
    barrier();
    for (uint s = 32u; s > 0u; s >>= 1) {
        if (tid < s) red[tid] += red[tid + s];
        barrier();
    }
    if (tid == 0u) y[t * pc.y_stride + r] = red[0];
#endif
}
