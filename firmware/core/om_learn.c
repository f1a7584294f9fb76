/* Learning on the device: the integer learning rule of om_core.h (latent int16 weights for the
 * last layer, the rest frozen ternary), its head blob and its ternary update. No heap, no float
 * arithmetic beyond the exact power-of-two product that quantises the frozen layers' output.
 * openmind/pathways/ternary/learn.py is the same arithmetic in Python, bit for bit. */
#include <string.h>

#include "om_core.h"

#define W_MAX 32767
#define B_MAX 1073741823L        /* |B| < 2^30, so B - B0 fits an int32 */

uint32_t om_draw(uint32_t *counter)
{
    uint32_t x = (*counter)++;             /* counter-based: the Python reference draws a step's */
    x ^= x >> 16;                          /* numbers at once (lowbias32 of counter, counter+1, ...) */
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

/* floor(v / 2^s) for any sign (>> of a negative int is implementation-defined in C99) */
static int32_t floor_shift(int32_t v, int s)
{
    if (v >= 0) return v >> s;
    return -(int32_t)((((uint32_t)(-(v + 1))) >> s) + 1u);
}

static int32_t clamp32(int64_t v, int32_t lim)
{
    return v > lim ? lim : (v < -lim ? -lim : (int32_t)v);
}

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

void om_learn_quantize(const float *h, int n, int shift, int8_t *q)
{
    float two = 1.0f;
    int i;
    for (i = 0; i < shift; i++) two = two * 2.0f;     /* exact powers of two */
    for (i = 0; i > shift; i--) two = two * 0.5f;
    for (i = 0; i < n; i++) {
        float v = h[i] * two;
        if (!(v == v)) q[i] = 0;
        else if (v >= 127.0f) q[i] = 127;
        else if (v <= -127.0f) q[i] = -127;
        else q[i] = (int8_t)(int)v;                    /* truncation toward zero */
    }
}

const char *om_learn_error(int code)
{
    switch (code) {
    case OM_HEAD_OK: return "ok";
    case OM_HEAD_SHORT: return "head blob has the wrong length for its shape";
    case OM_HEAD_MAGIC: return "not a learning head (magic OMLH, version 1)";
    case OM_HEAD_SHAPE: return "head shape exceeds the device's learning limits";
    case OM_HEAD_FIELD: return "head field out of range (shifts, seed, weights or bias)";
    default: return "invalid head";
    }
}

/* TWN on one row of values v[i] = a[i] - b[i] (b may be NULL): trits into t (may be NULL), the
 * scale (floor of the mean kept |v|) into *alpha. Kept: 10 * in * |v| > 7 * sum|v|. */
static void ternary_row(const int16_t *a, const int16_t *b, int n, int8_t *t, int32_t *alpha)
{
    uint32_t sum = 0, kept_sum = 0, kept = 0;
    int i;
    for (i = 0; i < n; i++) {
        int32_t v = (int32_t)a[i] - (b ? b[i] : 0);
        sum += (uint32_t)(v < 0 ? -v : v);
    }
    for (i = 0; i < n; i++) {
        int32_t v = (int32_t)a[i] - (b ? b[i] : 0);
        uint32_t m = (uint32_t)(v < 0 ? -v : v);
        int8_t tv = 0;
        if ((uint64_t)m * 10u * (uint32_t)n > (uint64_t)sum * 7u) {
            tv = v > 0 ? 1 : -1;
            kept_sum += m;
            kept++;
        }
        if (t) t[i] = tv;
    }
    *alpha = kept ? (int32_t)(kept_sum / kept) : 0;
}

int om_learn_load(om_head_t *hd, const unsigned char *blob, size_t len)
{
    unsigned in, out, o, i, frac, lr;
    int sq, bs, carry;
    uint32_t seed;
    size_t nw;
    const unsigned char *pw, *pb;
    if (len < OM_LEARN_HEAD_HDR) return OM_HEAD_SHORT;
    if (memcmp(blob, OM_LEARN_HEAD_MAGIC, 4) != 0 || rd16(blob + 4) != 1) return OM_HEAD_MAGIC;
    in = rd16(blob + 6);
    out = rd16(blob + 8);
    if (in < 1 || in > OM_MAX_WIDTH || out < 1 || out > OM_LEARN_MAX_OUT || (size_t)in * out > OM_LEARN_MAX_W)
        return OM_HEAD_SHAPE;
    nw = (size_t)in * out;
    if (len != OM_LEARN_HEAD_HDR + 2 * nw + 4 * (size_t)out) return OM_HEAD_SHORT;
    frac = blob[10];
    sq = (int)(signed char)blob[11];
    lr = blob[12];
    bs = (int)(signed char)blob[13];
    seed = rd32(blob + 16);
    if (frac > 15 || sq < -8 || sq > 16 || (int)frac + sq < 0 || (int)frac + sq > 30 || lr > 30 ||
        bs < -15 || bs > 30 || (blob[14] & 0xfeu) || blob[15])
        return OM_HEAD_FIELD;
    pw = blob + OM_LEARN_HEAD_HDR;
    pb = pw + 2 * nw;
    for (i = 0; i < nw; i++)
        if ((int16_t)rd16(pw + 2 * i) < -W_MAX) return OM_HEAD_FIELD;
    for (o = 0; o < out; o++) {
        int32_t b = (int32_t)rd32(pb + 4 * o);
        if (b > B_MAX || b < -B_MAX) return OM_HEAD_FIELD;
    }
    carry = (blob[14] & 1u) && hd->in == in && hd->out == out;
    for (o = 0; o < out; o++) {
        int8_t t[OM_MAX_WIDTH];
        int32_t alpha = 0;
        int16_t *w = hd->w + (size_t)o * in, *w0 = hd->w0 + (size_t)o * in;
        if (carry) ternary_row(w, w0, (int)in, t, &alpha);
        for (i = 0; i < in; i++) {
            int16_t g = (int16_t)rd16(pw + 2 * ((size_t)o * in + i));
            int32_t r = carry ? ((int32_t)w[i] - w0[i]) - t[i] * alpha : 0;   /* what the update left out */
            w0[i] = (int16_t)clamp32((int64_t)g - r, W_MAX);
            w[i] = g;
        }
        hd->b[o] = hd->b0[o] = (int32_t)rd32(pb + 4 * o);
    }
    hd->in = (uint16_t)in;
    hd->out = (uint16_t)out;
    hd->frac_w = (uint8_t)frac;
    hd->shift_q = (int8_t)sq;
    hd->lr_shift = (uint8_t)lr;
    hd->bias_shift = (int8_t)bs;
    hd->flags = blob[14];
    hd->rng = seed;
    hd->steps = hd->correct = 0;
    return OM_HEAD_OK;
}

int om_learn_forward(const om_head_t *hd, const int8_t *q, int64_t *z)
{
    unsigned o, i, in = hd->in;
    int best = 0;
    for (o = 0; o < hd->out; o++) {
        int8_t t[OM_MAX_WIDTH];
        int32_t alpha, s = 0;
        ternary_row(hd->w + (size_t)o * in, NULL, (int)in, t, &alpha);
        for (i = 0; i < in; i++) s += t[i] * (int32_t)q[i];
        z[o] = (int64_t)alpha * s + hd->b[o];
        if (z[o] > z[best]) best = (int)o;
    }
    return best;
}

/* Q15 probabilities of the logits: 2^-x with x = (zmax - z) * log2(e) in units 2^-(frac+shift),
 * 8 fractional bits, 2^-frac linear between integers; p = e * 2^15 / sum(e). */
static void softmax_q15(const int64_t *z, int n, int best, int units, uint32_t *p)
{
    uint32_t e[OM_LEARN_MAX_OUT], sum = 0;
    int o;
    for (o = 0; o < n; o++) {
        uint64_t x8 = ((uint64_t)(z[best] - z[o]) * 369u) >> units;   /* 369 / 256 ~ log2(e) */
        uint64_t k = x8 >> 8;
        e[o] = k >= 15 ? 0u : (32768u - (uint32_t)((x8 & 255u) << 6)) >> k;
        sum += e[o];
    }
    for (o = 0; o < n; o++) p[o] = (e[o] << 15) / sum;
}

int om_learn_step(om_head_t *hd, const int8_t *q, int label)
{
    int64_t z[OM_LEARN_MAX_OUT];
    uint32_t p[OM_LEARN_MAX_OUT];
    unsigned o, i, in = hd->in;
    int y = om_learn_forward(hd, q, z), sh = hd->lr_shift, bs = hd->bias_shift;
    uint32_t mask = (1u << sh) - 1u;
    softmax_q15(z, hd->out, y, hd->frac_w + hd->shift_q, p);
    for (o = 0; o < hd->out; o++) {
        int32_t g = (int32_t)p[o] - ((int)o == label ? 32768 : 0), db;
        int16_t *w = hd->w + (size_t)o * in;
        for (i = 0; i < in; i++) {
            int32_t v = g * (int32_t)q[i];
            int32_t r = (int32_t)(om_draw(&hd->rng) & mask);
            w[i] = (int16_t)clamp32((int64_t)w[i] - floor_shift(v + r, sh), W_MAX);
        }
        if (bs >= 0) db = floor_shift(g + (int32_t)(om_draw(&hd->rng) & ((1u << bs) - 1u)), bs);
        else db = g * (int32_t)(1u << -bs);
        hd->b[o] = clamp32((int64_t)hd->b[o] - db, B_MAX);
    }
    hd->steps++;
    if (y == label) hd->correct++;
    return y;
}

uint16_t om_f16_scaled(int32_t v, int frac)
{
    uint16_t sign = v < 0 ? 0x8000u : 0u;
    uint32_t u = v < 0 ? (uint32_t)0 - (uint32_t)v : (uint32_t)v, m, rest, half;
    int p = 31, e, drop;
    if (u == 0) return sign;
    while (!(u >> p)) p--;                 /* u in [2^p, 2^(p+1)) */
    e = p - frac;                          /* value in [2^e, 2^(e+1)) */
    if (e > 15) return (uint16_t)(sign | 0x7bffu);
    drop = e >= -14 ? p - 10 : p - 10 + (-14 - e);   /* bits below the float16's last one */
    if (drop > 31) return sign;            /* far below the smallest subnormal: rounds to 0 */
    if (drop <= 0) m = u << -drop;
    else {
        m = u >> drop;
        rest = u & ((1u << drop) - 1u);
        half = 1u << (drop - 1);
        if (rest > half || (rest == half && (m & 1u))) m++;
    }
    if (e < -14) return (uint16_t)(sign | m);                    /* subnormal (m may reach 1024: the smallest normal) */
    if (m == 2048u) { m = 1024u; e++; }
    if (e > 15) return (uint16_t)(sign | 0x7bffu);
    return (uint16_t)(sign | ((uint32_t)(e + 15) << 10) | (m & 0x3ffu));
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}

long om_learn_update(const om_head_t *hd, unsigned char *out, size_t cap)
{
    size_t nw = (size_t)hd->in * hd->out, nt = (nw + 4) / 5, k = 0;
    size_t need = 12 + nt + 4 * (size_t)hd->out, pos = 12;
    unsigned o, i;
    static const unsigned char pow3[5] = {1, 3, 9, 27, 81};
    if (need > cap || hd->out == 0) return -1;
    memcpy(out, "OMTU", 4);
    put32(out + 4, hd->out);
    put32(out + 8, hd->in);
    for (o = 0; o < hd->out; o++) {
        int8_t t[OM_MAX_WIDTH];
        int32_t alpha;
        uint16_t s, b;
        ternary_row(hd->w + (size_t)o * hd->in, hd->w0 + (size_t)o * hd->in, hd->in, t, &alpha);
        for (i = 0; i < hd->in; i++, k++) {
            if (k % 5 == 0) out[pos + k / 5] = 0;
            out[pos + k / 5] = (unsigned char)(out[pos + k / 5] + (t[i] + 1) * pow3[k % 5]);
        }
        s = om_f16_scaled(alpha, hd->frac_w);
        b = om_f16_scaled(hd->b[o] - hd->b0[o], hd->frac_w + hd->shift_q);
        out[pos + nt + 2 * o] = (unsigned char)s;
        out[pos + nt + 2 * o + 1] = (unsigned char)(s >> 8);
        out[pos + nt + 2 * hd->out + 2 * o] = (unsigned char)b;
        out[pos + nt + 2 * hd->out + 2 * o + 1] = (unsigned char)(b >> 8);
    }
    for (; k % 5; k++)                     /* pad the last byte with zero trits (digit 1) */
        out[pos + k / 5] = (unsigned char)(out[pos + k / 5] + pow3[k % 5]);
    return (long)need;
}
