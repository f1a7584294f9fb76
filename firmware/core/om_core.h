/* openmind device core: PROTOCOL.md v1, docs/protocol-v2.md and docs/protocol-v3.md (learning on the device) over any
 * byte stream. Portable C99, no heap, no board calls.
 *
 * The board gives the core a write function, a clock and a sensor read function (om_board_t);
 * it feeds received bytes with om_feed() and calls om_poll() whenever it can (at least as often
 * as the fastest stream it offers; om_next_due_us() says when the next sample is due).
 */
#ifndef OM_CORE_H
#define OM_CORE_H

#include <stddef.h>
#include <stdint.h>

#define OM_PROTO 3                /* highest protocol spoken; HELLO 1 still gets the v1 answer */
#define OM_FW_VERSION "0.3.0"
#define OM_LINE_MAX 256          /* bytes a line, newline included (PROTOCOL.md) */
#ifndef OM_MODEL_MAX
#define OM_MODEL_MAX 16384       /* largest packed model the device accepts */
#endif
#define OM_MAX_LAYERS 8
#define OM_MAX_WIDTH 256         /* widest layer (inputs included) */
#define OM_B64_MAX 192           /* MODEL DATA payload, characters */
#define OM_OUT_MAX 1536          /* longest answer line, newline included (v2 HELLO "limits") */
#define OM_BURST 64              /* samples at most per om_poll(), so commands keep being read */

/* ---------------------------------------------------------------- CRC-32 (zlib) and base64 */
uint32_t om_crc32(uint32_t crc, const unsigned char *data, size_t len);
/* Decodes standard base64 with padding; returns bytes written or -1 if malformed or > cap. */
long om_b64_decode(const char *text, size_t len, unsigned char *out, size_t cap);
/* Encodes `len` bytes as padded base64 plus a NUL; returns characters written (without the NUL)
 * or -1 when `cap` cannot hold them. */
long om_b64_encode(const unsigned char *data, size_t len, char *out, size_t cap);

/* ---------------------------------------------------------------- packed ternary model */
typedef struct {
    uint16_t in, out;
    uint8_t act, scale_mode;
    const unsigned char *trits, *scale, *bias;   /* into the blob; read as little-endian */
} om_layer_t;

typedef struct {
    const unsigned char *blob;
    size_t len;
    uint16_t n_layers, n_inputs, n_outputs;
    const unsigned char *mean, *inv_std;
    om_layer_t layers[OM_MAX_LAYERS];
} om_model_t;

enum { OM_MODEL_OK = 0, OM_MODEL_SHORT, OM_MODEL_MAGIC, OM_MODEL_VERSION, OM_MODEL_SHAPE,
       OM_MODEL_FIELD, OM_MODEL_TRIT, OM_MODEL_TRAILING };

/* Validates a packed model (docs/packed-format.md) and points `m` into it (no copy). */
int om_model_parse(const unsigned char *blob, size_t len, om_model_t *m);
const char *om_model_error(int code);
/* Runs the model on x[n_inputs]; writes n_outputs scores, returns the predicted class.
 * Bit-exact with the numpy reference (float32, ordered sums, no FMA). */
int om_model_predict(const om_model_t *m, const float *x, float *scores);

/* The scores of all layers but the last: writes the last layer's input h[layers[n-1].in]
 * (the standardised x for a one-layer model); bit-exact like om_model_predict. */
void om_model_hidden(const om_model_t *m, const float *x, float *h);

/* ---------------------------------------------------------------- learning on the device (om_learn.c)
 * The last layer of the model is learned; the others stay frozen ternary. Integer arithmetic only:
 * latent weights W[o][i] int16 (real value W * 2^-frac_w), inputs q[i] int8 (h quantised with a
 * power of two, q = trunc(h * 2^shift_q) clamped to +-127), bias B[o] int32 in logit units
 * 2^-(frac_w + shift_q). A step: ternarise each row of W (TWN: |w| > 0.7 mean|w|, scale = mean of the
 * kept |w|), logits z = alpha * sum(t * q) + B, a base-2 integer softmax in Q15, error g = p - onehot,
 * W -= g * q / 2^lr_shift and B -= g / 2^bias_shift, both with stochastic rounding (om_draw).
 * The update is ternarised the same way from W - W0 (W0: the loaded global weights). The Python
 * reference is openmind/pathways/ternary/learn.py; the two agree bit for bit. */
#ifndef OM_LEARN_MAX_W
#define OM_LEARN_MAX_W 4096      /* latent weights at most (outputs x inputs of the learned layer) */
#endif
#define OM_LEARN_MAX_OUT 32      /* outputs (classes) at most */
#define OM_LEARN_HEAD_MAGIC "OMLH"
#define OM_LEARN_HEAD_HDR 20     /* bytes of a head blob before its weights */

typedef struct {
    uint16_t in, out;
    uint8_t frac_w, lr_shift, flags;
    int8_t shift_q, bias_shift;
    uint32_t rng;                /* om_draw's counter */
    uint32_t steps, correct;     /* learning steps since the head was loaded; right before the step */
    int16_t w[OM_LEARN_MAX_W];   /* latent weights [out][in] */
    int16_t w0[OM_LEARN_MAX_W];  /* the loaded global weights, less the residual the last update left */
    int32_t b[OM_LEARN_MAX_OUT], b0[OM_LEARN_MAX_OUT];
} om_head_t;

enum { OM_HEAD_OK = 0, OM_HEAD_SHORT, OM_HEAD_MAGIC, OM_HEAD_SHAPE, OM_HEAD_FIELD };

/* lowbias32(*counter), then counter + 1: the rounding noise, reproducible from the head's seed. */
uint32_t om_draw(uint32_t *counter);
/* q[i] = clamp(trunc(h[i] * 2^shift), -127, 127); NaN -> 0. Exact: a power-of-two product. */
void om_learn_quantize(const float *h, int n, int shift, int8_t *q);
/* Parses a head blob (docs/protocol-v3.md) into `hd`: flags bit 0 carries the residual of the
 * update the previous head made (error feedback). Returns OM_HEAD_*. */
int om_learn_load(om_head_t *hd, const unsigned char *blob, size_t len);
const char *om_learn_error(int code);
/* Logits z[out] of q with the ternarised latent weights; returns the class (first on ties). */
int om_learn_forward(const om_head_t *hd, const int8_t *q, int64_t *z);
/* One learning step on (q, label); returns the class predicted before the step. */
int om_learn_step(om_head_t *hd, const int8_t *q, int label);
/* The update W - W0 (and B - B0) as an openmind ternary update layer ("OMTU": trits 5 a byte,
 * float16 scale and bias per row), the bytes the federation's server decodes; returns its length
 * or -1 when `cap` is too small. */
long om_learn_update(const om_head_t *hd, unsigned char *out, size_t cap);
/* The float16 bits of v * 2^-frac (round to nearest even, clipped to +-65504), integers only. */
uint16_t om_f16_scaled(int32_t v, int frac);

/* ---------------------------------------------------------------- colony vote */
#define OM_COLONY_MAX 16         /* members at most */
/* The vote of a colony of models sharing inputs and outputs, bit for bit what openmind's
 * Colony.vote(X, exact=True) returns: each member's scores (om_model_predict) -> softmax (with
 * om_exp_portable, float64); a member whose top probability is >= confidence gives +1 to that
 * class and -1 to each class below 0.1/outputs, else it abstains on the row; the class with the
 * most votes wins (ties: the highest mean probability, then the lowest index). Writes votes[outputs]
 * and *abstained (1 when fewer than `quorum` votes stand behind the winner); returns the winning
 * class index, or -1 when the members do not fit together (none, over OM_COLONY_MAX, other shapes).
 * Stack: about 20 bytes per output plus om_model_predict's buffers. */
int om_colony_vote(const om_model_t *members, int n_members, double confidence, int quorum,
                   const float *x, int *votes, int *abstained);
/* exp(x) for x <= 0 from + - * / alone (0 below -700): the same bits as openmind's numpy
 * portable_exp wherever the compiler keeps IEEE double arithmetic (-ffp-contract=off). */
double om_exp_portable(double x);

/* ---------------------------------------------------------------- the device */
typedef struct {
    const char *name;
    const char *unit;
    uint32_t max_rate_hz;
} om_signal_t;

typedef struct {
    void (*write)(void *ctx, const char *data, size_t len);
    float (*read)(void *ctx, int signal_index, uint64_t now_us);
    uint64_t (*micros)(void *ctx);
    void *ctx;
    const om_signal_t *signals;
    int n_signals;
    const char *board_name;
} om_board_t;

typedef struct {
    om_board_t board;
    /* line assembly */
    char line[OM_LINE_MAX + 1];
    size_t len;
    int overlong;
    /* stream scheduler */
    int streaming, sig;
    uint64_t period_us_x1000;   /* period in nanoseconds, so 3 Hz and 7 kHz stay exact enough */
    uint64_t start_us;
    uint32_t n, count, sent;
    /* model upload (staged, so a failed upload keeps the old model) */
    int up_active;
    uint32_t up_expect, up_got, up_crc;
    unsigned char stage[OM_MODEL_MAX];
    unsigned char active[OM_MODEL_MAX];
    om_model_t model;
    int has_model;
    /* PREDICTB (protocol 2): rows arrive as base64 float32 LE over DATA lines, are run as soon as
       one is complete, and need no buffer beyond one row */
    int pb_active;
    uint32_t pb_rows, pb_done, pb_got;
    size_t pb_fill;
    unsigned char pb_row[OM_MAX_WIDTH * 4 + 4];   /* + a label: LEARN TRAIN/EVAL rows share it */
    /* learning (protocol 3): the head, and the transfer in flight (a head blob lands in `stage`;
       rows of TRAIN / EVAL are run as they complete, like PREDICTB) */
    om_head_t head;
    int has_head;
    int ln_mode;                 /* 0 none, 1 LOAD, 2 TRAIN, 3 EVAL */
    uint32_t ln_expect, ln_got, ln_crc, ln_rows, ln_done, ln_correct, ln_bad;
    char out[OM_OUT_MAX];
} om_device_t;

void om_init(om_device_t *d, const om_board_t *board);
/* Installs a model compiled into the firmware (the header `openmind.deploy(model, "x.h")` writes). */
int om_load_model(om_device_t *d, const unsigned char *blob, size_t len);
void om_feed(om_device_t *d, const unsigned char *data, size_t len);
void om_poll(om_device_t *d);
/* Shared by the command files: answer lines. */
void om_emit(om_device_t *d, int n);
void om_reply_err(om_device_t *d, const char *code, const char *msg);
int om_parse_u32(const char *s, uint32_t *out);
int om_parse_hex32(const char *s, uint32_t *out);
/* LEARN ... (protocol 3, om_learn_proto.c); the HELLO 3 "learn" fields. */
void om_cmd_learn(om_device_t *d, char **w, int nw);
int om_learn_hello(const om_device_t *d, char *out, size_t cap);
/* When the next sample is due (board clock, microseconds), or UINT64_MAX when no stream runs. */
uint64_t om_next_due_us(const om_device_t *d);

#endif
