/* PROTOCOL.md v1 and docs/protocol-v2.md: line assembly, command parsing, the stream scheduler,
 * model upload and PREDICT (text, v1) / PREDICTB (base64 float32 rows, batched, v2). LEARN
 * (protocol 3) is om_learn_proto.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "om_core.h"

void om_emit(om_device_t *d, int n)
{
    if (n < 0) return;
    if ((size_t)n >= sizeof d->out - 1) n = (int)sizeof d->out - 2; /* never happens: bounded outputs */
    d->out[n] = '\n';
    d->board.write(d->board.ctx, d->out, (size_t)n + 1);
}

static void reply_ok(om_device_t *d) { om_emit(d, snprintf(d->out, sizeof d->out, "{\"ok\":true}")); }

void om_reply_err(om_device_t *d, const char *code, const char *msg)
{
    om_emit(d, snprintf(d->out, sizeof d->out, "{\"ok\":false,\"error\":\"%s\",\"msg\":\"%s\"}", code, msg));
}

/* Strict unsigned decimal; returns 0 on any junk or overflow. */
int om_parse_u32(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    if (!*s) return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (0xFFFFFFFFu - 9u) / 10u) return 0;
        v = v * 10u + (uint32_t)(*s - '0');
    }
    *out = v;
    return 1;
}

int om_parse_hex32(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    int n = 0;
    for (; *s; s++, n++) {
        int c = (unsigned char)*s, x;
        if (c >= '0' && c <= '9') x = c - '0';
        else if (c >= 'a' && c <= 'f') x = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') x = c - 'A' + 10;
        else return 0;
        if (n >= 8) return 0;
        v = (v << 4) | (uint32_t)x;
    }
    if (n == 0) return 0;
    *out = v;
    return 1;
}

void om_init(om_device_t *d, const om_board_t *board)
{
    memset(d, 0, sizeof *d);
    d->board = *board;
}

int om_load_model(om_device_t *d, const unsigned char *blob, size_t len)
{
    om_model_t m;
    int rc = om_model_parse(blob, len, &m);
    if (rc == OM_MODEL_OK) {
        d->model = m;
        d->has_model = 1;
    }
    return rc;
}

uint64_t om_next_due_us(const om_device_t *d)
{
    if (!d->streaming) return UINT64_MAX;
    return d->start_us + ((uint64_t)d->n * d->period_us_x1000) / 1000u;
}

/* proto 1: the pinned v1 answer, byte for byte; proto 2 adds the board's limits. */
static void cmd_hello(om_device_t *d, int proto)
{
    int i, n = snprintf(d->out, sizeof d->out,
                        "{\"hello\":\"openmind\",\"proto\":%d,\"fw\":\"%s\",\"board\":\"%s\",\"signals\":[",
                        proto, OM_FW_VERSION, d->board.board_name);
    for (i = 0; i < d->board.n_signals && n > 0 && (size_t)n < sizeof d->out - 300; i++) {
        const om_signal_t *s = &d->board.signals[i];
        n += snprintf(d->out + n, sizeof d->out - (size_t)n,
                      "%s{\"name\":\"%s\",\"unit\":\"%s\",\"max_rate_hz\":%lu}", i ? "," : "",
                      s->name, s->unit, (unsigned long)s->max_rate_hz);
    }
    if (proto >= 2)
        n += snprintf(d->out + n, sizeof d->out - (size_t)n,
                      "],\"limits\":{\"model_max\":%lu,\"max_width\":%d,\"max_layers\":%d,\"line_max\":%d,"
                      "\"b64_max\":%d,\"out_max\":%d}}",
                      (unsigned long)OM_MODEL_MAX, OM_MAX_WIDTH, OM_MAX_LAYERS, OM_LINE_MAX, OM_B64_MAX, OM_OUT_MAX);
    if (proto >= 3 && n > 2) {   /* replace the closing brace: ,"learn":{...}} */
        n -= 1;
        n += om_learn_hello(d, d->out + n, sizeof d->out - (size_t)n);
    }
    if (proto < 2)
        n += snprintf(d->out + n, sizeof d->out - (size_t)n, "]}");
    om_emit(d, n);
}

static void cmd_stream(om_device_t *d, char **w, int nw)
{
    int i, sig = -1;
    double rate;
    char *end;
    uint32_t count = 0;
    if (nw < 3 || nw > 4) { om_reply_err(d, "args", "usage: STREAM <signal> <rate_hz> [<count>]"); return; }
    if (d->streaming) { om_reply_err(d, "busy", "a stream is running: STOP it first"); return; }
    for (i = 0; i < d->board.n_signals; i++)
        if (strcmp(w[1], d->board.signals[i].name) == 0) sig = i;
    if (sig < 0) { om_reply_err(d, "args", "no such signal (see HELLO)"); return; }
    rate = strtod(w[2], &end);
    if (*end || !(rate > 0.0) || rate > (double)d->board.signals[sig].max_rate_hz) {
        om_reply_err(d, "args", "rate must be a number above 0 and at most the signal's max_rate_hz");
        return;
    }
    if (nw == 4 && (!om_parse_u32(w[3], &count) || count == 0)) {
        om_reply_err(d, "args", "count must be a positive integer");
        return;
    }
    d->period_us_x1000 = (uint64_t)(1e9 / rate + 0.5);
    if (d->period_us_x1000 == 0) d->period_us_x1000 = 1;
    d->sig = sig;
    d->count = count;
    d->n = 0;
    d->sent = 0;
    d->streaming = 1;
    reply_ok(d);
    d->start_us = d->board.micros(d->board.ctx);
}

static void cmd_stop(om_device_t *d)
{
    d->streaming = 0;
    om_emit(d, snprintf(d->out, sizeof d->out, "{\"ok\":true,\"sent\":%lu}", (unsigned long)d->sent));
}

static void cmd_model(om_device_t *d, char **w, int nw)
{
    if (nw >= 2 && strcmp(w[1], "BEGIN") == 0) {
        uint32_t size, crc;
        if (nw != 4 || !om_parse_u32(w[2], &size) || !om_parse_hex32(w[3], &crc)) {
            om_reply_err(d, "args", "usage: MODEL BEGIN <bytes> <crc32-hex>");
            return;
        }
        if (size == 0 || size > OM_MODEL_MAX) { d->up_active = 0; om_reply_err(d, "size", "model larger than the device holds"); return; }
        if (d->ln_mode == 1) d->ln_mode = 0;   /* a head upload shared the stage buffer */
        d->up_active = 1;
        d->up_expect = size;
        d->up_crc = crc;
        d->up_got = 0;
        reply_ok(d);
    } else if (nw >= 2 && strcmp(w[1], "DATA") == 0) {
        long got;
        size_t len;
        if (!d->up_active) { om_reply_err(d, "args", "MODEL DATA before MODEL BEGIN"); return; }
        if (nw != 3) { om_reply_err(d, "args", "usage: MODEL DATA <base64>"); return; }
        len = strlen(w[2]);
        if (len > OM_B64_MAX) { om_reply_err(d, "size", "at most 192 base64 characters a line"); return; }
        got = om_b64_decode(w[2], len, d->stage + d->up_got, d->up_expect - d->up_got);
        if (got < 0) {
            d->up_active = 0;
            om_reply_err(d, "size", "bad base64 or more bytes than announced: upload aborted");
            return;
        }
        d->up_got += (uint32_t)got;
        om_emit(d, snprintf(d->out, sizeof d->out, "{\"ok\":true,\"got\":%lu}", (unsigned long)d->up_got));
    } else if (nw == 2 && strcmp(w[1], "END") == 0) {
        om_model_t m;
        int rc;
        if (!d->up_active) { om_reply_err(d, "args", "MODEL END before MODEL BEGIN"); return; }
        d->up_active = 0;
        if (d->up_got != d->up_expect) { om_reply_err(d, "size", "fewer bytes than announced"); return; }
        if (om_crc32(0, d->stage, d->up_got) != d->up_crc) { om_reply_err(d, "crc", "CRC-32 mismatch"); return; }
        rc = om_model_parse(d->stage, d->up_got, &m);
        if (rc != OM_MODEL_OK) { om_reply_err(d, "args", om_model_error(rc)); return; }
        memcpy(d->active, d->stage, d->up_got);
        om_load_model(d, d->active, d->up_got);
        d->pb_active = 0;   /* a batch in flight was for the old model */
        if (d->ln_mode >= 2) d->ln_mode = 0;
        om_emit(d, snprintf(d->out, sizeof d->out, "{\"ok\":true,\"inputs\":%u,\"outputs\":%u}",
                         (unsigned)d->model.n_inputs, (unsigned)d->model.n_outputs));
    } else {
        om_reply_err(d, "args", "usage: MODEL BEGIN|DATA|END ...");
    }
}

static void cmd_predict(om_device_t *d, char **w, int nw)
{
    float x[OM_MAX_WIDTH], scores[OM_MAX_WIDTH];
    unsigned n = 0, o;
    int y, len;
    char *p, *end;
    if (!d->has_model) { om_reply_err(d, "nomodel", "no model: upload one with MODEL BEGIN/DATA/END"); return; }
    if (nw != 2) { om_reply_err(d, "args", "usage: PREDICT <x1>,<x2>,..."); return; }
    p = w[1];
    for (;;) {
        float v;
        if (n >= d->model.n_inputs) { om_reply_err(d, "args", "more values than the model has inputs"); return; }
        v = strtof(p, &end);
        if (end == p || (*end != ',' && *end != '\0') || !isfinite(v)) {
            om_reply_err(d, "args", "values must be finite numbers separated by commas");
            return;
        }
        x[n++] = v;
        if (*end == '\0') break;
        p = end + 1;
    }
    if (n != d->model.n_inputs) { om_reply_err(d, "args", "fewer values than the model has inputs"); return; }
    y = om_model_predict(&d->model, x, scores);
    len = snprintf(d->out, sizeof d->out, "{\"y\":%d,\"scores\":[", y);
    for (o = 0; o < d->model.n_outputs && (size_t)len < sizeof d->out - 40; o++) {
        if (isfinite(scores[o]))
            len += snprintf(d->out + len, sizeof d->out - (size_t)len, "%s%.9g", o ? "," : "", (double)scores[o]);
        else
            len += snprintf(d->out + len, sizeof d->out - (size_t)len, "%snull", o ? "," : "");
    }
    len += snprintf(d->out + len, sizeof d->out - (size_t)len, "]}");
    om_emit(d, len);
}

/* One complete PREDICTB row: run it and answer {"r":k,"y":c,"b":"<base64 float32 LE scores>"}. */
static void predictb_row(om_device_t *d)
{
    float x[OM_MAX_WIDTH], scores[OM_MAX_WIDTH];
    unsigned char raw[OM_MAX_WIDTH * 4];
    unsigned i, o;
    int y, n;
    long b;
    for (i = 0; i < d->model.n_inputs; i++) {
        const unsigned char *p = d->pb_row + 4 * i;
        uint32_t u = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
        memcpy(&x[i], &u, sizeof x[i]);
        if (!isfinite(x[i])) {
            om_emit(d, snprintf(d->out, sizeof d->out,
                             "{\"r\":%lu,\"ok\":false,\"error\":\"args\",\"msg\":\"non-finite value in the row\"}",
                             (unsigned long)d->pb_done));
            return;
        }
    }
    y = om_model_predict(&d->model, x, scores);
    for (o = 0; o < d->model.n_outputs; o++) {
        uint32_t u;
        memcpy(&u, &scores[o], sizeof u);
        raw[4 * o] = (unsigned char)(u & 0xffu);
        raw[4 * o + 1] = (unsigned char)((u >> 8) & 0xffu);
        raw[4 * o + 2] = (unsigned char)((u >> 16) & 0xffu);
        raw[4 * o + 3] = (unsigned char)(u >> 24);
    }
    n = snprintf(d->out, sizeof d->out, "{\"r\":%lu,\"y\":%d,\"b\":\"", (unsigned long)d->pb_done, y);
    b = om_b64_encode(raw, 4u * d->model.n_outputs, d->out + n, sizeof d->out - (size_t)n - 3);
    if (b < 0) {   /* never with OM_OUT_MAX >= 1400: 256 scores take 1368 characters */
        om_reply_err(d, "size", "scores do not fit an answer line");
        return;
    }
    n += (int)b;
    d->out[n++] = '"';
    d->out[n++] = '}';
    om_emit(d, n);
}

static void cmd_predictb(om_device_t *d, char **w, int nw)
{
    uint32_t row_bytes = 4u * (d->has_model ? d->model.n_inputs : 1u);
    if (!d->has_model) { d->pb_active = 0; om_reply_err(d, "nomodel", "no model: upload one with MODEL BEGIN/DATA/END"); return; }
    if (nw >= 2 && strcmp(w[1], "BEGIN") == 0) {
        uint32_t rows;
        if (nw != 3 || !om_parse_u32(w[2], &rows) || rows == 0) {
            om_reply_err(d, "args", "usage: PREDICTB BEGIN <rows> (rows >= 1)");
            return;
        }
        if (rows > 0xFFFFFFFFu / row_bytes) { d->pb_active = 0; om_reply_err(d, "size", "too many rows for one batch"); return; }
        d->pb_active = 1;
        d->pb_rows = rows;
        d->pb_done = 0;
        d->pb_got = 0;
        d->pb_fill = 0;
        om_emit(d, snprintf(d->out, sizeof d->out, "{\"ok\":true,\"rows\":%lu,\"bytes\":%lu}",
                         (unsigned long)rows, (unsigned long)(rows * row_bytes)));
    } else if (nw >= 2 && strcmp(w[1], "DATA") == 0) {
        unsigned char chunk[OM_B64_MAX / 4 * 3];
        uint32_t left;
        long got, i;
        size_t len;
        if (!d->pb_active) { om_reply_err(d, "args", "PREDICTB DATA before PREDICTB BEGIN"); return; }
        if (nw != 3) { om_reply_err(d, "args", "usage: PREDICTB DATA <base64>"); return; }
        len = strlen(w[2]);
        if (len > OM_B64_MAX) { om_reply_err(d, "size", "at most 192 base64 characters a line"); return; }
        left = d->pb_rows * row_bytes - d->pb_got;
        got = om_b64_decode(w[2], len, chunk, left < sizeof chunk ? left : sizeof chunk);
        if (got < 0) {
            d->pb_active = 0;
            om_reply_err(d, "size", "bad base64 or more bytes than the batch holds: batch aborted");
            return;
        }
        for (i = 0; i < got; i++) {
            d->pb_row[d->pb_fill++] = chunk[i];
            if (d->pb_fill == row_bytes) {
                predictb_row(d);
                d->pb_fill = 0;
                d->pb_done++;
            }
        }
        d->pb_got += (uint32_t)got;
        if (d->pb_done == d->pb_rows) d->pb_active = 0;
        om_emit(d, snprintf(d->out, sizeof d->out, "{\"ok\":true,\"got\":%lu,\"rows\":%lu%s}", (unsigned long)d->pb_got,
                         (unsigned long)d->pb_done, d->pb_active ? "" : ",\"done\":true"));
    } else {
        om_reply_err(d, "args", "usage: PREDICTB BEGIN <rows> | PREDICTB DATA <base64>");
    }
}

/* LEARN shares the stage buffer with MODEL uploads and the row buffer with PREDICTB. */
static void cmd_learn_guarded(om_device_t *d, char **w, int nw)
{
    if (nw >= 2 && (strcmp(w[1], "LOAD") == 0 || strcmp(w[1], "UPDATE") == 0) && d->up_active) {
        om_reply_err(d, "busy", "a MODEL upload is in flight: finish it first");
        return;
    }
    if (nw >= 2 && (strcmp(w[1], "TRAIN") == 0 || strcmp(w[1], "EVAL") == 0)) d->pb_active = 0;
    om_cmd_learn(d, w, nw);
}

static void handle_line(om_device_t *d, char *line)
{
    char *w[6];
    int nw = 0;
    char *p = line;
    while (*p && nw < 6) {
        while (*p == ' ') *p++ = '\0';
        if (!*p) break;
        w[nw++] = p;
        while (*p && *p != ' ') p++;
    }
    while (*p == ' ') p++;
    if (nw == 0) return;                      /* empty line: nothing to answer */
    if (*p) { om_reply_err(d, "args", "too many words"); return; }
    if (strcmp(w[0], "HELLO") == 0) {
        uint32_t v;   /* HELLO <n>: the host speaks up to n; answer in the highest both speak */
        if (nw == 2 && om_parse_u32(w[1], &v) && v >= 1) cmd_hello(d, v < OM_PROTO ? (int)v : OM_PROTO);
        else om_reply_err(d, "args", "usage: HELLO <protocol> (this device speaks 1 to 3)");
    } else if (strcmp(w[0], "STREAM") == 0) cmd_stream(d, w, nw);
    else if (strcmp(w[0], "STOP") == 0) {
        if (nw == 1) cmd_stop(d); else om_reply_err(d, "args", "usage: STOP");
    } else if (strcmp(w[0], "MODEL") == 0) cmd_model(d, w, nw);
    else if (strcmp(w[0], "PREDICT") == 0) cmd_predict(d, w, nw);
    else if (strcmp(w[0], "PREDICTB") == 0) { d->ln_mode = d->ln_mode == 1 ? 1 : 0; cmd_predictb(d, w, nw); }
    else if (strcmp(w[0], "LEARN") == 0) cmd_learn_guarded(d, w, nw);
    else om_reply_err(d, "unknown", "unknown command (HELLO, STREAM, STOP, MODEL, PREDICT, PREDICTB, LEARN)");
}

void om_feed(om_device_t *d, const unsigned char *data, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++) {
        unsigned char c = data[i];
        if (c == '\n') {
            int binary = 0;
            size_t k;
            if (d->len > 0 && d->line[d->len - 1] == '\r') d->len--;
            d->line[d->len] = '\0';
            for (k = 0; k < d->len; k++)
                if ((unsigned char)d->line[k] < 0x20 || (unsigned char)d->line[k] == 0x7f) binary = 1;
            if (d->overlong) om_reply_err(d, "size", "line longer than 256 bytes");
            else if (binary) om_reply_err(d, "args", "control or NUL bytes in the line");
            else handle_line(d, d->line);
            d->len = 0;
            d->overlong = 0;
        } else if (d->overlong) {
            continue;
        } else if (d->len >= OM_LINE_MAX - 1) {   /* no room left for this byte and the newline */
            d->overlong = 1;
        } else {
            d->line[d->len++] = (char)c;
        }
    }
}

void om_poll(om_device_t *d)
{
    int burst = 0;
    uint64_t now = d->board.micros(d->board.ctx);
    while (d->streaming && burst < OM_BURST) {
        uint64_t due = om_next_due_us(d);
        float v;
        const om_signal_t *s;
        if (now < due) break;
        s = &d->board.signals[d->sig];
        v = d->board.read(d->board.ctx, d->sig, due);
        if (isfinite(v))
            om_emit(d, snprintf(d->out, sizeof d->out, "{\"s\":\"%s\",\"n\":%lu,\"t\":%lu,\"v\":%.7g}", s->name,
                             (unsigned long)d->n, (unsigned long)(due / 1000u), (double)v));
        else
            om_emit(d, snprintf(d->out, sizeof d->out, "{\"s\":\"%s\",\"n\":%lu,\"t\":%lu,\"v\":null}", s->name,
                             (unsigned long)d->n, (unsigned long)(due / 1000u)));
        d->n++;
        d->sent = d->n;
        burst++;
        if (d->count && d->n >= d->count) d->streaming = 0;
    }
}
