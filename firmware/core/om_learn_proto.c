/* docs/protocol-v3.md: LEARN LOAD / TRAIN / EVAL / DATA / LIVE / UPDATE / STATUS, the learning
 * commands over the line protocol. The rule itself is om_learn.c. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "om_core.h"

enum { LN_NONE = 0, LN_LOAD, LN_TRAIN, LN_EVAL };
#define UPDATE_PART 768          /* update bytes a line: 1024 base64 characters */

int om_learn_hello(const om_device_t *d, char *out, size_t cap)
{
    (void)d;
    return snprintf(out, cap, ",\"learn\":{\"rule\":\"tern-int16-v1\",\"max_weights\":%d,\"max_outputs\":%d,"
                    "\"head_ram\":%lu,\"device_ram\":%lu}}",
                    OM_LEARN_MAX_W, OM_LEARN_MAX_OUT, (unsigned long)sizeof(om_head_t),
                    (unsigned long)sizeof(om_device_t));
}

/* The head fits the model: its inputs are the last layer's, its outputs the model's classes. */
static int head_fits(const om_device_t *d)
{
    return d->has_model && d->has_head && d->head.in == d->model.layers[d->model.n_layers - 1].in &&
           d->head.out == d->model.n_outputs;
}

/* One labelled sample x[n_inputs]: frozen layers (float, bit-exact) -> q -> learn or score. */
static int learn_sample(om_device_t *d, const float *x, int label, int train)
{
    float h[OM_MAX_WIDTH];
    int8_t q[OM_MAX_WIDTH];
    int64_t z[OM_LEARN_MAX_OUT];
    om_model_hidden(&d->model, x, h);
    om_learn_quantize(h, d->head.in, d->head.shift_q, q);
    if (train) return om_learn_step(&d->head, q, label);
    return om_learn_forward(&d->head, q, z);
}

static void row_done(om_device_t *d)
{
    float x[OM_MAX_WIDTH];
    unsigned i, n = d->model.n_inputs;
    uint32_t label;
    const unsigned char *p = d->pb_row + 4 * n;
    label = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    for (i = 0; i < n; i++) {
        const unsigned char *b = d->pb_row + 4 * i;
        uint32_t u = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
        memcpy(&x[i], &u, sizeof x[i]);
        if (!isfinite(x[i])) label = 0xFFFFFFFFu;
    }
    if (label >= d->head.out) {   /* a bad row is counted and skipped; the batch goes on */
        d->ln_bad++;
        return;
    }
    if (learn_sample(d, x, (int)label, d->ln_mode == LN_TRAIN) == (int)label) d->ln_correct++;
}

static void begin_rows(om_device_t *d, char **w, int nw, int mode)
{
    uint32_t rows, row_bytes;
    if (!head_fits(d)) {
        om_reply_err(d, "nomodel", "no model with a fitting head: MODEL upload, then LEARN LOAD");
        return;
    }
    row_bytes = 4u * d->model.n_inputs + 4u;
    if (nw != 3 || !om_parse_u32(w[2], &rows) || rows == 0) {
        om_reply_err(d, "args", "usage: LEARN TRAIN|EVAL <rows> (rows >= 1)");
        return;
    }
    if (rows > 0xFFFFFFFFu / row_bytes) { d->ln_mode = LN_NONE; om_reply_err(d, "size", "too many rows for one batch"); return; }
    d->ln_mode = mode;
    d->ln_rows = rows;
    d->ln_done = d->ln_got = d->ln_correct = d->ln_bad = 0;
    d->ln_expect = rows * row_bytes;
    d->pb_fill = 0;
    om_emit(d, snprintf(d->out, sizeof d->out, "{\"ok\":true,\"rows\":%lu,\"bytes\":%lu}",
                        (unsigned long)rows, (unsigned long)d->ln_expect));
}

static void begin_load(om_device_t *d, char **w, int nw)
{
    uint32_t size, crc;
    if (nw != 4 || !om_parse_u32(w[2], &size) || !om_parse_hex32(w[3], &crc)) {
        om_reply_err(d, "args", "usage: LEARN LOAD <bytes> <crc32-hex>");
        return;
    }
    if (size == 0 || size > sizeof d->stage) { d->ln_mode = LN_NONE; om_reply_err(d, "size", "head larger than the device holds"); return; }
    d->ln_mode = LN_LOAD;
    d->ln_expect = size;
    d->ln_crc = crc;
    d->ln_got = 0;
    om_emit(d, snprintf(d->out, sizeof d->out, "{\"ok\":true,\"bytes\":%lu}", (unsigned long)size));
}

static void load_done(om_device_t *d)
{
    int rc;
    d->ln_mode = LN_NONE;
    if (om_crc32(0, d->stage, d->ln_got) != d->ln_crc) { om_reply_err(d, "crc", "CRC-32 mismatch"); return; }
    rc = om_learn_load(&d->head, d->stage, d->ln_got);
    if (rc != OM_HEAD_OK) { om_reply_err(d, "args", om_learn_error(rc)); return; }
    d->has_head = 1;
    om_emit(d, snprintf(d->out, sizeof d->out, "{\"ok\":true,\"got\":%lu,\"done\":true,\"inputs\":%u,\"outputs\":%u}",
                        (unsigned long)d->ln_got, (unsigned)d->head.in, (unsigned)d->head.out));
}

static void data(om_device_t *d, char **w, int nw)
{
    unsigned char chunk[OM_B64_MAX / 4 * 3];
    uint32_t left = d->ln_expect - d->ln_got, row_bytes = 4u * d->model.n_inputs + 4u;
    long got, i;
    size_t len;
    if (d->ln_mode == LN_NONE) { om_reply_err(d, "args", "LEARN DATA before LEARN LOAD, TRAIN or EVAL"); return; }
    if (nw != 3) { om_reply_err(d, "args", "usage: LEARN DATA <base64>"); return; }
    len = strlen(w[2]);
    if (len > OM_B64_MAX) { om_reply_err(d, "size", "at most 192 base64 characters a line"); return; }
    got = om_b64_decode(w[2], len, chunk, left < sizeof chunk ? left : sizeof chunk);
    if (got < 0) {
        d->ln_mode = LN_NONE;
        om_reply_err(d, "size", "bad base64 or more bytes than announced: transfer aborted");
        return;
    }
    if (d->ln_mode == LN_LOAD) {
        memcpy(d->stage + d->ln_got, chunk, (size_t)got);
        d->ln_got += (uint32_t)got;
        if (d->ln_got == d->ln_expect) load_done(d);
        else om_emit(d, snprintf(d->out, sizeof d->out, "{\"ok\":true,\"got\":%lu}", (unsigned long)d->ln_got));
        return;
    }
    for (i = 0; i < got; i++) {
        d->pb_row[d->pb_fill++] = chunk[i];
        if (d->pb_fill == row_bytes) {
            row_done(d);
            d->pb_fill = 0;
            d->ln_done++;
        }
    }
    d->ln_got += (uint32_t)got;
    om_emit(d, snprintf(d->out, sizeof d->out,
                        "{\"ok\":true,\"got\":%lu,\"rows\":%lu,\"correct\":%lu,\"bad\":%lu,\"steps\":%lu%s}",
                        (unsigned long)d->ln_got, (unsigned long)d->ln_done, (unsigned long)d->ln_correct,
                        (unsigned long)d->ln_bad, (unsigned long)d->head.steps,
                        d->ln_done == d->ln_rows ? ",\"done\":true" : ""));
    if (d->ln_done == d->ln_rows) d->ln_mode = LN_NONE;
}

/* LEARN LIVE <signal> <label> <windows>: each window is n_inputs consecutive reads of the signal,
 * at its max rate from now; the device learns it as `label`. The data never leave the device. */
static void live(om_device_t *d, char **w, int nw)
{
    float x[OM_MAX_WIDTH];
    uint32_t label, windows, k, correct = 0;
    uint64_t now, period;
    int i, sig = -1;
    if (!head_fits(d)) { om_reply_err(d, "nomodel", "no model with a fitting head: MODEL upload, then LEARN LOAD"); return; }
    if (nw != 5 || !om_parse_u32(w[3], &label) || !om_parse_u32(w[4], &windows) || windows == 0) {
        om_reply_err(d, "args", "usage: LEARN LIVE <signal> <label> <windows>");
        return;
    }
    if (d->streaming) { om_reply_err(d, "busy", "a stream is running: STOP it first"); return; }
    for (i = 0; i < d->board.n_signals; i++)
        if (strcmp(w[2], d->board.signals[i].name) == 0) sig = i;
    if (sig < 0 || label >= d->head.out) { om_reply_err(d, "args", "no such signal, or label >= the model's outputs"); return; }
    if (windows > 100000u) { om_reply_err(d, "size", "at most 100000 windows a command"); return; }
    period = 1000000u / (d->board.signals[sig].max_rate_hz ? d->board.signals[sig].max_rate_hz : 1u);
    now = d->board.micros(d->board.ctx);
    for (k = 0; k < windows; k++) {
        for (i = 0; i < d->model.n_inputs; i++, now += period) x[i] = d->board.read(d->board.ctx, sig, now);
        for (i = 0; i < d->model.n_inputs && isfinite(x[i]); i++) {}
        if (i == d->model.n_inputs && learn_sample(d, x, (int)label, 1) == (int)label) correct++;
    }
    om_emit(d, snprintf(d->out, sizeof d->out, "{\"ok\":true,\"windows\":%lu,\"correct\":%lu,\"steps\":%lu}",
                        (unsigned long)windows, (unsigned long)correct, (unsigned long)d->head.steps));
}

static void update(om_device_t *d)
{
    long n = d->has_head ? om_learn_update(&d->head, d->stage, sizeof d->stage) : -1;
    long pos, part = 0;
    if (n < 0) { om_reply_err(d, "nomodel", "no head: LEARN LOAD one first"); return; }
    for (pos = 0; pos < n; pos += UPDATE_PART, part++) {
        long len = n - pos < UPDATE_PART ? n - pos : UPDATE_PART;
        int k = snprintf(d->out, sizeof d->out, "{\"u\":%ld,\"b\":\"", part);
        long b = om_b64_encode(d->stage + pos, (size_t)len, d->out + k, sizeof d->out - (size_t)k - 3);
        if (b < 0) { om_reply_err(d, "size", "update part does not fit an answer line"); return; }
        k += (int)b;
        d->out[k++] = '"';
        d->out[k++] = '}';
        om_emit(d, k);
    }
    om_emit(d, snprintf(d->out, sizeof d->out,
                        "{\"ok\":true,\"bytes\":%ld,\"parts\":%ld,\"crc\":\"%08lx\",\"steps\":%lu,\"correct\":%lu}",
                        n, part, (unsigned long)om_crc32(0, d->stage, (size_t)n), (unsigned long)d->head.steps,
                        (unsigned long)d->head.correct));
}

void om_cmd_learn(om_device_t *d, char **w, int nw)
{
    const char *sub = nw >= 2 ? w[1] : "";
    if (strcmp(sub, "LOAD") == 0) begin_load(d, w, nw);
    else if (strcmp(sub, "TRAIN") == 0) begin_rows(d, w, nw, LN_TRAIN);
    else if (strcmp(sub, "EVAL") == 0) begin_rows(d, w, nw, LN_EVAL);
    else if (strcmp(sub, "DATA") == 0) data(d, w, nw);
    else if (strcmp(sub, "LIVE") == 0) live(d, w, nw);
    else if (strcmp(sub, "UPDATE") == 0 && nw == 2) update(d);
    else if (strcmp(sub, "STATUS") == 0 && nw == 2)
        om_emit(d, snprintf(d->out, sizeof d->out,
                            "{\"ok\":true,\"head\":%s,\"fits\":%s,\"inputs\":%u,\"outputs\":%u,\"steps\":%lu,"
                            "\"correct\":%lu,\"head_ram\":%lu}",
                            d->has_head ? "true" : "false", head_fits(d) ? "true" : "false",
                            (unsigned)d->head.in, (unsigned)d->head.out, (unsigned long)d->head.steps,
                            (unsigned long)d->head.correct, (unsigned long)sizeof(om_head_t)));
    else om_reply_err(d, "args", "usage: LEARN LOAD|TRAIN|EVAL|DATA|LIVE|UPDATE|STATUS ...");
}
