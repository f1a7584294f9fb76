/* CRC-32 as zlib computes it, a strict base64 decoder and an encoder. */
#include "om_core.h"

uint32_t om_crc32(uint32_t crc, const unsigned char *data, size_t len)
{
    size_t i;
    int k;
    crc = ~crc;
    for (i = 0; i < len; i++) {
        crc ^= data[i];
        for (k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

long om_b64_decode(const char *text, size_t len, unsigned char *out, size_t cap)
{
    size_t i, o = 0;
    if (len % 4 != 0) return -1;
    for (i = 0; i < len; i += 4) {
        int v[4], j, pad = 0;
        for (j = 0; j < 4; j++) {
            unsigned char c = (unsigned char)text[i + j];
            if (c == '=' && i + 4 == len && j >= 2) { v[j] = 0; pad++; continue; }
            if (pad) return -1;                      /* data after padding */
            v[j] = b64_value(c);
            if (v[j] < 0) return -1;
        }
        if (o + 3 - (size_t)pad > cap) return -1;
        out[o++] = (unsigned char)((v[0] << 2) | (v[1] >> 4));
        if (pad < 2) out[o++] = (unsigned char)(((v[1] & 15) << 4) | (v[2] >> 2));
        if (pad < 1) out[o++] = (unsigned char)(((v[2] & 3) << 6) | v[3]);
    }
    return (long)o;
}

long om_b64_encode(const unsigned char *data, size_t len, char *out, size_t cap)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, o = 0;
    if ((len + 2) / 3 * 4 + 1 > cap) return -1;
    for (i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < len) v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < len) v |= data[i + 2];
        out[o++] = tbl[(v >> 18) & 63u];
        out[o++] = tbl[(v >> 12) & 63u];
        out[o++] = i + 1 < len ? tbl[(v >> 6) & 63u] : '=';
        out[o++] = i + 2 < len ? tbl[v & 63u] : '=';
    }
    out[o] = '\0';
    return (long)o;
}
