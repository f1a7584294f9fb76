/* The learning rule's transcript: random heads, random int8 inputs and labels, LEARN_CONFIGS x
 * LEARN_STEPS steps, each followed by a CRC-32 of the whole learning state; the update bytes at
 * mid-run (then a new head loaded with the residual carried) and at the end; the quantiser on
 * random float32 bit patterns and the float16 conversion on random integers. The same program
 * runs on the host and under qemu-system-riscv32; openmind.pathways.ternary.learn writes the same
 * text from its Python reference (`python -m openmind.pathways.ternary.learn --transcript`).
 * Everything is drawn from om_draw with a counter starting at LEARN_SEED. */
#include <stdio.h>
#include <string.h>

#include "om_core.h"

#ifndef LEARN_SEED
#define LEARN_SEED 1u
#endif
#ifndef LEARN_CONFIGS
#define LEARN_CONFIGS 8
#endif
#ifndef LEARN_STEPS
#define LEARN_STEPS 160
#endif

static uint32_t g_ctr = LEARN_SEED;
static om_head_t g_head;   /* static: no heap, and too big for a small stack */
static unsigned char g_blob[OM_LEARN_HEAD_HDR + 2 * OM_LEARN_MAX_W + 4 * OM_LEARN_MAX_OUT];
static unsigned char g_buf[2 * OM_LEARN_MAX_W + 4 * OM_LEARN_MAX_OUT + 8];

static uint32_t r(void) { return om_draw(&g_ctr); }
static int32_t uniform(int32_t lim) { return (int32_t)(r() % (2u * (uint32_t)lim + 1u)) - lim; }

static void put(unsigned char *p, uint32_t v, int n)
{
    int k;
    for (k = 0; k < n; k++) p[k] = (unsigned char)(v >> (8 * k));
}

/* A random head blob of the given shape and fields; returns its length. */
static size_t make_blob(unsigned in, unsigned out, const int *f, uint32_t seed, int carry)
{
    static const int32_t wlims[4] = {32767, 4096, 256, 16};
    int32_t wlim = wlims[r() % 4u], blim = 0x3fffffff >> (r() % 31u);
    size_t i, nw = (size_t)in * out, pos = OM_LEARN_HEAD_HDR;
    memcpy(g_blob, OM_LEARN_HEAD_MAGIC, 4);
    put(g_blob + 4, 1, 2); put(g_blob + 6, in, 2); put(g_blob + 8, out, 2);
    g_blob[10] = (unsigned char)f[0]; g_blob[11] = (unsigned char)(signed char)f[1];
    g_blob[12] = (unsigned char)f[2]; g_blob[13] = (unsigned char)(signed char)f[3];
    g_blob[14] = (unsigned char)carry; g_blob[15] = 0;
    put(g_blob + 16, seed, 4);
    for (i = 0; i < nw; i++, pos += 2) put(g_blob + pos, (uint32_t)uniform(wlim), 2);
    for (i = 0; i < out; i++, pos += 4) put(g_blob + pos, (uint32_t)uniform(blim), 4);
    return pos;
}

static uint32_t state_crc(const om_head_t *hd)
{
    size_t i, nw = (size_t)hd->in * hd->out, pos = 0;
    uint32_t crc;
    for (i = 0; i < nw; i++, pos += 2) put(g_buf + pos, (uint32_t)hd->w[i], 2);
    for (i = 0; i < hd->out; i++, pos += 4) put(g_buf + pos, (uint32_t)hd->b[i], 4);
    put(g_buf + pos, hd->rng, 4);
    crc = om_crc32(0, g_buf, pos + 4);
    for (i = 0, pos = 0; i < nw; i++, pos += 2) put(g_buf + pos, (uint32_t)hd->w0[i], 2);
    return om_crc32(crc, g_buf, pos);
}

static void print_update(int c)
{
    long n = om_learn_update(&g_head, g_buf, sizeof g_buf);
    printf("u %d %ld %08lx\n", c, n, (unsigned long)om_crc32(0, g_buf, (size_t)(n < 0 ? 0 : n)));
}

static int run_config(int c)
{
    int8_t q[OM_MAX_WIDTH];
    int f[4], k, rc, steps = 0;
    unsigned in = c == 0 ? 256u : 1u + r() % 64u, out = c == 0 ? 16u : 2u + r() % 11u, i;
    f[0] = (int)(r() % 16u);
    f[1] = (int)(r() % 25u) - 8;
    if (f[0] + f[1] < 0) f[1] = -f[0];
    if (f[0] + f[1] > 30) f[1] = 30 - f[0];
    f[2] = (int)(r() % 31u);
    f[3] = (int)(r() % 46u) - 15;
    rc = om_learn_load(&g_head, g_blob, make_blob(in, out, f, r(), 0));
    printf("cfg %d %u %u %d %d %d %d %d\n", c, in, out, f[0], f[1], f[2], f[3], rc);
    for (k = 0; k < LEARN_STEPS && rc == OM_HEAD_OK; k++) {
        int sparse = r() % 4u == 0u, y, label;
        if (k == LEARN_STEPS / 2) {   /* the round ends: read the update, load the next global head */
            print_update(c);
            rc = om_learn_load(&g_head, g_blob, make_blob(in, out, f, r(), 1));
            printf("l %d %d %08lx\n", c, rc, (unsigned long)state_crc(&g_head));
        }
        for (i = 0; i < in; i++) {
            uint32_t v = r();
            q[i] = (int8_t)((sparse && (v & 1u)) ? 0 : (int)((v >> 1) % 255u) - 127);
        }
        label = (int)(r() % out);
        y = om_learn_step(&g_head, q, label);
        printf("s %d %d %d %08lx\n", c, k, y, (unsigned long)state_crc(&g_head));
        steps++;
    }
    print_update(c);
    return steps;
}

static void check_quantize_and_f16(void)
{
    float h[64];
    int8_t q[64];
    uint32_t crc = 0;
    int k, i;
    for (k = 0; k < 40; k++) {
        int shift = (int)(r() % 25u) - 8;
        for (i = 0; i < 64; i++) {
            uint32_t bits = r();
            memcpy(&h[i], &bits, sizeof h[i]);
        }
        om_learn_quantize(h, 64, shift, q);
        crc = om_crc32(crc, (const unsigned char *)q, 64);
    }
    printf("q %08lx\n", (unsigned long)crc);
    crc = 0;
    for (k = 0; k < 4000; k++) {
        uint32_t x = r();
        int32_t v = (k & 1) ? (int32_t)x : uniform(0x3fffffff >> (r() % 31u));
        uint16_t bits = om_f16_scaled(v, (int)(r() % 31u));
        unsigned char b[2] = {(unsigned char)bits, (unsigned char)(bits >> 8)};
        crc = om_crc32(crc, b, 2);
    }
    printf("f %08lx\n", (unsigned long)crc);
}

int main(void)
{
    int c, steps = 0;
    printf("learn seed %lu head_ram %lu\n", (unsigned long)LEARN_SEED, (unsigned long)sizeof(om_head_t));
    for (c = 0; c < LEARN_CONFIGS; c++) steps += run_config(c);
    check_quantize_and_f16();
    printf("done %d steps\n", steps);
    return 0;
}
