/* openmind device core: PROTOCOL.md v1 and docs/protocol-v2.md over any byte stream. Portable C99, no heap, no board calls.
 *
 * The board gives the core a write function, a clock and a sensor read function (om_board_t);
 * it feeds received bytes with om_feed() and calls om_poll() whenever it can (at least as often
 * as the fastest stream it offers; om_next_due_us() says when the next sample is due).
 */
#ifndef OM_CORE_H
#define OM_CORE_H

#include <stddef.h>
#include <stdint.h>

#define OM_PROTO 2                /* highest protocol spoken; HELLO 1 still gets the v1 answer */
#define OM_FW_VERSION "0.2.0"
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
    unsigned char pb_row[OM_MAX_WIDTH * 4];
    char out[OM_OUT_MAX];
} om_device_t;

void om_init(om_device_t *d, const om_board_t *board);
/* Installs a model compiled into the firmware (the header `openmind.deploy(model, "x.h")` writes). */
int om_load_model(om_device_t *d, const unsigned char *blob, size_t len);
void om_feed(om_device_t *d, const unsigned char *data, size_t len);
void om_poll(om_device_t *d);
/* When the next sample is due (board clock, microseconds), or UINT64_MAX when no stream runs. */
uint64_t om_next_due_us(const om_device_t *d);

#endif
