/* The packed ternary model (docs/packed-format.md): validate in place, then infer bit-exactly. */
#include <string.h>

#include "om_core.h"

static uint16_t rd_u16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static float rd_f32(const unsigned char *p)
{
    uint32_t u = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

const char *om_model_error(int code)
{
    switch (code) {
    case OM_MODEL_OK: return "ok";
    case OM_MODEL_SHORT: return "blob ends early";
    case OM_MODEL_MAGIC: return "not a packed ternary model (magic)";
    case OM_MODEL_VERSION: return "unsupported format version";
    case OM_MODEL_SHAPE: return "layer shapes do not chain or exceed the device limits";
    case OM_MODEL_FIELD: return "invalid activation, scale mode or reserved field";
    case OM_MODEL_TRIT: return "invalid trit code 11";
    case OM_MODEL_TRAILING: return "bytes after the last layer";
    default: return "invalid model";
    }
}

int om_model_parse(const unsigned char *blob, size_t len, om_model_t *m)
{
    size_t pos = 12, need;
    unsigned prev, li;
    memset(m, 0, sizeof *m);
    if (len < 12) return OM_MODEL_SHORT;
    if (memcmp(blob, "OMT1", 4) != 0) return OM_MODEL_MAGIC;
    if (rd_u16(blob + 4) != 1) return OM_MODEL_VERSION;
    m->n_layers = rd_u16(blob + 6);
    m->n_inputs = rd_u16(blob + 8);
    m->n_outputs = rd_u16(blob + 10);
    if (m->n_layers < 1 || m->n_layers > OM_MAX_LAYERS || m->n_inputs < 1 ||
        m->n_inputs > OM_MAX_WIDTH || m->n_outputs < 1)
        return OM_MODEL_SHAPE;
    need = (size_t)m->n_inputs * 4u;
    if (len - pos < 2 * need) return OM_MODEL_SHORT;
    m->mean = blob + pos;
    m->inv_std = blob + pos + need;
    pos += 2 * need;
    prev = m->n_inputs;
    for (li = 0; li < m->n_layers; li++) {
        om_layer_t *L = &m->layers[li];
        size_t ntrit, tbytes, i;
        if (len - pos < 8) return OM_MODEL_SHORT;
        L->in = rd_u16(blob + pos);
        L->out = rd_u16(blob + pos + 2);
        L->act = blob[pos + 4];
        L->scale_mode = blob[pos + 5];
        if (L->in != prev || L->out < 1 || L->out > OM_MAX_WIDTH) return OM_MODEL_SHAPE;
        if (L->act > 1 || L->scale_mode > 1 || rd_u16(blob + pos + 6) != 0) return OM_MODEL_FIELD;
        pos += 8;
        ntrit = (size_t)L->in * L->out;
        tbytes = (ntrit + 3) / 4;
        if (len - pos < tbytes) return OM_MODEL_SHORT;
        L->trits = blob + pos;
        for (i = 0; i < ntrit; i++)
            if (((L->trits[i >> 2] >> ((i & 3u) * 2u)) & 3u) == 3u) return OM_MODEL_TRIT;
        pos += tbytes;
        need = (L->scale_mode ? (size_t)L->out : 1u) * 4u;
        if (len - pos < need + (size_t)L->out * 4u) return OM_MODEL_SHORT;
        L->scale = blob + pos;
        L->bias = blob + pos + need;
        pos += need + (size_t)L->out * 4u;
        prev = L->out;
    }
    if (prev != m->n_outputs) return OM_MODEL_SHAPE;
    if (pos != len) return OM_MODEL_TRAILING;
    m->blob = blob;
    m->len = len;
    return OM_MODEL_OK;
}

/* Standardises x and runs the first `n_layers` layers; returns the buffer holding the result. */
static float *run_layers(const om_model_t *m, const float *x, unsigned n_layers, float buf[2][OM_MAX_WIDTH])
{
    float *h = buf[0], *y = buf[1], *t;
    unsigned i, o, li;
    for (i = 0; i < m->n_inputs; i++)
        h[i] = (x[i] - rd_f32(m->mean + 4 * i)) * rd_f32(m->inv_std + 4 * i);
    for (li = 0; li < n_layers; li++) {
        const om_layer_t *L = &m->layers[li];
        for (o = 0; o < L->out; o++) {
            float acc = 0.0f, v;
            size_t k = (size_t)o * L->in;
            for (i = 0; i < L->in; i++, k++) {
                unsigned code = (L->trits[k >> 2] >> ((k & 3u) * 2u)) & 3u;
                if (code == 2u) acc = acc + h[i];
                else if (code == 0u) acc = acc - h[i];
            }
            v = acc * rd_f32(L->scale + 4 * (L->scale_mode ? o : 0u));
            v = v + rd_f32(L->bias + 4 * o);
            if (L->act == 1 && v < 0.0f) v = 0.0f;
            y[o] = v;
        }
        t = h; h = y; y = t;
    }
    return h;
}

int om_model_predict(const om_model_t *m, const float *x, float *scores)
{
    float buf[2][OM_MAX_WIDTH];
    const float *h = run_layers(m, x, m->n_layers, buf);
    unsigned o, best = 0;
    for (o = 0; o < m->n_outputs; o++) {
        scores[o] = h[o];
        if (h[o] > h[best]) best = o;
    }
    return (int)best;
}

void om_model_hidden(const om_model_t *m, const float *x, float *h)
{
    float buf[2][OM_MAX_WIDTH];
    const float *r = run_layers(m, x, m->n_layers - 1u, buf);
    memcpy(h, r, sizeof(float) * m->layers[m->n_layers - 1].in);
}

/* ---------------------------------------------------------------- colony vote */

/* 1/12! ... 1/0!: Horner's order (the same literals as openmind/pathways/ternary/vote.py) */
static const double om_taylor[13] = {
    2.08767569878681e-09, 2.505210838544172e-08, 2.755731922398589e-07,
    2.7557319223985893e-06, 2.48015873015873e-05, 0.0001984126984126984,
    0.001388888888888889, 0.008333333333333333, 0.041666666666666664,
    0.16666666666666666, 0.5, 1.0, 1.0};

double om_exp_portable(double x)
{
    double t, r, p, two;
    uint64_t bits;
    long n;
    int i;
    if (x < -700.0) return 0.0;
    t = x * 1.4426950408889634 + 0.5;
    n = (long)t;                       /* floor(t) without libm */
    if ((double)n > t) n -= 1;
    if (n > 0) n = 0;                  /* x <= 0 */
    r = (x - (double)n * 0.6931471803691238) - (double)n * 1.9082149292705877e-10;
    p = om_taylor[0];
    for (i = 1; i < 13; i++) p = p * r + om_taylor[i];
    bits = (uint64_t)(n + 1023) << 52; /* 2^n, a normal double: the product below is exact */
    memcpy(&two, &bits, sizeof two);
    return p * two;
}

int om_colony_vote(const om_model_t *members, int n_members, double confidence, int quorum,
                   const float *x, int *votes, int *abstained)
{
    float scores[OM_MAX_WIDTH], smax;
    double e[OM_MAX_WIDTH], mean[OM_MAX_WIDTH], z, low, key, best_key = 0.0;
    int i, j, k, top, best = 0;
    if (!members || !x || !votes || !abstained || n_members < 1 || n_members > OM_COLONY_MAX)
        return -1;
    k = members[0].n_outputs;
    for (i = 1; i < n_members; i++)
        if (members[i].n_outputs != k || members[i].n_inputs != members[0].n_inputs) return -1;
    for (j = 0; j < k; j++) { votes[j] = 0; mean[j] = 0.0; }
    low = 0.1 / (double)k;
    for (i = 0; i < n_members; i++) {
        om_model_predict(&members[i], x, scores);
        smax = scores[0];
        for (j = 1; j < k; j++) if (scores[j] > smax) smax = scores[j];
        z = 0.0;
        for (j = 0; j < k; j++) {
            e[j] = om_exp_portable((double)scores[j] - (double)smax);
            z = z + e[j];
        }
        top = 0;
        for (j = 0; j < k; j++) {
            e[j] = e[j] / z;
            if (e[j] > e[top]) top = j;
            mean[j] = mean[j] + e[j];
        }
        if (e[top] >= confidence)      /* sure: +1 for its class, -1 for the all but ruled out */
            for (j = 0; j < k; j++) votes[j] += e[j] < low ? -1 : (j == top ? 1 : 0);
    }
    for (j = 0; j < k; j++) {
        key = (double)votes[j] + 0.5 * (mean[j] / (double)n_members);
        if (j == 0 || key > best_key) { best_key = key; best = j; }
    }
    *abstained = votes[best] < quorum;
    return best;
}
