// Dequantization of one weight element from a row of a GGUF tensor.
// Requires a buffer `W` with member `w[]` (uint) declared before inclusion.
// Types follow the GGUF numbering (LLMS_TYPE_*); layouts as in
// src/quant/blocks.h.
#define T_F32 0u
#define T_F16 1u
#define T_Q4_0 2u
#define T_Q8_0 8u
#define T_Q4_K 12u
#define T_Q6_K 14u

uint rd8(uint o) { return (w[o >> 2] >> ((o & 3u) * 8u)) & 0xFFu; }
uint rd16(uint o) { return rd8(o) | (rd8(o + 1u) << 8); }
float rdh(uint o) { return unpackHalf2x16(rd16(o)).x; }
int sext8(uint b) { return (int(b) << 24) >> 24; }

// Element c of the row starting at byte offset `ro`.
float deq(uint type, uint ro, uint c) {
    if (type == T_F32) return uintBitsToFloat(w[(ro >> 2) + c]);
    if (type == T_F16) return rdh(ro + 2u * c);
    if (type == T_Q8_0) {
        uint bo = ro + (c >> 5) * 34u;
        return rdh(bo) * float(sext8(rd8(bo + 2u + (c & 31u))));
    }
    if (type == T_Q4_0) {
        uint bo = ro + (c >> 5) * 18u, j = c & 31u;
        uint q = j < 16u ? (rd8(bo + 2u + j) & 0xFu) : (rd8(bo + 2u + j - 16u) >> 4);
        return rdh(bo) * float(int(q) - 8);
    }
    if (type == T_Q4_K) {
        uint bo = ro + (c >> 8) * 144u, i = c & 255u;
        uint p = i >> 6, l = i & 63u;
        uint g = 2u * p + (l >> 5);
        uint qb = rd8(bo + 16u + 32u * p + (l & 31u));
        uint q = l < 32u ? (qb & 0xFu) : (qb >> 4);
        uint s = bo + 4u;
        uint sc, mn;
        if (g < 4u) {
            sc = rd8(s + g) & 63u;
            mn = rd8(s + g + 4u) & 63u;
        } else {
            sc = (rd8(s + g + 4u) & 0xFu) | ((rd8(s + g - 4u) >> 6) << 4);
            mn = (rd8(s + g + 4u) >> 4) | ((rd8(s + g) >> 6) << 4);
        }
        return rdh(bo) * float(sc) * float(q) - rdh(bo + 2u) * float(mn);
    }
    if (type == T_Q6_K) {
        uint bo = ro + (c >> 8) * 210u, i = c & 255u;
        uint h = i >> 7, g = (i >> 5) & 3u, l = i & 31u;
        uint lb = rd8(bo + 64u * h + 32u * (g & 1u) + l);
        uint lo = g < 2u ? (lb & 0xFu) : (lb >> 4);
        uint hi = (rd8(bo + 128u + 32u * h + l) >> (2u * g)) & 3u;
        int q = int(lo | (hi << 4)) - 32;
        float sc = float(sext8(rd8(bo + 192u + (i >> 4))));
        return rdh(bo + 208u) * sc * float(q);
    }
    return 0.0;
}

// sum_{j<16} W[c0 + j] * x[xo + c0 + j] for the block types (c0 a multiple
// of 16): every type keeps one scale (and min) over 16 aligned elements, so
// the scales are decoded once per 16 instead of per element. Requires a
// buffer `X` with member `x[]` (float).
float dot16(uint type, uint ro, uint c0, uint xo) {
    float acc = 0.0;
    if (type == T_Q8_0) {
        uint bo = ro + (c0 >> 5) * 34u, base = bo + 2u + (c0 & 31u);
        for (uint j = 0u; j < 16u; j++) acc += float(sext8(rd8(base + j))) * x[xo + c0 + j];
        return rdh(bo) * acc;
    }
    if (type == T_Q4_0) {
        uint bo = ro + (c0 >> 5) * 18u, sh = (c0 & 31u) == 0u ? 0u : 4u;
        for (uint j = 0u; j < 16u; j++) acc += float(int((rd8(bo + 2u + j) >> sh) & 0xFu) - 8) * x[xo + c0 + j];
        return rdh(bo) * acc;
    }
    if (type == T_Q4_K) {
        uint bo = ro + (c0 >> 8) * 144u, i0 = c0 & 255u;
        uint p = i0 >> 6, l0 = i0 & 63u, g = 2u * p + (l0 >> 5);
        uint s = bo + 4u, sc, mn;
        if (g < 4u) {
            sc = rd8(s + g) & 63u;
            mn = rd8(s + g + 4u) & 63u;
        } else {
            sc = (rd8(s + g + 4u) & 0xFu) | ((rd8(s + g - 4u) >> 6) << 4);
            mn = (rd8(s + g + 4u) >> 4) | ((rd8(s + g) >> 6) << 4);
        }
        uint qb = bo + 16u + 32u * p + (l0 & 31u), sh = l0 < 32u ? 0u : 4u;
        float xs = 0.0;
        for (uint j = 0u; j < 16u; j++) {
            float xv = x[xo + c0 + j];
            acc += float((rd8(qb + j) >> sh) & 0xFu) * xv;
            xs += xv;
        }
        return rdh(bo) * float(sc) * acc - rdh(bo + 2u) * float(mn) * xs;
    }
    if (type == T_Q6_K) {
        uint bo = ro + (c0 >> 8) * 210u, i0 = c0 & 255u;
        uint h = i0 >> 7, g = (i0 >> 5) & 3u, l0 = i0 & 31u;
        uint lb = bo + 64u * h + 32u * (g & 1u) + l0, lsh = g < 2u ? 0u : 4u;
        uint hb = bo + 128u + 32u * h + l0, hsh = 2u * g;
        for (uint j = 0u; j < 16u; j++) {
            uint q = ((rd8(lb + j) >> lsh) & 0xFu) | (((rd8(hb + j) >> hsh) & 3u) << 4);
            acc += float(int(q) - 32) * x[xo + c0 + j];
        }
        return rdh(bo + 208u) * float(sext8(rd8(bo + 192u + (i0 >> 4)))) * acc;
    }
    return 0.0;
}
