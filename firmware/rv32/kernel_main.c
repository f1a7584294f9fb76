/* The packed-model kernel as a program: the same source runs on the host and, built for rv32imc
 * (the ESP32-C3's ISA: no FPU, soft float) with picolibc, under qemu-system-riscv32 with
 * semihosting for its output.
 *
 * The model and the rows come compiled in (ROWS_HEADER: om_model_blob[], om_rows[][n_inputs],
 * OM_ROWS, written by the test). It prints the protocol-2 HELLO the core answers, then one line a
 * row: "<row> <class> <score bits as 8 hex digits>...", so scores compare bit for bit as text.
 */
#include <stdio.h>
#include <string.h>

#include "om_core.h"
#include ROWS_HEADER

static void out_write(void *ctx, const char *data, size_t len)
{
    (void)ctx;
    fwrite(data, 1, len, stdout);
}
static float no_read(void *ctx, int sig, uint64_t now) { (void)ctx; (void)sig; (void)now; return 0.0f; }
static uint64_t no_clock(void *ctx) { (void)ctx; return 0; }

static const om_signal_t SIGNALS[] = {{"none", "-", 1}};
static om_device_t dev;   /* static: the core never touches the heap */

int main(void)
{
    om_board_t board = {out_write, no_read, no_clock, NULL, SIGNALS, 1, OM_BOARD_NAME};
    float scores[OM_MAX_WIDTH];
    unsigned r, o;
    int rc;
    om_init(&dev, &board);
    om_feed(&dev, (const unsigned char *)"HELLO 2\n", 8);
    rc = om_load_model(&dev, om_model_blob, sizeof om_model_blob);
    if (rc != OM_MODEL_OK) {
        printf("model error: %s\n", om_model_error(rc));
        return 1;
    }
    for (r = 0; r < OM_ROWS; r++) {
        int y = om_model_predict(&dev.model, om_rows[r], scores);
        printf("%u %d", r, y);
        for (o = 0; o < dev.model.n_outputs; o++) {
            uint32_t u;
            memcpy(&u, &scores[o], sizeof u);
            printf(" %08lx", (unsigned long)u);
        }
        printf("\n");
    }
    printf("done %u rows\n", OM_ROWS);
    return 0;
}
