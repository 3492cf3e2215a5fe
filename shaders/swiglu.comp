#version 450
#extension GL_GOOGLE_include_directive : require
// o = silu(g) * u, element-wise.
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer G { float g[]; };
layout(std430, binding = 1) readonly buffer U { float u[]; };
layout(std430, binding = 2) writeonly buffer O { float o[]; };
layout(push_constant) uniform P { uint n; } pc;
#include "common.glsl"
void main() {
    uint i = flat_id(64u);
    if (i >= pc.n) return;
    float a = g[i];
    o[i] = a / (1.0 + exp(-a)) * u[i];
}
