#version 450
// Broadcast bias: y[t][i] += b[i] for n_tok rows of n (qwen2's Q/K/V bias).
layout(local_size_x = 64) in;
layout(std430, binding = 0) buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(push_constant) uniform P { uint n; } pc;
void main() {
    uint i = gl_GlobalInvocationID.x, t = gl_GlobalInvocationID.y;
    if (i >= pc.n) return;
    y[t * pc.n + i] += b[i];
}
