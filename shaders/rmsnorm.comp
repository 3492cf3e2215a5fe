#version 450
// out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * g: one workgroup per row.
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer G { float g[]; };
layout(std430, binding = 2) writeonly buffer O { float o[]; };
layout(push_constant) uniform P { uint n, stride; float eps; } pc;
shared float red[64];
void main() {
    uint t = gl_WorkGroupID.x, tid = gl_LocalInvocationID.x;
    uint base = t * pc.stride;
    float ss = 0.0;
    for (uint i = tid; i < pc.n; i += 64u) ss += x[base + i] * x[base + i];
    red[tid] = ss;
    barrier();
    for (uint s = 32u; s > 0u; s >>= 1) {
        if (tid < s) red[tid] += red[tid + s];
        barrier();
    }
    float scale = inversesqrt(red[0] / float(pc.n) + pc.eps);
    for (uint i = tid; i < pc.n; i += 64u) o[base + i] = x[base + i] * scale * g[i];
}
