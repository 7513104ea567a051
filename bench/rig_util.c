
/*
 * Copyright (C) ngx_voice authors
 *
 * The rig's small parts: clocks, frame ids, Twilio signatures, JSON
 * lookups, send queues, histograms and /proc.
 */


#define _GNU_SOURCE
#include <string.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include "rig.h"


static char  rig_tail[RIG_FRAME_B64 - RIG_HDR_B64 + 1];


int64_t
rig_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


/*
 * A frame's first 9 bytes: the call's index and the frame's number, little
 * endian, and a check byte; the rest is mu-law silence.  9 bytes are 12
 * base64 characters, so the rest of the payload's base64 never changes.
 */
void
rig_frame_header(unsigned char *hdr, uint32_t call, uint32_t seq)
{
    int  i;

    for (i = 0; i < 4; i++) {
        hdr[i] = (unsigned char) (call >> (8 * i));
        hdr[4 + i] = (unsigned char) (seq >> (8 * i));
    }

    hdr[8] = 0x5a;

    for (i = 0; i < 8; i++) {
        hdr[8] ^= hdr[i];
    }
}


int
rig_frame_id(const char *b64, size_t len, uint32_t *call, uint32_t *seq)
{
    int            i;
    unsigned char  hdr[RIG_HDR_BYTES + 3], check;

    if (len < RIG_HDR_B64
        || EVP_DecodeBlock(hdr, (const unsigned char *) b64, RIG_HDR_B64)
           != RIG_HDR_BYTES)
    {
        return -1;
    }

    check = 0x5a;

    for (i = 0; i < 8; i++) {
        check ^= hdr[i];
    }

    if (check != hdr[8]) {
        return -1;
    }

    *call = 0;
    *seq = 0;

    for (i = 0; i < 4; i++) {
        *call |= (uint32_t) hdr[i] << (8 * i);
        *seq |= (uint32_t) hdr[4 + i] << (8 * i);
    }

    return 0;
}


const char *
rig_frame_b64_tail(void)
{
    unsigned char  silence[RIG_FRAME_BYTES - RIG_HDR_BYTES];

    if (rig_tail[0] == '\0') {
        memset(silence, 0xff, sizeof(silence));
        EVP_EncodeBlock((unsigned char *) rig_tail, silence, sizeof(silence));
    }

    return rig_tail;
}


/* base64(HMAC-SHA1(auth token, data)), as X-Twilio-Signature */
int
rig_sign(const char *key, const char *data, size_t len, char *out)
{
    unsigned int   mdlen;
    unsigned char  md[EVP_MAX_MD_SIZE];

    if (HMAC(EVP_sha1(), key, (int) strlen(key), (const unsigned char *) data,
             len, md, &mdlen)
        == NULL)
    {
        return -1;
    }

    EVP_EncodeBlock((unsigned char *) out, md, (int) mdlen);

    return 0;
}


/*
 * The string value of "key" in a message of ours or of the module's: both
 * come from fixed templates, with no escapes in the values read here.
 */
const char *
rig_json_str(const char *msg, size_t len, const char *key, size_t *vlen)
{
    char         pat[64];
    size_t       n;
    const char  *p, *q, *last;

    n = snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    last = msg + len;

    p = memmem(msg, len, pat, n);
    if (p == NULL) {
        return NULL;
    }

    p += n;

    q = memchr(p, '"', last - p);
    if (q == NULL) {
        return NULL;
    }

    *vlen = q - p;

    return p;
}


int
rig_buf_add(rig_buf_t *b, const void *data, size_t len)
{
    size_t          size;
    unsigned char  *p;

    if (b->len + len > b->size) {
        size = b->size ? b->size * 2 : 1024;

        while (size < b->len + len) {
            size *= 2;
        }

        if (size > 16 * RIG_MSG_MAX) {
            return -1;
        }

        p = realloc(b->data, size);
        if (p == NULL) {
            return -1;
        }

        b->data = p;
        b->size = size;
    }

    memcpy(b->data + b->len, data, len);
    b->len += len;

    return 0;
}


/*
 * A whole message out of what lws hands over: 1 and the message when it
 * is complete (valid until the next call), 0 while a fragmented one is
 * being assembled, -1 when it does not fit
 */
int
rig_message(struct lws *wsi, rig_buf_t *b, void *in, size_t len,
    const char **msg, size_t *n)
{
    if (lws_is_final_fragment(wsi) && b->len == 0) {
        *msg = in;
        *n = len;
        return 1;
    }

    if (rig_buf_add(b, in, len) != 0) {
        return -1;
    }

    if (!lws_is_final_fragment(wsi)) {
        return 0;
    }

    *msg = (const char *) b->data;
    *n = b->len;
    b->len = 0;

    return 1;
}


/* a message queued to be sent when the connection is writable */
int
rig_queue(rig_buf_t *q, const char *msg, size_t len)
{
    uint32_t  n;

    n = (uint32_t) len;

    if (rig_buf_add(q, &n, sizeof(n)) != 0
        || rig_buf_add(q, msg, len) != 0)
    {
        return -1;
    }

    return 0;
}


int
rig_queue_flush(struct lws *wsi, rig_buf_t *q)
{
    size_t    pos;
    uint32_t  n;

    pos = 0;

    while (pos + sizeof(n) <= q->len) {
        memcpy(&n, q->data + pos, sizeof(n));
        pos += sizeof(n);

        if (rig_send(wsi, (const char *) q->data + pos, n) != 0) {
            return -1;
        }

        pos += n;
    }

    q->len = 0;

    return 0;
}


/* one text message; lws keeps what the socket does not take */
int
rig_send(struct lws *wsi, const char *msg, size_t len)
{
    static unsigned char  buf[LWS_PRE + RIG_MSG_MAX];

    if (len > RIG_MSG_MAX) {
        return -1;
    }

    memcpy(buf + LWS_PRE, msg, len);

    if (lws_write(wsi, buf + LWS_PRE, len, LWS_WRITE_TEXT) < (int) len) {
        return -1;
    }

    return 0;
}


/*
 * Values under 256 have a bucket each; above, each power of two is split
 * in 128 buckets: bucket 256 + (e - 8) * 128 + the 7 bits below the top
 * bit e.
 */
static unsigned
rig_hist_bucket(uint64_t v)
{
    unsigned  e, base, sub;

    base = 1u << (RIG_HIST_SUB + 1);

    if (v < base) {
        return (unsigned) v;
    }

    e = 63 - __builtin_clzll(v);

    if (e > 47) {
        return RIG_HIST_N - 1;
    }

    sub = (unsigned) (v >> (e - RIG_HIST_SUB)) & ((1u << RIG_HIST_SUB) - 1);

    return base + ((e - RIG_HIST_SUB - 1) << RIG_HIST_SUB) + sub;
}


static double
rig_hist_value(unsigned i)
{
    unsigned  e, sub, base;
    uint64_t  width;

    base = 1u << (RIG_HIST_SUB + 1);

    if (i < base) {
        return i;
    }

    e = (i - base) / (1u << RIG_HIST_SUB) + RIG_HIST_SUB + 1;
    sub = (i - base) % (1u << RIG_HIST_SUB);
    width = 1ull << (e - RIG_HIST_SUB);

    /* the middle of the bucket */
    return (double) (((1u << RIG_HIST_SUB) + sub) * width) + width / 2.0;
}


void
rig_hist_add(rig_hist_t *h, int64_t us)
{
    if (us < 0) {
        us = 0;
    }

    h->count[rig_hist_bucket((uint64_t) us)]++;
    h->n++;
}


/* the value under which pct % of the samples are, in microseconds */
double
rig_hist_pct(rig_hist_t *h, double pct)
{
    unsigned  i;
    uint64_t  want, seen;

    if (h->n == 0) {
        return 0;
    }

    want = (uint64_t) (h->n * pct / 100.0 + 0.999999);
    if (want == 0) {
        want = 1;
    }

    seen = 0;

    for (i = 0; i < RIG_HIST_N; i++) {
        seen += h->count[i];

        if (seen >= want) {
            return rig_hist_value(i);
        }
    }

    return rig_hist_value(RIG_HIST_N - 1);
}


/* utime + stime of a process (fields 14 and 15 of its stat), in ms */
long
rig_proc_cpu_ms(pid_t pid)
{
    char           path[64], buf[1024], state, *p;
    FILE          *f;
    size_t         n;
    unsigned long  utime, stime;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);

    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }

    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';

    /* the command name may hold anything: the fields follow its ")" */

    p = strrchr(buf, ')');

    if (p == NULL
        || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                  &state, &utime, &stime)
           != 3)
    {
        return -1;
    }

    return (long) ((utime + stime) * 1000 / sysconf(_SC_CLK_TCK));
}


long
rig_proc_rss_kb(pid_t pid)
{
    char   path[64], line[256];
    long   kb;
    FILE  *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);

    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }

    kb = -1;

    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }

    fclose(f);

    return kb;
}


void
rig_hex(char *out, size_t n)
{
    size_t         i;
    unsigned char  r[64];

    if (n / 2 > sizeof(r) || RAND_bytes(r, (int) (n / 2)) != 1) {
        abort();
    }

    for (i = 0; i < n / 2; i++) {
        snprintf(out + 2 * i, 3, "%02x", r[i]);
    }
}
