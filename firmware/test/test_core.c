/* Unit tests of the core: the line parser with malformed, overlong and binary lines, stream
 * scheduling, CRC-32, base64 and model upload. Exit status 0 = all passed. */
#include <stdio.h>
#include <string.h>

#include "om_core.h"

static char g_out[1 << 16];
static size_t g_len;
static uint64_t g_now;
static int g_fail, g_checks;

static void t_write(void *ctx, const char *data, size_t len)
{
    (void)ctx;
    if (g_len + len < sizeof g_out) { memcpy(g_out + g_len, data, len); g_len += len; g_out[g_len] = 0; }
}
static float t_read(void *ctx, int sig, uint64_t now) { (void)ctx; return (float)sig + (float)(now % 1000u) / 1000.0f; }
static uint64_t t_micros(void *ctx) { (void)ctx; return g_now; }

static const om_signal_t SIGS[] = {{"temperature", "C", 50}, {"fast", "V", 1000}};
static om_device_t dev;

#define CHECK(cond) do { g_checks++; if (!(cond)) { g_fail++; fprintf(stderr, "%s:%d: CHECK failed: %s\n  output: %s\n", __FILE__, __LINE__, #cond, g_out); } } while (0)

static void reset(void)
{
    om_board_t b = {t_write, t_read, t_micros, NULL, SIGS, 2, "test"};
    om_init(&dev, &b);
    g_len = 0; g_out[0] = 0; g_now = 1000000;
}
static void feed(const char *s) { g_len = 0; g_out[0] = 0; om_feed(&dev, (const unsigned char *)s, strlen(s)); }
static void feedn(const void *s, size_t n) { g_len = 0; g_out[0] = 0; om_feed(&dev, (const unsigned char *)s, n); }
static int lines(void) { int n = 0; size_t i; for (i = 0; i < g_len; i++) n += g_out[i] == '\n'; return n; }
static int has(const char *s) { return strstr(g_out, s) != NULL; }

static void test_hello(void)
{
    reset();
    feed("HELLO 1\n");
    CHECK(has("{\"hello\":\"openmind\",\"proto\":1,\"fw\":\"" OM_FW_VERSION "\",\"board\":\"test\",\"signals\":[{\"name\":\"temperature\",\"unit\":\"C\",\"max_rate_hz\":50},{\"name\":\"fast\""));
    CHECK(lines() == 1 && has("1000}]}\n") && !has("limits"));   /* the pinned v1 answer, nothing added */
    feed("HELLO 1\r\n");          /* CR before LF is ignored */
    CHECK(has("\"hello\":\"openmind\""));
    feed("HEL");                  /* split across reads */
    CHECK(g_len == 0);
    feed("LO 1\n");
    CHECK(has("\"hello\""));
    feed("HELLO 2\n");           /* protocol 2: the same answer plus the board's limits */
    CHECK(lines() == 1 && has("\"proto\":2,") && has("1000}],\"limits\":{\"model_max\":16384,\"max_width\":256,"
                              "\"max_layers\":8,\"line_max\":256,\"b64_max\":192,\"out_max\":1536}}\n"));
    feed("HELLO 3\n");           /* protocol 3: the limits plus what learning holds */
    CHECK(lines() == 1 && has("\"proto\":3,") && has("\"out_max\":1536},\"learn\":{\"rule\":\"tern-int16-v1\","));
    feed("HELLO 7\n");           /* a newer host: answered in the highest protocol both speak */
    CHECK(has("\"proto\":3,"));
    feed("HELLO 0\n");
    CHECK(has("\"error\":\"args\""));
    feed("HELLO two\n");
    CHECK(has("\"error\":\"args\""));
}

static void test_malformed(void)
{
    static const char *bad[] = {"BLAH\n", "hello 1\n", "STREAM\n", "STREAM temperature\n",
        "STREAM nosuch 1\n", "STREAM temperature 0\n", "STREAM temperature -5\n", "STREAM temperature 51\n",
        "STREAM temperature 1x\n", "STREAM temperature 1 0\n", "STREAM temperature 1 -3\n",
        "STREAM temperature 1 99999999999\n", "STREAM temperature 1 2 3\n", "STOP now\n",
        "MODEL\n", "MODEL DATA AAAA\n", "MODEL END\n", "MODEL BEGIN 10\n", "MODEL BEGIN x 1\n",
        "MODEL BEGIN 10 xyz\n", "MODEL BEGIN 10 123456789\n", "PREDICT 1,2\n", "a b c d e f g h\n", "{}\n"};
    size_t i;
    reset();
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        feed(bad[i]);
        CHECK(lines() == 1 && has("\"ok\":false"));
    }
    feed("PREDICT 1,2\n");
    CHECK(has("\"error\":\"nomodel\""));
    feed("FOO\n");
    CHECK(has("\"error\":\"unknown\""));
    feed("\n\r\n   \n");       /* empty lines: no answer */
    CHECK(g_len == 0);
    feed("HELLO 1\n");         /* still usable */
    CHECK(has("\"hello\""));
}

static void test_overlong_and_binary(void)
{
    char big[1000];
    unsigned char bin[] = {'H', 'E', 0, 'L', 'O', ' ', '1', '\n'};
    unsigned char hi[] = {0xff, 0xfe, 0x80, '\n'};
    reset();
    memset(big, 'A', sizeof big);
    big[sizeof big - 1] = '\n';
    feedn(big, sizeof big);
    CHECK(lines() == 1 && has("\"error\":\"size\""));
    /* exactly 255 bytes + newline is allowed (a 256-byte line), 256 + newline is not */
    memset(big, ' ', 255); memcpy(big, "HELLO 1", 7); big[255] = '\n';
    feedn(big, 256);
    CHECK(has("\"hello\""));
    memset(big, ' ', 256); memcpy(big, "HELLO 1", 7); big[256] = '\n';
    feedn(big, 257);
    CHECK(has("\"error\":\"size\""));
    feedn(bin, sizeof bin);
    CHECK(lines() == 1 && has("\"error\":\"args\""));
    feedn(hi, sizeof hi);
    CHECK(lines() == 1 && has("\"error\":\"unknown\""));
    feed("HELLO 1\n");
    CHECK(has("\"hello\""));
}

static void test_stream(void)
{
    reset();
    feed("STREAM fast 1000 5\n");
    CHECK(has("{\"ok\":true}"));
    CHECK(om_next_due_us(&dev) == g_now);
    g_len = 0;
    g_now += 2500;             /* 2.5 ms later: samples 0, 1, 2 are due */
    om_poll(&dev);
    CHECK(lines() == 3 && has("\"n\":0,") && has("\"n\":2,") && !has("\"n\":3,"));
    CHECK(has("{\"s\":\"fast\",\"n\":1,\"t\":1001,"));
    CHECK(om_next_due_us(&dev) == 1003000);
    feed("STREAM fast 10\n");
    CHECK(has("\"error\":\"busy\""));
    g_len = 0;
    g_now += 100000;
    om_poll(&dev);
    CHECK(lines() == 2 && has("\"n\":4,"));   /* count 5 reached: stream ends */
    CHECK(om_next_due_us(&dev) == UINT64_MAX);
    feed("STOP\n");
    CHECK(has("{\"ok\":true,\"sent\":5}"));
    feed("STREAM temperature 2.5\n");
    CHECK(has("{\"ok\":true}"));
    g_len = 0;
    g_now += 10000000;         /* far behind: at most a burst per poll, none skipped */
    om_poll(&dev);
    CHECK(lines() == 26);
    feed("STOP\n");
    CHECK(has("\"sent\":26"));
}

static void test_crc_b64(void)
{
    unsigned char out[16];
    CHECK(om_crc32(0, (const unsigned char *)"123456789", 9) == 0xCBF43926u);
    CHECK(om_b64_decode("aGVsbG8=", 8, out, sizeof out) == 5 && memcmp(out, "hello", 5) == 0);
    CHECK(om_b64_decode("aGk=", 4, out, sizeof out) == 2);
    CHECK(om_b64_decode("aGVsbG8", 7, out, sizeof out) == -1);
    CHECK(om_b64_decode("a=Vs", 4, out, sizeof out) == -1);
    CHECK(om_b64_decode("aGVs!G8=", 8, out, sizeof out) == -1);
    CHECK(om_b64_decode("aGVsbG8=", 8, out, 4) == -1);
    {
        char enc[16];
        unsigned char back[16];
        size_t n;
        for (n = 0; n <= 5; n++) {   /* every padding case round-trips */
            long e = om_b64_encode((const unsigned char *)"hello", n, enc, sizeof enc);
            CHECK(e == (long)((n + 2) / 3 * 4) && om_b64_decode(enc, (size_t)e, back, sizeof back) == (long)n &&
                  memcmp(back, "hello", n) == 0);
        }
        CHECK(om_b64_encode((const unsigned char *)"hello", 5, enc, 8) == -1);   /* 8 chars + NUL */
        CHECK(om_b64_encode((const unsigned char *)"hello", 5, enc, 9) == 8 && strcmp(enc, "aGVsbG8=") == 0);
    }
}

/* A 2-input, 2-layer model built by hand: checks the loader and the arithmetic. */
static size_t tiny_model(unsigned char *b)
{
    size_t p = 0;
    float f;
    int i;
    const float mean[2] = {1.0f, 0.0f}, inv[2] = {0.5f, 1.0f};
    memcpy(b, "OMT1", 4); p = 4;
    b[p++] = 1; b[p++] = 0; b[p++] = 2; b[p++] = 0; b[p++] = 2; b[p++] = 0; b[p++] = 2; b[p++] = 0;
    for (i = 0; i < 2; i++) { f = mean[i]; memcpy(b + p, &f, 4); p += 4; }
    for (i = 0; i < 2; i++) { f = inv[i]; memcpy(b + p, &f, 4); p += 4; }
    /* layer 1: 2 -> 2 relu, per-row scale; weights [[+1,-1],[0,+1]] -> codes 2,0,1,2 */
    b[p++] = 2; b[p++] = 0; b[p++] = 2; b[p++] = 0; b[p++] = 1; b[p++] = 1; b[p++] = 0; b[p++] = 0;
    b[p++] = (unsigned char)(2 | (0 << 2) | (1 << 4) | (2 << 6));
    f = 2.0f; memcpy(b + p, &f, 4); p += 4; f = 1.0f; memcpy(b + p, &f, 4); p += 4;
    f = 0.5f; memcpy(b + p, &f, 4); p += 4; f = -1.0f; memcpy(b + p, &f, 4); p += 4;
    /* layer 2: 2 -> 2 none, one scale; weights [[+1,+1],[-1,0]] -> codes 2,2,0,1 */
    b[p++] = 2; b[p++] = 0; b[p++] = 2; b[p++] = 0; b[p++] = 0; b[p++] = 0; b[p++] = 0; b[p++] = 0;
    b[p++] = (unsigned char)(2 | (2 << 2) | (0 << 4) | (1 << 6));
    f = 3.0f; memcpy(b + p, &f, 4); p += 4;
    f = 0.0f; memcpy(b + p, &f, 4); p += 4; f = 1.0f; memcpy(b + p, &f, 4); p += 4;
    return p;
}

static void test_model(void)
{
    unsigned char b[128], bad[128];
    char cmd[300];
    om_model_t m;
    float x[2] = {3.0f, 0.5f}, s[2];
    size_t n = tiny_model(b);
    CHECK(om_model_parse(b, n, &m) == OM_MODEL_OK);
    /* x' = (1, 0.5); h = relu([(1-0.5)*2+0.5, 0.5*1-1]) = (1.5, 0); y = [1.5*3, -1.5*3+1] */
    CHECK(om_model_predict(&m, x, s) == 0 && s[0] == 4.5f && s[1] == -3.5f);
    CHECK(om_model_parse(b, n - 1, &m) == OM_MODEL_SHORT);
    memcpy(bad, b, n); bad[n] = 0;
    CHECK(om_model_parse(bad, n + 1, &m) == OM_MODEL_TRAILING);
    memcpy(bad, b, n); bad[0] = 'X';
    CHECK(om_model_parse(bad, n, &m) == OM_MODEL_MAGIC);
    memcpy(bad, b, n); bad[12 + 16 + 8] = 0xff;  /* trit code 11 */
    CHECK(om_model_parse(bad, n, &m) == OM_MODEL_TRIT);
    memcpy(bad, b, n); bad[12 + 16 + 4] = 2;     /* activation 2 */
    CHECK(om_model_parse(bad, n, &m) == OM_MODEL_FIELD);
    memcpy(bad, b, n); bad[12 + 16] = 3;         /* first layer in != n_inputs */
    CHECK(om_model_parse(bad, n, &m) == OM_MODEL_SHAPE);

    /* upload over the protocol: base64 of the blob in one DATA line */
    reset();
    {
        static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        char b64[200];
        size_t i, o = 0;
        for (i = 0; i < n; i += 3) {
            unsigned v = (unsigned)b[i] << 16 | (i + 1 < n ? (unsigned)b[i + 1] << 8 : 0) | (i + 2 < n ? b[i + 2] : 0);
            b64[o++] = tbl[(v >> 18) & 63]; b64[o++] = tbl[(v >> 12) & 63];
            b64[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
            b64[o++] = i + 2 < n ? tbl[v & 63] : '=';
        }
        b64[o] = 0;
        sprintf(cmd, "MODEL BEGIN %lu %08lx\n", (unsigned long)n, (unsigned long)(om_crc32(0, b, n) ^ 1u));
        feed(cmd); CHECK(has("{\"ok\":true}"));
        sprintf(cmd, "MODEL DATA %s\n", b64);
        feed(cmd); CHECK(has("\"got\":"));
        feed("MODEL END\n"); CHECK(has("\"error\":\"crc\""));
        feed("PREDICT 3,0.5\n"); CHECK(has("nomodel"));
        sprintf(cmd, "MODEL BEGIN %lu %08lx\n", (unsigned long)n, (unsigned long)om_crc32(0, b, n));
        feed(cmd);
        sprintf(cmd, "MODEL DATA %s\n", b64);
        feed(cmd);
        feed("MODEL END\n"); CHECK(has("{\"ok\":true,\"inputs\":2,\"outputs\":2}"));
        feed("PREDICT 3,0.5\n"); CHECK(has("{\"y\":0,\"scores\":[4.5,-3.5]}"));
        feed("PREDICT 3,nan\n"); CHECK(has("\"error\":\"args\""));
        feed("PREDICT 3\n"); CHECK(has("fewer"));
        feed("PREDICT 3,1,1\n"); CHECK(has("more"));
        feed("PREDICT 3,,1\n"); CHECK(has("\"error\":\"args\""));
    }
}

static void upload(const unsigned char *b, size_t n)
{
    char cmd[300], b64[200];
    sprintf(cmd, "MODEL BEGIN %lu %08lx\n", (unsigned long)n, (unsigned long)om_crc32(0, b, n));
    feed(cmd);
    om_b64_encode(b, n, b64, sizeof b64);
    sprintf(cmd, "MODEL DATA %s\n", b64);
    feed(cmd);
    feed("MODEL END\n");
}

/* PREDICTB DATA with these bytes; returns the answer lines in g_out. */
static void pb_data(const unsigned char *bytes, size_t n)
{
    char cmd[300], b64[200];
    om_b64_encode(bytes, n, b64, sizeof b64);
    sprintf(cmd, "PREDICTB DATA %s\n", b64);
    feed(cmd);
}

static void put_f32(unsigned char *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    p[0] = (unsigned char)u; p[1] = (unsigned char)(u >> 8); p[2] = (unsigned char)(u >> 16); p[3] = (unsigned char)(u >> 24);
}

static void test_predictb(void)
{
    unsigned char b[128], rows[3 * 8];
    size_t n = tiny_model(b);
    reset();
    feed("PREDICTB BEGIN 1\n"); CHECK(has("\"error\":\"nomodel\""));
    upload(b, n);
    CHECK(has("{\"ok\":true,\"inputs\":2,\"outputs\":2}"));
    feed("PREDICTB DATA AAAA\n"); CHECK(has("before PREDICTB BEGIN"));
    feed("PREDICTB BEGIN 0\n"); CHECK(has("\"error\":\"args\""));
    feed("PREDICTB BEGIN x\n"); CHECK(has("\"error\":\"args\""));
    feed("PREDICTB BEGIN 1000000000\n"); CHECK(has("\"error\":\"size\""));
    feed("PREDICTB\n"); CHECK(has("\"error\":\"args\""));
    /* three rows: (3, 0.5) -> [4.5, -3.5]; (1, 0) -> h = relu([0.5, -1]) -> [1.5, -0.5]; NaN row */
    put_f32(rows, 3.0f); put_f32(rows + 4, 0.5f);
    put_f32(rows + 8, 1.0f); put_f32(rows + 12, 0.0f);
    put_f32(rows + 16, 1.0f); memset(rows + 20, 0xff, 4);
    feed("PREDICTB BEGIN 3\n"); CHECK(has("{\"ok\":true,\"rows\":3,\"bytes\":24}"));
    pb_data(rows, 5);             /* a row split across DATA lines: nothing answered yet */
    CHECK(lines() == 1 && has("{\"ok\":true,\"got\":5,\"rows\":0}"));
    pb_data(rows + 5, 14);        /* completes rows 0 and 1 */
    /* 4.5f = 00 00 90 40, -3.5f = 00 00 60 c0 -> base64 AACQQAAAYMA= */
    CHECK(lines() == 3 && has("{\"r\":0,\"y\":0,\"b\":\"AACQQAAAYMA=\"}\n"));
    /* 1.5f = 00 00 c0 3f, -0.5f = 00 00 00 bf */
    CHECK(has("{\"r\":1,\"y\":0,\"b\":\"AADAPwAAAL8=\"}\n") && has("{\"ok\":true,\"got\":19,\"rows\":2}"));
    pb_data(rows + 19, 5);        /* the NaN row: refused, the batch still completes */
    CHECK(lines() == 2 && has("{\"r\":2,\"ok\":false,\"error\":\"args\"") && has("\"rows\":3,\"done\":true}"));
    pb_data(rows, 4); CHECK(has("before PREDICTB BEGIN"));
    feed("PREDICTB BEGIN 1\n");
    pb_data(rows, 12);            /* more bytes than the batch holds: aborted */
    CHECK(lines() == 1 && has("\"error\":\"size\""));
    pb_data(rows, 8); CHECK(has("before PREDICTB BEGIN"));
    feed("PREDICTB BEGIN 1\n");
    feed("PREDICTB DATA AA!A\n"); CHECK(has("\"error\":\"size\""));
    feed("PREDICTB BEGIN 2\n");
    pb_data(rows, 8); CHECK(lines() == 2);
    upload(b, n);                 /* a new model ends the batch in flight */
    pb_data(rows, 8); CHECK(has("before PREDICTB BEGIN"));
    feed("PREDICT 3,0.5\n"); CHECK(has("{\"y\":0,\"scores\":[4.5,-3.5]}"));   /* v1 PREDICT unchanged */
}

int main(void)
{
    test_hello();
    test_malformed();
    test_overlong_and_binary();
    test_stream();
    test_crc_b64();
    test_model();
    test_predictb();
    printf("%d checks, %d failed\n", g_checks, g_fail);
    return g_fail ? 1 : 0;
}
