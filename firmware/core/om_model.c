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

int om_model_predict(const om_model_t *m, const float *x, float *scores)
{
    float buf[2][OM_MAX_WIDTH];
    float *h = buf[0], *y = buf[1], *t;
    unsigned i, o, li, best = 0;
    for (i = 0; i < m->n_inputs; i++)
        h[i] = (x[i] - rd_f32(m->mean + 4 * i)) * rd_f32(m->inv_std + 4 * i);
    for (li = 0; li < m->n_layers; li++) {
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
    for (o = 0; o < m->n_outputs; o++) {
        scores[o] = h[o];
        if (h[o] > h[best]) best = o;
    }
    return (int)best;
}
