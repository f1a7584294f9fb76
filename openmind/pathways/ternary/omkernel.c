/* openmind host kernels for packed ternary models, built at first use by native.py.
 *
 * 1. omk_layer_exact: one layer with the arithmetic of docs/packed-format.md, bit for bit equal to
 *    the firmware's om_model_predict (firmware/core/om_model.c): per output an ordered float32 sum
 *    over the inputs, then acc * scale + bias, then relu. It is vectorised ACROSS outputs and rows,
 *    never along the sum, so each output's additions happen in the same order as on the device.
 *    acc + h * t with t in {-1, 0, +1} equals the device's add / subtract / skip: h * t is exact,
 *    and acc (starting at +0.0) is never -0.0, so adding a signed zero leaves it unchanged.
 *    Built with -ffp-contract=off like the firmware, so acc * scale + bias is never fused.
 * 2. omk_ternary_layer: the speed kernel for big layers (not bit-exact with the device):
 *    weights stay 2 bits (the codes t + 1 in {0, 1, 2}), activations are int8 (absmax per row, as
 *    BitNet b1.58 does), the dot is exact in int32 (AVX-512 VNNI vpdpbusd, else vpmaddubsw), and
 *    the float epilogue is the numpy fallback's, operation for operation: every path (VNNI, AVX2,
 *    portable C, numpy) gives the same bits.
 *
 * x86: AVX-512 (VNNI) / AVX2 variants by __attribute__((target)), chosen at run time by cpuid;
 * elsewhere (ARM NEON included) the portable loops, which the compiler vectorises at -O3.
 */
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <math.h>
#include <stdlib.h>

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

static int omk_cap = 4;

/* Use at most this level (tests and benchmarks compare the paths on one machine). */
void omk_set_max_level(int level) { omk_cap = level; }

/* SIMD level actually used: 4 = AVX-512 with VNNI, 3 = AVX-512 (F + BW), 2 = AVX2,
 * 1 = NEON (compiler-vectorised), 0 = portable */
int omk_simd_level(void)
{
    static int hw = -1;  /* cpuid once: in a VM it traps to the hypervisor */
    int level = 0;
    if (hw >= 0) return hw < omk_cap ? hw : omk_cap;
#ifdef OMK_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))
        level = __builtin_cpu_supports("avx512vnni") ? 4 : 3;
    else if (__builtin_cpu_supports("avx2")) level = 2;
#elif defined(__ARM_NEON) || defined(__aarch64__)
    level = 1;
#endif
    hw = level;
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

/* Weights (native.ternary_codes): W[og][kg][64], og = ceil(out / 16) groups of 16 outputs, kg =
 * ceil(in / 16) blocks of 16 inputs. Byte 4o + c of block (g, k) holds, in bits 2s..2s+1, the code
 * t + 1 of weight (16g + o, 16k + 4s + c); padding weights have code 1 (t = 0). Field s of a block,
 * read as bytes, is the operand of one 4-way int8 dot for 16 outputs x 4 inputs (vpdpbusd with the
 * four activations broadcast), so no horizontal sum is ever needed.
 * Q: int8 activations [rows][16 kg], zero-padded; qsum[r] = sum of row r, step[r] its scale.
 * sum(code * x) - qsum = sum(t * x), exactly, in int32. */

#define QG 16   /* outputs per group */
#define QK 16   /* inputs per block */

/* y = (float)dot * step; y = y * scale; y = y + bias; relu (y < 0 -> 0): native.py's numpy path
 * does the same operations in the same order, so both give the same bits. */
static inline __attribute__((always_inline)) void tern_store(
    const int32_t *d, int r, int g, int out, const int32_t *qsum, const float *step,
    const float *scale, int per_row, const float *bias, int relu, float *Y)
{
    int o, n = out - g * QG < QG ? out - g * QG : QG;
    float *y = Y + (size_t)r * out + (size_t)g * QG;
    for (o = 0; o < n; o++) {
        int oo = g * QG + o;
        float v = (float)(d[o] - qsum[r]) * step[r];
        v = v * scale[per_row ? oo : 0];
        v = v + bias[oo];
        if (relu && v < 0.0f) v = 0.0f;
        y[o] = v;
    }
}

#define TERN_ARGS const uint8_t *W, int out, int kg, const int8_t *Q, int rows, \
    const int32_t *qsum, const float *step, const float *scale, int per_row, const float *bias, \
    int relu, float *Y, int g0, int g1
#define STORE_ARGS out, qsum, step, scale, per_row, bias, relu, Y

static void tern_portable(TERN_ARGS)
{
    size_t ldq = (size_t)kg * QK;
    int g, r, k, s, o, c;
    int32_t d[QG];
    for (g = g0; g < g1; g++)
        for (r = 0; r < rows; r++) {
            const uint8_t *w = W + (size_t)g * kg * 64;
            const int8_t *x = Q + (size_t)r * ldq;
            for (o = 0; o < QG; o++) d[o] = 0;
            for (k = 0; k < kg; k++)
                for (s = 0; s < 4; s++)
                    for (o = 0; o < QG; o++)
                        for (c = 0; c < 4; c++)
                            d[o] += ((w[k * 64 + 4 * o + c] >> (2 * s)) & 3) * x[k * QK + 4 * s + c];
            tern_store(d, r, g, STORE_ARGS);
        }
}

/* one row: absmax, step = absmax / 127 (1 for a zero row), q = rint(h / step) zero-padded to ldq,
 * the row's sum. A row holding an inf or NaN (a layer overflowed) gets q = 0 and step = NaN: its
 * outputs are NaN, as numpy's are. */
#define QUANT_ARGS const float *h, int in, int ldq, int8_t *q, int32_t *qsum, float *step

static inline __attribute__((always_inline)) void quant_tail(
    const float *h, int i0, int in, float st, int8_t *q, int32_t *sum)
{
    int i;
    for (i = i0; i < in; i++) {
        int v = (int)nearbyintf(h[i] / st);
        q[i] = (int8_t)v;
        *sum += v;
    }
}

static inline __attribute__((always_inline)) void quant_finish(
    int in, int ldq, int8_t *q, int32_t sum, float st, int32_t *qsum, float *step)
{
    int i;
    for (i = in; i < ldq; i++) q[i] = 0;
    *qsum = sum;
    *step = st;
}

/* h * 0 is 0 for a finite h, NaN for inf or NaN: z stays 0 only on a finite row */
static inline __attribute__((always_inline)) int quant_nonfinite(
    float z, int ldq, int8_t *q, int32_t *qsum, float *step)
{
    int i;
    if (z == 0.0f) return 0;
    for (i = 0; i < ldq; i++) q[i] = 0;
    *qsum = 0;
    *step = NAN;
    return 1;
}

static inline __attribute__((always_inline)) void quant_body(QUANT_ARGS)
{
    float amax = 0.0f, z = 0.0f, st;
    int32_t sum = 0;
    int i;
    for (i = 0; i < in; i++) {
        float a = fabsf(h[i]);
        if (a > amax) amax = a;
        z = z + h[i] * 0.0f;
    }
    if (quant_nonfinite(z, ldq, q, qsum, step)) return;
    st = amax > 0.0f ? amax / 127.0f : 1.0f;
    quant_tail(h, 0, in, st, q, &sum);
    quant_finish(in, ldq, q, sum, st, qsum, step);
}

static void quant_portable(QUANT_ARGS) { quant_body(h, in, ldq, q, qsum, step); }

#ifdef OMK_X86
#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define AVX512_TARGET __attribute__((target("avx512f,avx512bw")))
#define AVX2_TARGET __attribute__((target("avx2")))

AVX2_TARGET static void quant_avx2(QUANT_ARGS)
{
    quant_body(h, in, ldq, q, qsum, step);  /* compiled with roundss: no libm call */
}

AVX512_TARGET static void quant_avx512(QUANT_ARGS)
{
    __m512 mx = _mm512_setzero_ps(), vz = _mm512_setzero_ps(), vs;
    __m512i vsum = _mm512_setzero_si512();
    float amax, z, st;
    int32_t sum;
    int i;
    for (i = 0; i + 16 <= in; i += 16) {
        __m512 v = _mm512_loadu_ps(h + i);
        mx = _mm512_max_ps(mx, _mm512_abs_ps(v));
        vz = _mm512_add_ps(vz, _mm512_mul_ps(v, _mm512_setzero_ps()));
    }
    amax = _mm512_reduce_max_ps(mx);
    z = _mm512_reduce_add_ps(vz);
    for (; i < in; i++) {
        float a = fabsf(h[i]);
        if (a > amax) amax = a;
        z = z + h[i] * 0.0f;
    }
    if (quant_nonfinite(z, ldq, q, qsum, step)) return;
    st = amax > 0.0f ? amax / 127.0f : 1.0f;
    vs = _mm512_set1_ps(st);
    for (i = 0; i + 16 <= in; i += 16) {
        __m512 t = _mm512_roundscale_ps(_mm512_div_ps(_mm512_loadu_ps(h + i), vs),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m512i v = _mm512_cvtps_epi32(t);
        vsum = _mm512_add_epi32(vsum, v);
        _mm_storeu_si128((__m128i *)(q + i), _mm512_cvtsepi32_epi8(v));
    }
    sum = _mm512_reduce_add_epi32(vsum);
    quant_tail(h, i, in, st, q, &sum);
    quant_finish(in, ldq, q, sum, st, qsum, step);
}

/* The dot for up to 4 rows against one group, or 1 row against 4 groups (the GEMV), over all the
 * inputs, with four accumulators per (row, group): field s is masked in place (the code times 4^s,
 * at most 128: still an unsigned byte), so decoding costs one AND a field, and acc_s holds 4^s
 * times that field's dot, summed back exactly at the end: acc0 + acc1/4 + acc2/16 + acc3/64
 * (|acc3| <= 128 * 127 * 4 * kg fits int32 for any in < 2^16). Accumulators are named variables,
 * not an array: GCC keeps those in registers (an array of them it copies and spills). 4 rows a
 * tile: 16 accumulators, and 5 or 6 rows measured no faster. */
#define VN_DECL(i) __m512i a##i##0 = _mm512_setzero_si512(), a##i##1 = a##i##0, a##i##2 = a##i##0, \
    a##i##3 = a##i##0
#define VN_BX(r, s) ((const int32_t *)(Q + (size_t)(r) * ldq + (size_t)k * QK + 4 * (s)))
#define VN_DOT(i, s, q, x) a##i##s = dpbusd_m(a##i##s, q, x)
#define VN_SUM(i) _mm512_add_epi32(_mm512_add_epi32(a##i##0, _mm512_srai_epi32(a##i##1, 2)), \
    _mm512_add_epi32(_mm512_srai_epi32(a##i##2, 4), _mm512_srai_epi32(a##i##3, 6)))
#define VN_MASKS const __m512i m0 = _mm512_set1_epi8(0x03), m1 = _mm512_set1_epi8(0x0C), \
    m2 = _mm512_set1_epi8(0x30), m3 = _mm512_set1_epi8((char)0xC0)

/* acc += a . the 4 bytes at b in every lane (vpdpbusd with an embedded broadcast), by inline asm:
 * GCC 12's builtin copies each accumulator in and out around every call, and it cost a third of
 * the GEMV's time. */
static inline __attribute__((always_inline)) VNNI_TARGET __m512i dpbusd_m(__m512i acc, __m512i a, const int32_t *b)
{
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(a), "m"(*b));
    return acc;
}

/* one field s for rows 0..R-1 (one group) */
#define VN_ROWS_FIELD(s) do { \
        const __m512i q = _mm512_and_si512(v, m##s); \
        VN_DOT(0, s, q, VN_BX(0, s)); \
        if (R > 1) VN_DOT(1, s, q, VN_BX(1, s)); \
        if (R > 2) VN_DOT(2, s, q, VN_BX(2, s)); \
        if (R > 3) VN_DOT(3, s, q, VN_BX(3, s)); \
    } while (0)

static inline __attribute__((always_inline)) VNNI_TARGET void vnni_rows(
    const uint8_t *W, int kg, const int8_t *Q, size_t ldq, int R, int32_t *D)
{
    VN_MASKS;
    VN_DECL(0); VN_DECL(1); VN_DECL(2); VN_DECL(3);
    int k;
    for (k = 0; k < kg; k++) {
        const __m512i v = _mm512_loadu_si512((const void *)(W + (size_t)k * 64));
        VN_ROWS_FIELD(0); VN_ROWS_FIELD(1); VN_ROWS_FIELD(2); VN_ROWS_FIELD(3);
    }
    _mm512_storeu_si512((void *)D, VN_SUM(0));
    if (R > 1) _mm512_storeu_si512((void *)(D + QG), VN_SUM(1));
    if (R > 2) _mm512_storeu_si512((void *)(D + 2 * QG), VN_SUM(2));
    if (R > 3) _mm512_storeu_si512((void *)(D + 3 * QG), VN_SUM(3));
}

/* one field s for one row against groups 0..3 */
#define VN_GROUPS_FIELD(s) do { \
        VN_DOT(0, s, _mm512_and_si512(v0, m##s), VN_BX(0, s)); \
        VN_DOT(1, s, _mm512_and_si512(v1, m##s), VN_BX(0, s)); \
        VN_DOT(2, s, _mm512_and_si512(v2, m##s), VN_BX(0, s)); \
        VN_DOT(3, s, _mm512_and_si512(v3, m##s), VN_BX(0, s)); \
    } while (0)

VNNI_TARGET
static void vnni_gemv4(const uint8_t *W, int kg, const int8_t *Q, int32_t *D)
{
    VN_MASKS;
    VN_DECL(0); VN_DECL(1); VN_DECL(2); VN_DECL(3);
    const size_t ldq = 0, gs = (size_t)kg * 64;
    int k;
    for (k = 0; k < kg; k++) {
        const uint8_t *w = W + (size_t)k * 64;
        const __m512i v0 = _mm512_loadu_si512((const void *)w);
        const __m512i v1 = _mm512_loadu_si512((const void *)(w + gs));
        const __m512i v2 = _mm512_loadu_si512((const void *)(w + 2 * gs));
        const __m512i v3 = _mm512_loadu_si512((const void *)(w + 3 * gs));
        VN_GROUPS_FIELD(0); VN_GROUPS_FIELD(1); VN_GROUPS_FIELD(2); VN_GROUPS_FIELD(3);
    }
    _mm512_storeu_si512((void *)D, VN_SUM(0));
    _mm512_storeu_si512((void *)(D + QG), VN_SUM(1));
    _mm512_storeu_si512((void *)(D + 2 * QG), VN_SUM(2));
    _mm512_storeu_si512((void *)(D + 3 * QG), VN_SUM(3));
}

#define VNNI_ROWS(R) do { \
        vnni_rows(W + (size_t)g * kg * 64, kg, Q + (size_t)r0 * ldq, ldq, R, d); \
        for (t = 0; t < (R); t++) tern_store(d + t * QG, r0 + t, g, STORE_ARGS); \
    } while (0)

#ifndef VN_L2
#define VN_L2 (256 * 1024)  /* bytes of weights a chunk of groups: they stay in L2 for every row block */
#endif

VNNI_TARGET
static void tern_vnni(TERN_ARGS)
{
    const size_t ldq = (size_t)kg * QK;
    int32_t d[4 * QG];
    /* a chunk of groups whose weights stay in L2 while every row block passes over them */
    int chunk = kg > 0 ? (int)(VN_L2 / ((size_t)kg * 64)) : g1, c0, c1, g, r0, t;
    if (chunk < 4) chunk = 4;
    for (c0 = g0; c0 < g1; c0 = c1) {
        c1 = c0 + chunk < g1 ? c0 + chunk : g1;
        for (r0 = 0; r0 + 4 <= rows; r0 += 4)
            for (g = c0; g < c1; g++) VNNI_ROWS(4);
        switch (rows - r0) {
        case 1:
            for (g = c0; g + 4 <= c1; g += 4) {
                vnni_gemv4(W + (size_t)g * kg * 64, kg, Q + (size_t)r0 * ldq, d);
                for (t = 0; t < 4; t++) tern_store(d + t * QG, r0, g + t, STORE_ARGS);
            }
            for (; g < c1; g++) VNNI_ROWS(1);
            break;
        case 2: for (g = c0; g < c1; g++) VNNI_ROWS(2); break;
        case 3: for (g = c0; g < c1; g++) VNNI_ROWS(3); break;
        default: break;
        }
    }
}

/* AVX2 (and AVX-512 without VNNI): fields decoded by shift and mask to the codes 0..2, products by
 * vpmaddubsw into int16 lanes (|lane| <= 2 * 2 * 127 per field, 4 fields a block: 16 blocks fit
 * int16), widened to int32 by vpmaddwd every 16 blocks. One group of 16 outputs: two 256-bit halves. */
static inline __attribute__((always_inline)) AVX2_TARGET void avx2_tile(
    const uint8_t *W, int kg, const int8_t *Q, size_t ldq, int R, int32_t *D)
{
    const __m256i m3 = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
    __m256i a32[2][2];
    int k0, k, s, r, h;
    for (r = 0; r < R; r++) a32[r][0] = a32[r][1] = _mm256_setzero_si256();
    for (k0 = 0; k0 < kg; k0 += 16) {
        int k1 = k0 + 16 < kg ? k0 + 16 : kg;
        __m256i a16[2][2];
        for (r = 0; r < R; r++) a16[r][0] = a16[r][1] = _mm256_setzero_si256();
        for (k = k0; k < k1; k++) {
            __m256i v[2];
            v[0] = _mm256_loadu_si256((const __m256i *)(W + (size_t)k * 64));
            v[1] = _mm256_loadu_si256((const __m256i *)(W + (size_t)k * 64 + 32));
#pragma GCC unroll 4
            for (s = 0; s < 4; s++) {
                __m256i q0 = _mm256_and_si256(_mm256_srli_epi16(v[0], 2 * s), m3);
                __m256i q1 = _mm256_and_si256(_mm256_srli_epi16(v[1], 2 * s), m3);
#pragma GCC unroll 2
                for (r = 0; r < R; r++) {
                    int32_t x4;
                    __m256i xb;
                    memcpy(&x4, Q + (size_t)r * ldq + (size_t)k * QK + 4 * s, 4);
                    xb = _mm256_set1_epi32(x4);
                    a16[r][0] = _mm256_add_epi16(a16[r][0], _mm256_maddubs_epi16(q0, xb));
                    a16[r][1] = _mm256_add_epi16(a16[r][1], _mm256_maddubs_epi16(q1, xb));
                }
            }
        }
        for (r = 0; r < R; r++)
            for (h = 0; h < 2; h++)
                a32[r][h] = _mm256_add_epi32(a32[r][h], _mm256_madd_epi16(a16[r][h], ones));
    }
    for (r = 0; r < R; r++)
        for (h = 0; h < 2; h++) _mm256_storeu_si256((__m256i *)(D + r * QG + 8 * h), a32[r][h]);
}

AVX2_TARGET
static void tern_avx2(TERN_ARGS)
{
    const size_t ldq = (size_t)kg * QK;
    int32_t d[2 * QG];
    int g, r0;
    for (g = g0; g < g1; g++) {
        const uint8_t *w = W + (size_t)g * kg * 64;
        for (r0 = 0; r0 + 2 <= rows; r0 += 2) {
            avx2_tile(w, kg, Q + (size_t)r0 * ldq, ldq, 2, d);
            tern_store(d, r0, g, STORE_ARGS);
            tern_store(d + QG, r0 + 1, g, STORE_ARGS);
        }
        if (r0 < rows) {
            avx2_tile(w, kg, Q + (size_t)r0 * ldq, ldq, 1, d);
            tern_store(d, r0, g, STORE_ARGS);
        }
    }
}
#endif

/* One layer: Y[rows][out] = relu?((int8(h) . t) * step * scale + bias), h = (H - mean) * inv_std
 * when mean is given (the first layer), else H; only the output groups g0..g1-1 (16 outputs a group:
 * callers may split the groups between threads). 0, or -1 when memory ran out. */
int omk_ternary_layer(const uint8_t *W, int out, int kg, const float *H, int rows, int in,
                      const float *mean, const float *inv_std, const float *scale, int per_row,
                      const float *bias, int relu, float *Y, int g0, int g1)
{
    const size_t ldq = (size_t)kg * QK, hn = mean != NULL ? (size_t)in : 0;
    const int level = omk_simd_level();
    char *mem;
    int32_t *qsum;
    float *step, *hs;
    int8_t *Q;
    int r;
    size_t i;
    if (rows <= 0) return 0;
    mem = malloc((size_t)rows * (ldq + 8) + hn * sizeof(float));
    if (mem == NULL) return -1;
    qsum = (int32_t *)mem;
    step = (float *)(mem + (size_t)rows * 4);
    hs = (float *)(mem + (size_t)rows * 8);
    Q = (int8_t *)(mem + (size_t)rows * 8 + hn * sizeof(float));
    for (r = 0; r < rows; r++) {
        const float *h = H + (size_t)r * in;
        if (mean != NULL) {  /* the format's step 1, operation for operation */
            for (i = 0; i < hn; i++) hs[i] = (h[i] - mean[i]) * inv_std[i];
            h = hs;
        }
#ifdef OMK_X86
        if (level >= 3) quant_avx512(h, in, (int)ldq, Q + r * ldq, qsum + r, step + r);
        else if (level == 2) quant_avx2(h, in, (int)ldq, Q + r * ldq, qsum + r, step + r);
        else
#endif
            quant_portable(h, in, (int)ldq, Q + r * ldq, qsum + r, step + r);
    }
#ifdef OMK_X86
    if (level >= 4) tern_vnni(W, out, kg, Q, rows, qsum, step, scale, per_row, bias, relu, Y, g0, g1);
    else if (level >= 2) tern_avx2(W, out, kg, Q, rows, qsum, step, scale, per_row, bias, relu, Y, g0, g1);
    else
#endif
        tern_portable(W, out, kg, Q, rows, qsum, step, scale, per_row, bias, relu, Y, g0, g1);
    free(mem);
    return 0;
}
