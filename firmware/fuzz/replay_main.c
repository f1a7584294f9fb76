/* Runs the fuzz entry point without libFuzzer (plain gcc): every corpus file given, then N
 * random and mutated inputs. Usage: fuzz-replay [-n N] [files...] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t rng = 2463534242u;
static uint32_t next(void) { rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5; return rng; }

int main(int argc, char **argv)
{
    static uint8_t buf[4096], seeds[64][1024];
    static size_t seed_len[64];
    int i, n = 10000, nseeds = 0;
    for (i = 1; i < argc; i++) {
        FILE *f;
        size_t len;
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) { n = atoi(argv[++i]); continue; }
        f = fopen(argv[i], "rb");
        if (!f) { perror(argv[i]); return 2; }
        len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, len);
        if (nseeds < 64) { size_t k = len < 1024 ? len : 1024; memcpy(seeds[nseeds], buf, k); seed_len[nseeds++] = k; }
    }
    for (i = 0; i < n; i++) {
        size_t len, k;
        if (nseeds && (i & 1)) {          /* mutate a seed: flip, insert, splice */
            int s = (int)(next() % (uint32_t)nseeds);
            len = seed_len[s];
            memcpy(buf, seeds[s], len);
            for (k = 0; k < 1 + next() % 8; k++) {
                uint32_t r = next();
                if (len && (r & 3) == 0) buf[r % len] ^= (uint8_t)(1u << (r >> 8 & 7));
                else if ((r & 3) == 1 && len < sizeof buf - 1) buf[len++] = (uint8_t)(r >> 8);
                else if (len && (r & 3) == 2) buf[r % len] = (uint8_t)"\n \r,0129AZ=+/"[(r >> 8) % 13];
                else if (len) len = r % len;
            }
        } else {
            len = next() % 600;
            for (k = 0; k < len; k++) {
                uint32_t r = next();
                buf[k] = (r & 7) == 0 ? '\n' : (r & 7) == 1 ? ' ' : (uint8_t)(r >> 8);
            }
        }
        LLVMFuzzerTestOneInput(buf, len);
    }
    printf("fuzz replay: %d corpus files, %d generated inputs, no crash\n", argc > 1 ? nseeds : 0, n);
    return 0;
}
