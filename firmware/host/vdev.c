/* openmind-vdev: the firmware core as a virtual device on a pseudo-terminal.
 *
 * Prints "PTY <path>" on stdout, then serves PROTOCOL.md on that tty like a board on USB serial.
 * Sensors are simulated: temperature (C, 50 Hz), adc (raw 12-bit, 1 kHz), sine (V, 5 kHz).
 *   --boot-noise   when the host first writes (as a board reset by the port opening would), print
 *                  ROM garbage, ESP-IDF log lines and a half line before answering
 *   --log-every S  print an ESP-IDF style log line every S seconds (also mid-stream)
 *   --seed N       noise seed (default 1)
 */
#define _XOPEN_SOURCE 600
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "om_core.h"

#ifdef OM_MODEL_HEADER
#include OM_MODEL_HEADER
#endif

static const om_signal_t SIGNALS[] = {
    {"temperature", "C", 50},
    {"adc", "raw", 1000},
    {"sine", "V", 5000},
};

static int g_fd = -1;
static volatile sig_atomic_t g_stop = 0;
static uint32_t g_rng = 1;
static float g_ar = 0.0f;

static void on_signal(int sig) { (void)sig; g_stop = 1; }

static uint64_t host_micros(void *ctx)
{
    struct timespec ts;
    (void)ctx;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void host_write(void *ctx, const char *data, size_t len)
{
    (void)ctx;
    while (len > 0 && !g_stop) {
        ssize_t n = write(g_fd, data, len);
        if (n < 0) {
            if (errno == EINTR && !g_stop) continue;
            return;   /* stopping, or the pty is gone */
        }
        data += n;
        len -= (size_t)n;
    }
}

/* uniform in [-1, 1), xorshift32 */
static float noise(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 17;
    g_rng ^= g_rng << 5;
    return (float)((double)g_rng / 2147483648.0 - 1.0);
}

static float host_read(void *ctx, int sig, uint64_t now_us)
{
    double t = (double)now_us / 1e6;
    (void)ctx;
    switch (sig) {
    case 0: /* thermostat ripple: 23.5 C, +-0.8 C every 2 s, correlated sensor noise */
        g_ar = 0.8f * g_ar + 0.06f * noise();
        return (float)(23.5 + 0.8 * sin(2.0 * 3.14159265358979 * t / 2.0)) + g_ar;
    case 1: /* a floating ADC pin: around 1800 counts, hum at 50 Hz */
        return (float)floor(1800.0 + 40.0 * sin(2.0 * 3.14159265358979 * 50.0 * t) + 8.0 * noise());
    default:
        return (float)(1.65 + 1.2 * sin(2.0 * 3.14159265358979 * 7.0 * t));
    }
}

static void say(const char *text) { host_write(NULL, text, strlen(text)); }

static void boot_noise(void)
{
    unsigned char junk[48];
    size_t i;
    for (i = 0; i < sizeof junk; i++) {
        junk[i] = (unsigned char)(0x80u | (g_rng & 0x7fu));
        noise();
    }
    junk[sizeof junk - 1] = '\n';
    host_write(NULL, (const char *)junk, sizeof junk);
    say("ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n");
    say("I (29) boot: ESP-IDF v4.4.6 2nd stage bootloader\r\n");
    say("I (312) cpu_start: Starting scheduler on PRO CPU.\r\n");
    say("{\"s\":\"temperature\",\"n\":41,\"t\":12"); /* a half line left from before the reset */
    say("\r\n[not json] openmind vdev ready\r\n");
}

int main(int argc, char **argv)
{
    static om_device_t dev;
    om_board_t board;
    int i, boot = 0, slave;
    pid_t parent = getppid();
    double log_every = 0;
    uint64_t next_log = 0;
    char *path;
    struct termios tio;
    unsigned char buf[512];

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--boot-noise") == 0) boot = 1;
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) g_rng = (uint32_t)strtoul(argv[++i], NULL, 10) | 1u;
        else if (strcmp(argv[i], "--log-every") == 0 && i + 1 < argc) log_every = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--boot-noise] [--log-every SECONDS] [--seed N]\n", argv[0]);
            return 2;
        }
    }
    {   /* no SA_RESTART: a write blocked on a full pty returns EINTR, so SIGTERM always ends us */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
    }
    signal(SIGPIPE, SIG_IGN);
    g_fd = posix_openpt(O_RDWR | O_NOCTTY);
    if (g_fd < 0 || grantpt(g_fd) != 0 || unlockpt(g_fd) != 0 || (path = ptsname(g_fd)) == NULL) {
        perror("openmind-vdev: pty");
        return 1;
    }
    /* Hold the slave open in raw mode: a UART has no echo or line editing, and the device keeps
       running when the host closes the port, like a board on USB. */
    slave = open(path, O_RDWR | O_NOCTTY);
    if (slave < 0 || tcgetattr(slave, &tio) != 0) {
        perror("openmind-vdev: slave");
        return 1;
    }
    tio.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    tio.c_oflag &= ~(tcflag_t)OPOST;
    tio.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    tio.c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
    tio.c_cflag |= CS8;
    tcsetattr(slave, TCSANOW, &tio);

    board.write = host_write;
    board.read = host_read;
    board.micros = host_micros;
    board.ctx = NULL;
    board.signals = SIGNALS;
    board.n_signals = (int)(sizeof SIGNALS / sizeof SIGNALS[0]);
    board.board_name = "host-vdev";
    om_init(&dev, &board);
#ifdef OM_MODEL_HEADER
    if (om_load_model(&dev, om_model_blob, sizeof om_model_blob) != OM_MODEL_OK)
        fprintf(stderr, "openmind-vdev: the compiled-in model is invalid\n");
#endif
    printf("PTY %s\n", path);
    fflush(stdout);
    if (log_every > 0) next_log = host_micros(NULL) + (uint64_t)(log_every * 1e6);

    /* The device belongs to whoever started it (a test, a notebook's kernel): when that process
       is gone, so is the device, checked at every wake-up (200 ms at most), even after a SIGKILL. */
    while (!g_stop && getppid() == parent) {
        fd_set rd;
        struct timeval tv;
        uint64_t now = host_micros(NULL), due = om_next_due_us(&dev), wait = 200000;
        ssize_t n;
        if (due != UINT64_MAX) wait = due > now ? due - now : 0;
        if (next_log && next_log - now < wait) wait = next_log > now ? next_log - now : 0;
        if (wait > 200000) wait = 200000;
        tv.tv_sec = 0;
        tv.tv_usec = (long)wait;
        FD_ZERO(&rd);
        FD_SET(g_fd, &rd);
        if (select(g_fd + 1, &rd, NULL, NULL, &tv) > 0 && FD_ISSET(g_fd, &rd)) {
            n = read(g_fd, buf, sizeof buf);
            if (n > 0 && boot) {   /* pyserial flushes input on open: noise must come after it */
                boot_noise();
                boot = 0;
            }
            if (n > 0) om_feed(&dev, buf, (size_t)n);
        }
        om_poll(&dev);
        if (next_log && host_micros(NULL) >= next_log) {
            char line[64];
            int len = snprintf(line, sizeof line, "I (%lu) sensor: adc ok\r\n",
                               (unsigned long)(host_micros(NULL) / 1000u));
            host_write(NULL, line, (size_t)len);
            next_log += (uint64_t)(log_every * 1e6);
        }
    }
    close(slave);
    close(g_fd);
    return 0;
}
