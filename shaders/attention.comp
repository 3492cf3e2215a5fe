#version 450
// Attention of one (token, head) over its sequence's paged KV cache with an
// online softmax: positions are taken 64 at a time, one per invocation for
// the scores, then each invocation accumulates its own output dimensions,
// rescaling by exp(old max - new max) whenever the running max grows. No
// score matrix is stored. KV block layout as in src/kvcache/kv.h: block b
// starts at b * block_floats; layer l's K at l*2*16*kv_dim, V after it,
// each [16 positions][kv_dim].
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer Q { float q[]; };      // [n_tok][H*D]
layout(std430, binding = 1) readonly buffer KV { float kv[]; };
layout(std430, binding = 2) readonly buffer BT { uint bt[]; };     // block tables
layout(std430, binding = 3) readonly buffer TI { uint ti[]; };     // [n_tok][2]: pos, table offset
layout(std430, binding = 4) writeonly buffer O { float o[]; };     // [n_tok][H*D]
layout(push_constant) uniform P {
    uint n_head, n_head_kv, head_dim, layer, kv_dim, block_floats;
    float scale;
} pc;
#define MAXD 256u
#define BT_TOK 16u
shared float qs[MAXD];
shared float sc[64];
float kv_at(uint tab, uint p, uint which, uint d) {
    uint b = bt[tab + p / BT_TOK];
    return kv[b * pc.block_floats + ((pc.layer * 2u + which) * BT_TOK + p % BT_TOK) * pc.kv_dim + d];
}
void main() {
    uint h = gl_WorkGroupID.x, t = gl_WorkGroupID.y, tid = gl_LocalInvocationID.x;
    uint D = pc.head_dim;
    uint kvh = h / (pc.n_head / pc.n_head_kv);
    uint pos = ti[2u * t], tab = ti[2u * t + 1u];
    uint qo = (t * pc.n_head + h) * D;
    for (uint d = tid; d < D; d += 64u) qs[d] = q[qo + d];
    barrier();
    float m = -1.0e30, s = 0.0;
    float acc[MAXD / 64u];
    for (uint i = 0u; i < MAXD / 64u; i++) acc[i] = 0.0;
    for (uint p0 = 0u; p0 <= pos; p0 += 64u) {
        uint p = p0 + tid;
        float score = -1.0e30;
        if (p <= pos) {
            float dot = 0.0;
            for (uint d = 0u; d < D; d++) dot += qs[d] * kv_at(tab, p, 0u, kvh * D + d);
            score = dot * pc.scale;
        }
        sc[tid] = score;
        barrier();
        float cm = m;
        for (uint j = 0u; j < 64u; j++) cm = max(cm, sc[j]);
        barrier();
        sc[tid] = exp(score - cm);  // 0 for positions past pos
        barrier();
        float corr = exp(m - cm);
        m = cm;
        float cs = 0.0;
        uint n = min(64u, pos + 1u - p0);
        for (uint j = 0u; j < n; j++) cs += sc[j];
        s = s * corr + cs;
        for (uint i = 0u; i < MAXD / 64u; i++) {
            uint d = tid + 64u * i;
            if (d >= D) break;
            float a = acc[i] * corr;
            for (uint j = 0u; j < n; j++) a += sc[j] * kv_at(tab, p0 + j, 1u, kvh * D + d);
            acc[i] = a;
        }
        barrier();
    }
    for (uint i = 0u; i < MAXD / 64u; i++) {
        uint d = tid + 64u * i;
        if (d < D) o[qo + d] = acc[i] / s;
    }
}
