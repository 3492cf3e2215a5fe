/*
 * Q4_0, Q8_0, Q4_K and Q6_K weights repacked at load time for AVX512-VNNI
 * matrix products.
 *
 * Why: in the GGUF layout a row is a run of 18- or 34-byte blocks, so a
 * kernel that keeps one row's values in a vector's lanes must shuffle each
 * block into place and reduce lanes that belong to the same block — for
 * Q4_0 about 12 vector operations per 128 weights, which made decode
 * compute-bound on this class of CPU. Here 16 rows are interleaved so a
 * vector's 16 dword lanes are 16 rows: one 64-byte vector holds 4
 * consecutive values of each row (Q8_0), or 8 as nibbles (Q4_0: an AND and
 * a shift give two vectors), and vpdpbusd with a broadcast activation dword
 * advances 16 dot products by 4 values. The unpacked weights are shared by
 * every token of a batch, so one kernel serves decode (1 token), batches of
 * sessions and prefill, with no per-call repacking.
 *
 * Tile = 16 rows x K columns (K % 32 == 0), qpack_tile_bytes(type, K) bytes:
 *   scales [K/32][16] fp16, row r's block scale (0 for padding rows),
 *     padded to a multiple of 64 bytes;
 *   values [K/32 blocks][NV vectors][64 bytes], byte 4r + c of vector i of
 *     block b holding row r's values, with u the unsigned stored value:
 *       Q4_0 (NV 4): u[32b + 8i + c] | u[32b + 8i + 4 + c] << 4,
 *                    u = the 4-bit value, weight = (u - 8) * scale;
 *       Q8_0 (NV 8): u[32b + 4i + c], u = q + 128, weight = (u - 128) * scale.
 *   The scales come first so that a kernel reading a run of tiles reads one
 *   forward stream (see tile_nt in qpack.c).
 * Q4_K (K % 256 == 0) per 256-column super-block: the 8 blocks' nibbles as
 * for Q4_0, then the 6-bit block scales sc [8][16] u8 and mins mn as int16
 * pairs (blocks 2p, 2p+1 of row r at [p][r], for vpdpwssd), then d [16]
 * and dmin [16] fp16: w = d * sc * u - dmin * mn, integer sums exactly as
 * the reference dot product with Q8_K activations (8% more bytes than
 * Q4_K, for scales that need no unpacking).
 * Q6_K per super-block: per 32-column block the low 4 bits as Q4_0's
 * nibbles and the high 2 bits in two vectors, then sc [16 groups][16] int8
 * and d [16] fp16 (layout in qpack.c): the size of the Q6_K data.
 * The last tile is padded with zero-scale rows; Q4_0, Q8_0 and Q6_K sizes
 * equal the GGUF data's, rounded up to whole tiles.
 *
 * Activations are quantized exactly as for the reference dot products
 * (Q8_0: blocks of 32, fp16 scale; Q8_K for Q4_K), so results match
 * quant_vec_dot up to float summation order; a token's result is formed by the same operations whatever the
 * batch, so it does not depend on the other tokens.
 */
#ifndef LLMS_QUANT_QPACK_H
#define LLMS_QUANT_QPACK_H

#include <stddef.h>
#include <stdint.h>

#define QPACK_ROWS 16

/* 1 if this CPU runs the kernel and (type, K) can be packed. */
int qpack_supported(uint32_t wtype, int64_t K);
size_t qpack_tile_bytes(uint32_t wtype, int64_t K);
/* Bytes for a packed matrix of `rows` rows (64-byte aligned buffer). */
size_t qpack_bytes(uint32_t wtype, int64_t rows, int64_t K);
/* Pack tiles [tile0, tile1) of a matrix (rows row_bytes apart). */
void qpack_pack(uint32_t wtype, const uint8_t *w, uint64_t row_bytes, int64_t rows, int64_t K, int64_t tile0,
                int64_t tile1, uint8_t *packed);

/* Quantized activations of n tokens, for one weight type's zero point. */
typedef struct qpack_act {
    int64_t n, K;
    int8_t *q;        /* [n][K] */
    float *d;         /* [n][K/32] block scales */
    int32_t *corr;    /* [n][K/32] -zero_point * sum of the block's q ([n][K/16] for Q6_K) */
    int16_t *bsum;    /* [n][K/32] Q4_K: sum of each 32-block's q (d is then per 256) */
} qpack_act;

size_t qpack_act_bytes(int64_t n, int64_t K);
void qpack_act_init(qpack_act *a, void *buf, int64_t n, int64_t K);
/* Quantize token t's row x[K] for weights of type wtype (independent per t). */
void qpack_act_quantize(uint32_t wtype, qpack_act *a, int64_t t, const float *x);

/* y[t * ldy + r] for every token t and the rows of tiles [tile0, tile1)
 * (r < rows: padding rows are not written). */
void qpack_matmul_tiles(uint32_t wtype, const uint8_t *packed, int64_t rows, int64_t K, int64_t tile0,
                        int64_t tile1, const qpack_act *a, float *y, int64_t ldy);

#endif
