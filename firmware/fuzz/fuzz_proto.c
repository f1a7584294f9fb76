/* libFuzzer entry point: any bytes fed to the device core must neither crash nor break a line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "om_core.h"

static uint64_t f_now;
static void f_write(void *ctx, const char *data, size_t len)
{
    (void)ctx;
    /* every answer is one newline-terminated line that starts like a JSON object */
    if (len == 0 || data[len - 1] != '\n' || data[0] != '{' || memchr(data, '\n', len) != data + len - 1) abort();
}
static float f_read(void *ctx, int sig, uint64_t now) { (void)ctx; return (float)sig + (float)now; }
static uint64_t f_micros(void *ctx) { (void)ctx; return f_now; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const om_signal_t sigs[] = {{"temperature", "C", 50}, {"adc", "raw", 1000}};
    static om_device_t dev;
    om_board_t b = {f_write, f_read, f_micros, NULL, sigs, 2, "fuzz"};
    size_t i, step;
    /* a 2-input, 2-output one-layer model (mean 0, inv_std 1, trits +1 -1 / -1 +1, scale 1, bias 0):
       inputs with an odd first byte start with it loaded, so PREDICT and PREDICTB run too */
    static const unsigned char tiny[49] = {
        'O', 'M', 'T', '1', 1, 0, 1, 0, 2, 0, 2, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x3f, 0, 0, 0x80, 0x3f,
        2, 0, 2, 0, 0, 0, 0, 0, 0x82, 0, 0, 0x80, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0};
    /* a learning head for it (OMLH: 2 in, 2 out, frac_w 12, shift_q 4, lr_shift 10, bias_shift 2):
       inputs whose first byte also has bit 1 set start with it, so LEARN TRAIN/EVAL/UPDATE run too */
    static const unsigned char head[44] = {
        'O', 'M', 'L', 'H', 1, 0, 2, 0, 2, 0, 12, 4, 10, 2, 0, 0, 7, 0, 0, 0,
        0, 0x10, 0, 0xf0, 0, 0xf0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    om_init(&dev, &b);
    if (size > 0 && (data[0] & 1u) && om_load_model(&dev, tiny, sizeof tiny) != OM_MODEL_OK) abort();
    if (size > 0 && (data[0] & 3u) == 3u) {
        if (om_learn_load(&dev.head, head, 36) != OM_HEAD_OK) abort();
        dev.has_head = 1;
    }
    f_now = 0;
    /* feed in uneven chunks, advancing time, so streams run between reads */
    for (i = 0; i < size; i += step) {
        step = 1 + (data[i] % 17);
        if (step > size - i) step = size - i;
        om_feed(&dev, data + i, step);
        f_now += 1500;
        om_poll(&dev);
    }
    /* the packed-model parser on raw bytes too */
    {
        om_model_t m;
        float x[OM_MAX_WIDTH] = {0}, s[OM_MAX_WIDTH];
        if (om_model_parse(data, size, &m) == OM_MODEL_OK) om_model_predict(&m, x, s);
    }
    return 0;
}
