#version 450
#extension GL_GOOGLE_include_directive : require
// Writes this pass's K and V rows ([n_tok][kv_dim] each) into the paged
// cache at each token's position, for one layer. Layout as attention.comp.
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer K { float k[]; };
layout(std430, binding = 1) readonly buffer V { float v[]; };
layout(std430, binding = 2) writeonly buffer KV { float kv[]; };
layout(std430, binding = 3) readonly buffer BT { uint bt[]; };
layout(std430, binding = 4) readonly buffer TI { uint ti[]; };  // [n_tok][2]: pos, table offset
layout(push_constant) uniform P { uint kv_dim, layer, block_floats, n_tok; } pc;
void main() {
    uint i = gl_GlobalInvocationID.x, t = gl_GlobalInvocationID.y;
    if (i >= pc.kv_dim) return;
    uint pos = ti[2u * t], tab = ti[2u * t + 1u];
    uint base = bt[tab + pos / 16u] * pc.block_floats;
    kv[base + (pc.layer * 2u * 16u + pos % 16u) * pc.kv_dim + i] = k[t * pc.kv_dim + i];
    kv[base + ((pc.layer * 2u + 1u) * 16u + pos % 16u) * pc.kv_dim + i] = v[t * pc.kv_dim + i];
}
