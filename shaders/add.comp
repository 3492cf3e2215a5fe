#version 450
#extension GL_GOOGLE_include_directive : require
// Residual add in place: x += y.
layout(local_size_x = 64) in;
layout(std430, binding = 0) buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Y { float y[]; };
layout(push_constant) uniform P { uint n; } pc;
#include "common.glsl"
void main() {
    uint i = flat_id(64u);
    if (i >= pc.n) return;
    x[i] += y[i];
}
