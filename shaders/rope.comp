#version 450
// Rotary embedding in place. NORM style rotates pairs (2i, 2i+1), NEOX
// style pairs (i, i + n_rot/2). Cos/sin come precomputed per token (the
// host computes angles in double: positions reach 10^5 and a float angle
// loses the phase).
layout(local_size_x = 64) in;
layout(std430, binding = 0) buffer V { float v[]; };
layout(std430, binding = 1) readonly buffer CS { float cs[]; };  // [n_tok][n_rot/2][2]
layout(push_constant) uniform P { uint n_heads, head_dim, n_rot, neox, stride; } pc;
void main() {
    uint half_rot = pc.n_rot / 2u;
    uint i = gl_GlobalInvocationID.x;  // pair index within all heads
    uint t = gl_GlobalInvocationID.y;
    if (i >= half_rot * pc.n_heads) return;
    uint h = i / half_rot, p = i % half_rot;
    uint base = t * pc.stride + h * pc.head_dim;
    uint i0 = pc.neox != 0u ? p : 2u * p;
    uint i1 = pc.neox != 0u ? p + half_rot : 2u * p + 1u;
    float c = cs[(t * half_rot + p) * 2u], s = cs[(t * half_rot + p) * 2u + 1u];
    float a = v[base + i0], b = v[base + i1];
    v[base + i0] = a * c - b * s;
    v[base + i1] = a * s + b * c;
}
