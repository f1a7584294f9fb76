/* openmind host kernels for packed ternary models, built at first use by native.py.
 *
 * 1. omk_layer_exact: one layer with the arithmetic of docs/packed-format.md, bit for bit equal to
 *    the firmware's om_model_predict (firmware/core/om_model.c): per output an ordered float32 sum
 *    over the inputs, then acc * scale + bias, then relu. It is vectorised ACROSS outputs and rows,
 *    never along the sum, so each output's additions happen in the same order as on the device.
 *    acc + h * t with t in {-1, 0, +1} equals the device's add / subtract / skip: h * t is exact,
 *    and acc (starting at +0.0) is never -0.0, so adding a signed zero leaves it unchanged.
 *    Built with -ffp-contract=off like the firmware, so acc * scale + bias is never fused.
 * 2. omk_ternary_gemm: the speed kernel for big layers (not bit-exact): weights stay 2 bits (the
 *    codes t + 1 in {0, 1, 2}, 128 weights in 32 bytes), activations are int8 (absmax per row, as
 *    BitNet b1.58 does), products by _mm512/_mm256_maddubs_epi16, exact int32 sums.
 *
 * x86: AVX-512BW / AVX2 variants by __attribute__((target)), chosen at run time by cpuid; elsewhere
 * (ARM NEON included) the portable loops, which the compiler vectorises at -O3.
 */
#include <stdint.h>
#include <stddef.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define OMK_X86 1
#include <immintrin.h>
#endif

#define TR 4    /* rows per tile */
#define TO 32   /* outputs per tile (Wt is padded to a multiple of TO columns) */

/* ------------------------------------------------------------------ exact */

static inline __attribute__((always_inline)) void exact_tile(
    const float *H, int nr, int in, const float *Wt, int ldw, float acc[TR][TO])
{
    int r, i, j;
    for (r = 0; r < TR; r++)
        for (j = 0; j < TO; j++) acc[r][j] = 0.0f;
    if (nr == TR) {
        for (i = 0; i < in; i++) {
            const float *w = Wt + (size_t)i * ldw;
            float h0 = H[i], h1 = H[(size_t)in + i], h2 = H[2 * (size_t)in + i], h3 = H[3 * (size_t)in + i];
            for (j = 0; j < TO; j++) {
                acc[0][j] = acc[0][j] + h0 * w[j];
                acc[1][j] = acc[1][j] + h1 * w[j];
                acc[2][j] = acc[2][j] + h2 * w[j];
                acc[3][j] = acc[3][j] + h3 * w[j];
            }
        }
    } else {
        for (r = 0; r < nr; r++) {
            float a[TO];
            for (j = 0; j < TO; j++) a[j] = 0.0f;
            for (i = 0; i < in; i++) {
                const float *w = Wt + (size_t)i * ldw;
                float h = H[(size_t)r * in + i];
                for (j = 0; j < TO; j++) a[j] = a[j] + h * w[j];
            }
            for (j = 0; j < TO; j++) acc[r][j] = a[j];
        }
    }
}

static inline __attribute__((always_inline)) void exact_body(
    const float *H, int rows, int in, const float *Wt, int out, int ldw,
    const float *scale, int per_row, const float *bias, int relu, float *Y)
{
    float acc[TR][TO];
    int r0, o0, r, j;
    for (r0 = 0; r0 < rows; r0 += TR) {
        int nr = rows - r0 < TR ? rows - r0 : TR;
        for (o0 = 0; o0 < out; o0 += TO) {
            int no = out - o0 < TO ? out - o0 : TO;
            exact_tile(H + (size_t)r0 * in, nr, in, Wt + o0, ldw, acc);
            for (r = 0; r < nr; r++)
                for (j = 0; j < no; j++) {
                    float v = acc[r][j] * scale[per_row ? o0 + j : 0];
                    v = v + bias[o0 + j];
                    if (relu && v < 0.0f) v = 0.0f;
                    Y[(size_t)(r0 + r) * out + o0 + j] = v;
                }
        }
    }
}

static void exact_portable(const float *H, int rows, int in, const float *Wt, int out, int ldw,
                           const float *scale, int per_row, const float *bias, int relu, float *Y)
{
    exact_body(H, rows, in, Wt, out, ldw, scale, per_row, bias, relu, Y);
}

#ifdef OMK_X86
__attribute__((target("avx2")))
static void exact_avx2(const float *H, int rows, int in, const float *Wt, int out, int ldw,
                       const float *scale, int per_row, const float *bias, int relu, float *Y)
{
    exact_body(H, rows, in, Wt, out, ldw, scale, per_row, bias, relu, Y);
}

__attribute__((target("avx512f")))
static void exact_avx512(const float *H, int rows, int in, const float *Wt, int out, int ldw,
                         const float *scale, int per_row, const float *bias, int relu, float *Y)
{
    exact_body(H, rows, in, Wt, out, ldw, scale, per_row, bias, relu, Y);
}
#endif

static int omk_cap = 3;

/* Use at most this level (tests and benchmarks compare the paths on one machine). */
void omk_set_max_level(int level) { omk_cap = level; }

/* SIMD level actually used: 3 = AVX-512, 2 = AVX2, 1 = NEON (compiler-vectorised), 0 = portable */
int omk_simd_level(void)
{
    int level = 0;
#ifdef OMK_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) level = 3;
    else if (__builtin_cpu_supports("avx2")) level = 2;
#elif defined(__ARM_NEON) || defined(__aarch64__)
    level = 1;
#endif
    return level < omk_cap ? level : omk_cap;
}

/* Y[rows][out] from H[rows][in]; Wt[in][ldw] holds the trits as floats (-1, 0, +1), ldw >= out. */
void omk_layer_exact(const float *H, int rows, int in, const float *Wt, int out, int ldw,
                     const float *scale, int per_row, const float *bias, int relu, float *Y)
{
#ifdef OMK_X86
    int level = omk_simd_level();
    if (level >= 3) { exact_avx512(H, rows, in, Wt, out, ldw, scale, per_row, bias, relu, Y); return; }
    if (level == 2) { exact_avx2(H, rows, in, Wt, out, ldw, scale, per_row, bias, relu, Y); return; }
#endif
    exact_portable(H, rows, in, Wt, out, ldw, scale, per_row, bias, relu, Y);
}

/* ------------------------------------------------------------------ packed ternary (int8) */

/* Weights: W[out][nb][32] bytes, nb = ceil(in / 128); byte b of block k holds, in bits 2m..2m+1,
 * the code t + 1 of input 128k + 32m + b (0 for padding inputs, whose activations are 0 anyway).
 * X: int8 [rows][nb * 128], zero-padded. xsum[r] = sum of X[r]. Result: int32 dot(t, x). */

static void tgemm_portable(const uint8_t *W, int out, int nb, const int8_t *X, int rows,
                           const int32_t *xsum, int32_t *D)
{
    int o, r, k, m, b;
    for (r = 0; r < rows; r++) {
        const int8_t *x = X + (size_t)r * nb * 128;
        for (o = 0; o < out; o++) {
            const uint8_t *w = W + (size_t)o * nb * 32;
            int32_t acc = 0;
            for (k = 0; k < nb; k++)
                for (m = 0; m < 4; m++) {
                    int16_t part = 0;
                    for (b = 0; b < 32; b++)
                        part += (int16_t)(((w[k * 32 + b] >> (2 * m)) & 3) * x[k * 128 + 32 * m + b]);
                    acc += part;
                }
            D[(size_t)r * out + o] = acc - xsum[r];
        }
    }
}

#ifdef OMK_X86
/* 16 blocks of 4 maddubs fit int16 lanes: |lane| <= 2 * 2 * 127 * 4 * 16 = 32512 */
#define CHUNK 16

__attribute__((target("avx2")))
static inline int32_t hsum8(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

__attribute__((target("avx2")))
static void tgemm_avx2(const uint8_t *W, int out, int nb, const int8_t *X, int rows,
                       const int32_t *xsum, int32_t *D)
{
    const __m256i m3 = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
    const size_t ldx = (size_t)nb * 128;
    int o, r0, k, k0, r;
    for (o = 0; o < out; o++) {
        const uint8_t *w = W + (size_t)o * nb * 32;
        for (r0 = 0; r0 < rows; r0 += TR) {
            int nr = rows - r0 < TR ? rows - r0 : TR;
            __m256i acc[TR];
            for (r = 0; r < TR; r++) acc[r] = _mm256_setzero_si256();
            for (k0 = 0; k0 < nb; k0 += CHUNK) {
                int k1 = k0 + CHUNK < nb ? k0 + CHUNK : nb;
                __m256i p[TR];
                for (r = 0; r < TR; r++) p[r] = _mm256_setzero_si256();
                for (k = k0; k < k1; k++) {
                    __m256i v = _mm256_loadu_si256((const __m256i *)(w + (size_t)k * 32));
                    __m256i q0 = _mm256_and_si256(v, m3);
                    __m256i q1 = _mm256_and_si256(_mm256_srli_epi16(v, 2), m3);
                    __m256i q2 = _mm256_and_si256(_mm256_srli_epi16(v, 4), m3);
                    __m256i q3 = _mm256_and_si256(_mm256_srli_epi16(v, 6), m3);
                    for (r = 0; r < nr; r++) {
                        const int8_t *x = X + (size_t)(r0 + r) * ldx + (size_t)k * 128;
                        __m256i s = _mm256_maddubs_epi16(q0, _mm256_loadu_si256((const __m256i *)x));
                        s = _mm256_add_epi16(s, _mm256_maddubs_epi16(q1, _mm256_loadu_si256((const __m256i *)(x + 32))));
                        s = _mm256_add_epi16(s, _mm256_maddubs_epi16(q2, _mm256_loadu_si256((const __m256i *)(x + 64))));
                        s = _mm256_add_epi16(s, _mm256_maddubs_epi16(q3, _mm256_loadu_si256((const __m256i *)(x + 96))));
                        p[r] = _mm256_add_epi16(p[r], s);
                    }
                }
                for (r = 0; r < nr; r++) acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(p[r], ones));
            }
            for (r = 0; r < nr; r++) D[(size_t)(r0 + r) * out + o] = hsum8(acc[r]) - xsum[r0 + r];
        }
    }
}

__attribute__((target("avx512f,avx512bw")))
static void tgemm_avx512(const uint8_t *W, int out, int nb, const int8_t *X, int rows,
                         const int32_t *xsum, int32_t *D)
{
    /* two 128-input blocks per 512-bit load: bytes 0-31 block k, 32-63 block k + 1 */
    const __m512i m3 = _mm512_set1_epi8(3), ones = _mm512_set1_epi16(1);
    const size_t ldx = (size_t)nb * 128;
    int o, r0, k, k0, r, nb2 = nb & ~1;
    for (o = 0; o < out; o++) {
        const uint8_t *w = W + (size_t)o * nb * 32;
        for (r0 = 0; r0 < rows; r0 += TR) {
            int nr = rows - r0 < TR ? rows - r0 : TR;
            __m512i acc[TR];
            int32_t tail[TR] = {0, 0, 0, 0};
            for (r = 0; r < TR; r++) acc[r] = _mm512_setzero_si512();
            for (k0 = 0; k0 < nb2; k0 += CHUNK) {
                int k1 = k0 + CHUNK < nb2 ? k0 + CHUNK : nb2;
                __m512i p[TR];
                for (r = 0; r < TR; r++) p[r] = _mm512_setzero_si512();
                for (k = k0; k < k1; k += 2) {
                    __m512i v = _mm512_loadu_si512((const void *)(w + (size_t)k * 32));
                    __m512i q0 = _mm512_and_si512(v, m3);
                    __m512i q1 = _mm512_and_si512(_mm512_srli_epi16(v, 2), m3);
                    __m512i q2 = _mm512_and_si512(_mm512_srli_epi16(v, 4), m3);
                    __m512i q3 = _mm512_and_si512(_mm512_srli_epi16(v, 6), m3);
                    for (r = 0; r < nr; r++) {
                        const int8_t *x = X + (size_t)(r0 + r) * ldx + (size_t)k * 128;
                        /* lanes 0-31 take inputs of block k, lanes 32-63 of block k + 1 */
                        __m512i x0 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)x)),
                                                        _mm256_loadu_si256((const __m256i *)(x + 128)), 1);
                        __m512i x1 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(x + 32))),
                                                        _mm256_loadu_si256((const __m256i *)(x + 160)), 1);
                        __m512i x2 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(x + 64))),
                                                        _mm256_loadu_si256((const __m256i *)(x + 192)), 1);
                        __m512i x3 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(x + 96))),
                                                        _mm256_loadu_si256((const __m256i *)(x + 224)), 1);
                        __m512i s = _mm512_maddubs_epi16(q0, x0);
                        s = _mm512_add_epi16(s, _mm512_maddubs_epi16(q1, x1));
                        s = _mm512_add_epi16(s, _mm512_maddubs_epi16(q2, x2));
                        s = _mm512_add_epi16(s, _mm512_maddubs_epi16(q3, x3));
                        p[r] = _mm512_add_epi16(p[r], s);
                    }
                }
                for (r = 0; r < nr; r++) acc[r] = _mm512_add_epi32(acc[r], _mm512_madd_epi16(p[r], ones));
            }
            if (nb2 < nb) {  /* an odd last block: the portable loop */
                for (r = 0; r < nr; r++) {
                    int32_t one;
                    int32_t zero = 0;
                    tgemm_portable(w + (size_t)nb2 * 32, 1, 1, X + (size_t)(r0 + r) * ldx + (size_t)nb2 * 128,
                                   1, &zero, &one);
                    tail[r] = one;
                }
            }
            for (r = 0; r < nr; r++)
                D[(size_t)(r0 + r) * out + o] = _mm512_reduce_add_epi32(acc[r]) + tail[r] - xsum[r0 + r];
        }
    }
}
#endif

/* D[rows][out] = X[rows][:] . t[out][:] in exact int32, t from the 2-bit codes in W */
void omk_ternary_gemm(const uint8_t *W, int out, int nb, const int8_t *X, int rows,
                      const int32_t *xsum, int32_t *D)
{
#ifdef OMK_X86
    int level = omk_simd_level();
    if (level >= 3) { tgemm_avx512(W, out, nb, X, rows, xsum, D); return; }
    if (level == 2) { tgemm_avx2(W, out, nb, X, rows, xsum, D); return; }
#endif
    tgemm_portable(W, out, nb, X, rows, xsum, D);
}
