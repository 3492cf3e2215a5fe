#version 450
// Row softmax in place, one workgroup per row: max, sum of exponentials,
// normalise (the max is subtracted so large logits cannot overflow).
layout(local_size_x = 64) in;
layout(std430, binding = 0) buffer X { float x[]; };
layout(push_constant) uniform P { uint n, stride; } pc;
shared float red[64];
void main() {
    uint t = gl_WorkGroupID.x, tid = gl_LocalInvocationID.x;
    uint base = t * pc.stride;
    float m = -3.0e38;
    for (uint i = tid; i < pc.n; i += 64u) m = max(m, x[base + i]);
    red[tid] = m;
    barrier();
    for (uint s = 32u; s > 0u; s >>= 1) {
        if (tid < s) red[tid] = max(red[tid], red[tid + s]);
        barrier();
    }
    m = red[0];
    barrier();
    float sum = 0.0;
    for (uint i = tid; i < pc.n; i += 64u) {
        float e = exp(x[base + i] - m);
        x[base + i] = e;
        sum += e;
    }
    red[tid] = sum;
    barrier();
    for (uint s = 32u; s > 0u; s >>= 1) {
        if (tid < s) red[tid] += red[tid + s];
        barrier();
    }
    float inv = 1.0 / red[0];
    for (uint i = tid; i < pc.n; i += 64u) x[base + i] *= inv;
}
