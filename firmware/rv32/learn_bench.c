/* The learning step's cost on rv32imc: retired instructions (the instret CSR; qemu counts them
 * exactly with -icount shift=0) per learning step, per labelled sample (frozen layers + quantise +
 * step), per held-out row scored, per update, and per inference row as the anchor, plus the RAM
 * the learning state takes. BENCH_HEADER (written by bench/learn_bench.py) holds om_model_blob[],
 * om_head_blob[], OM_ROWS rows om_rows[][n_inputs] and om_labels[]. Builds on the host too
 * (instret then reads 0). It learns every row twice, so its last lines (held-out rows right,
 * the update's CRC-32) check the whole sample path on rv32imc against the Python reference. */
#include <stdio.h>
#include <string.h>

#include "om_core.h"
#include BENCH_HEADER

static om_device_t dev;   /* static, as on the board */

static uint64_t instret(void)
{
#if defined(__riscv) && __riscv_xlen == 32
    uint32_t hi, lo, hi2;
    do {   /* csrr of instreth / instret / instreth, encoded by hand: no Zicsr needed in -march */
        __asm__ volatile(".insn i 0x73, 2, %0, x0, -894" : "=r"(hi));   /* 0xC82 instreth */
        __asm__ volatile(".insn i 0x73, 2, %0, x0, -1022" : "=r"(lo));  /* 0xC02 instret */
        __asm__ volatile(".insn i 0x73, 2, %0, x0, -894" : "=r"(hi2));
    } while (hi != hi2);
    return ((uint64_t)hi << 32) | lo;
#else
    return 0;
#endif
}

static void out_write(void *ctx, const char *data, size_t len) { (void)ctx; (void)data; (void)len; }
static float no_read(void *ctx, int sig, uint64_t now) { (void)ctx; (void)sig; (void)now; return 0.0f; }
static uint64_t no_clock(void *ctx) { (void)ctx; return 0; }
static const om_signal_t SIGNALS[] = {{"none", "-", 1}};

int main(void)
{
    om_board_t board = {out_write, no_read, no_clock, NULL, SIGNALS, 1, "qemu-rv32imc"};
    float h[OM_MAX_WIDTH], scores[OM_MAX_WIDTH];
    int8_t q[OM_MAX_WIDTH];
    int64_t z[OM_LEARN_MAX_OUT];
    static int8_t qs[OM_ROWS][OM_MAX_WIDTH];
    static unsigned char upd[2 * OM_LEARN_MAX_W];
    uint64_t t0, t_pred, t_hidden, t_step, t_sample, t_eval, t_update;
    unsigned r, correct = 0;
    long n = 0;
    om_init(&dev, &board);
    if (om_load_model(&dev, om_model_blob, sizeof om_model_blob) != OM_MODEL_OK ||
        om_learn_load(&dev.head, om_head_blob, sizeof om_head_blob) != OM_HEAD_OK) {
        printf("bench: model or head did not load\n");
        return 1;
    }
    t0 = instret();
    for (r = 0; r < OM_ROWS; r++) om_model_predict(&dev.model, om_rows[r], scores);
    t_pred = instret() - t0;
    t0 = instret();
    for (r = 0; r < OM_ROWS; r++) {
        om_model_hidden(&dev.model, om_rows[r], h);
        om_learn_quantize(h, dev.head.in, dev.head.shift_q, qs[r]);
    }
    t_hidden = instret() - t0;
    t0 = instret();
    for (r = 0; r < OM_ROWS; r++) om_learn_step(&dev.head, qs[r], om_labels[r]);
    t_step = instret() - t0;
    t0 = instret();
    for (r = 0; r < OM_ROWS; r++) {   /* the whole sample, as LEARN TRAIN runs it */
        om_model_hidden(&dev.model, om_rows[r], h);
        om_learn_quantize(h, dev.head.in, dev.head.shift_q, q);
        om_learn_step(&dev.head, q, om_labels[r]);
    }
    t_sample = instret() - t0;
    t0 = instret();
    for (r = 0; r < OM_ROWS; r++) {
        om_model_hidden(&dev.model, om_rows[r], h);
        om_learn_quantize(h, dev.head.in, dev.head.shift_q, q);
        correct += om_learn_forward(&dev.head, q, z) == om_labels[r];
    }
    t_eval = instret() - t0;
    t0 = instret();
    n = om_learn_update(&dev.head, upd, sizeof upd);
    t_update = instret() - t0;
    printf("bench rows %u in %u out %u\n", OM_ROWS, (unsigned)dev.head.in, (unsigned)dev.head.out);
    printf("instret predict %llu hidden %llu step %llu sample %llu eval %llu update %llu\n",
           (unsigned long long)t_pred, (unsigned long long)t_hidden, (unsigned long long)t_step,
           (unsigned long long)t_sample, (unsigned long long)t_eval, (unsigned long long)t_update);
    printf("ram head %lu device %lu update_bytes %ld correct %u steps %lu\n", (unsigned long)sizeof(om_head_t),
           (unsigned long)sizeof(om_device_t), n, correct, (unsigned long)dev.head.steps);
    printf("update crc %08lx\n", (unsigned long)om_crc32(0, upd, n > 0 ? (size_t)n : 0u));
    return 0;
}
