/*
 * join.c - the join handshake's pieces (see join.h): the per-run secret,
 * the MAC, and the joiner's side.  The interchange's side is in
 * interchange.c, beside the manager registry it feeds.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "join.h"
#include "wire.h"

int htex_random(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static void to_hex(const unsigned char *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int from_hex(const char *s, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < 2 * n; i++) {
        char c = s[i];
        int v = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (v < 0)
            return -EINVAL;
        if (i % 2 == 0)
            out[i / 2] = (unsigned char)(v << 4);
        else
            out[i / 2] |= (unsigned char)v;
    }
    return s[2 * n] == '\0' || s[2 * n] == '\n' ? 0 : -EINVAL;
}

int htex_secret_create(const char *path, unsigned char *secret,
                       cparsl_error_t *err)
{
    int rc = htex_random(secret, HTEX_SECRET_LEN);
    if (rc < 0)
        return cparsl_error_set(err, rc, "no random bytes for the secret: %s",
                                strerror(-rc));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return cparsl_error_set(err, -errno, "cannot create '%s': %s", path,
                                strerror(errno));
    char hex[2 * HTEX_SECRET_LEN + 2];
    to_hex(secret, HTEX_SECRET_LEN, hex);
    strcat(hex, "\n");
    ssize_t n = write(fd, hex, strlen(hex));
    int werr = n == (ssize_t)strlen(hex) ? 0 : n < 0 ? errno : EIO;
    if (close(fd) < 0 && !werr)
        werr = errno;
    if (werr)
        return cparsl_error_set(err, -werr, "cannot write '%s': %s", path,
                                strerror(werr));
    return 0;
}

int htex_secret_load(const char *path, unsigned char *secret,
                     cparsl_error_t *err)
{
    const char *env = getenv("CPARSL_HTEX_SECRET");
    char buf[2 * HTEX_SECRET_LEN + 8] = "";
    const char *from = "CPARSL_HTEX_SECRET";
    if (env && *env) {
        snprintf(buf, sizeof buf, "%s", env);
    } else {
        from = path;
        int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
        if (fd < 0)
            return cparsl_error_set(err, path ? -errno : -ENOENT,
                                    "no secret: CPARSL_HTEX_SECRET is not "
                                    "set and '%s' cannot be read%s%s",
                                    path ? path : "(no file)", path ? ": " : "",
                                    path ? strerror(errno) : "");
        struct stat st;
        if (fstat(fd, &st) == 0 && (st.st_mode & 077)) {
            close(fd);
            return cparsl_error_set(err, -EPERM,
                                    "secret file '%s' is readable by others "
                                    "(mode %o): refusing it",
                                    path, (unsigned)(st.st_mode & 0777));
        }
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        buf[n > 0 ? n : 0] = '\0';
    }
    if (strlen(buf) < 2 * HTEX_SECRET_LEN ||
        from_hex(buf, secret, HTEX_SECRET_LEN) < 0)
        return cparsl_error_set(err, -EINVAL,
                                "the secret from %s is not %d hex digits", from,
                                2 * HTEX_SECRET_LEN);
    return 0;
}

void htex_join_mac(const unsigned char *secret, const unsigned char *nonce,
                   const char *build, const void *name, size_t name_len,
                   unsigned char *mac)
{
    static const char label[] = "cparsl-join-1";
    unsigned int len = HTEX_MAC_LEN;
    /* One-shot HMAC over the parts, each length-prefixed. */
    size_t blen = strlen(build);
    size_t total = 4 * 8 + sizeof label - 1 + HTEX_NONCE_LEN + blen + name_len;
    unsigned char *msg = malloc(total);
    if (!msg) {
        memset(mac, 0, HTEX_MAC_LEN); /* matches nothing we would send */
        return;
    }
    size_t at = 0;
    const void *parts[4] = {label, nonce, build, name};
    size_t lens[4] = {sizeof label - 1, HTEX_NONCE_LEN, blen, name_len};
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < 8; i++)
            msg[at++] = (unsigned char)((uint64_t)lens[k] >> (8 * i));
        if (lens[k])
            memcpy(msg + at, parts[k], lens[k]);
        at += lens[k];
    }
    if (!HMAC(EVP_sha256(), secret, HTEX_SECRET_LEN, msg, total, mac, &len))
        memset(mac, 0, HTEX_MAC_LEN);
    free(msg);
}

int htex_mac_equal(const unsigned char *a, const unsigned char *b)
{
    return CRYPTO_memcmp(a, b, HTEX_MAC_LEN) == 0;
}

/* ---- the joiner's side ----------------------------------------------------
 */

static int send_fields(cparsl_transport_t *t, int peer, int type, size_t n,
                       const void *const *p, const size_t *len)
{
    htex_buf_t b = {0};
    htex_msg_begin(&b, type, 0);
    htex_msg_add_fields(&b, n, p, len);
    long mlen = htex_msg_end(&b);
    int rc = (int)mlen;
    if (mlen >= 0) {
        void *m = t->ops->msg_alloc(t, (size_t)mlen);
        rc = m ? 0 : -ENOMEM;
        if (m) {
            memcpy(m, b.p, (size_t)mlen);
            rc = t->ops->send(t, peer, m, (size_t)mlen);
        }
    }
    htex_buf_free(&b);
    return rc;
}

/* The next handshake message from 'ix' (others are dropped), or 0 on
 * timeout.  Sleeps between polls. */
static int next_from(cparsl_transport_t *t, int ix, double deadline,
                     htex_reader_t *r, htex_fields_t *f, void **buf,
                     cparsl_error_t *err)
{
    struct timespec nap = {0, 200000};
    for (;;) {
        int peer;
        size_t len;
        int rc = t->ops->try_recv(t, &peer, buf, &len, err);
        if (rc < 0)
            return rc;
        if (rc > 0) {
            cparsl_error_t e2;
            if (peer == ix && htex_msg_open(r, *buf, len, &e2) == 0 &&
                (r->hdr.type == HTEX_MSG_CHALLENGE ||
                 r->hdr.type == HTEX_MSG_WELCOME ||
                 r->hdr.type == HTEX_MSG_REFUSE) &&
                htex_msg_next_fields(r, f, &e2) == 0)
                return 1;
            t->ops->msg_free(t, *buf);
            continue;
        }
        t->ops->progress(t);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec + now.tv_nsec / 1e9 > deadline)
            return 0;
        nanosleep(&nap, NULL);
        if (nap.tv_nsec < 10000000)
            nap.tv_nsec *= 2;
    }
}

int htex_join(cparsl_transport_t *t, int ix, const unsigned char *secret,
              const void *name, size_t name_len, const char *build,
              const char *host, double timeout, int *manager_id,
              cparsl_error_t *err)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double deadline = now.tv_sec + now.tv_nsec / 1e9 + timeout;
    /* The provider block this joiner belongs to, when a block's script
     * started it (providers/provider.c exports CPARSL_BLOCK_ID). */
    const char *block = getenv("CPARSL_BLOCK_ID");
    size_t nf = block && *block && strlen(block) < 64 ? 4 : 3;
    const void *hp[4] = {name, build, host, block};
    size_t hl[4] = {name_len, strlen(build), strlen(host),
                    nf == 4 ? strlen(block) : 0};
    int rc = send_fields(t, ix, HTEX_MSG_HELLO, nf, hp, hl);
    if (rc < 0)
        return cparsl_error_set(err, rc, "join: cannot send HELLO: %s",
                                strerror(-rc));
    htex_reader_t r;
    htex_fields_t f;
    void *buf = NULL;
    bool authed = false;
    for (;;) {
        rc = next_from(t, ix, deadline, &r, &f, &buf, err);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return cparsl_error_set(err, -ETIMEDOUT,
                                    "join: no answer from the interchange "
                                    "within %g s",
                                    timeout);
        int type = r.hdr.type;
        if (type == HTEX_MSG_REFUSE) {
            cparsl_error_set(
                err, -EACCES, "join: the interchange refused: %.*s",
                (int)(f.n ? f.len[0] : 0), f.n ? (const char *)f.p[0] : "");
            t->ops->msg_free(t, buf);
            return -EACCES;
        }
        if (type == HTEX_MSG_CHALLENGE && !authed && f.n == 1 &&
            f.len[0] == HTEX_NONCE_LEN) {
            unsigned char mac[HTEX_MAC_LEN];
            htex_join_mac(secret, f.p[0], build, name, name_len, mac);
            t->ops->msg_free(t, buf);
            const void *ap[1] = {mac};
            size_t al[1] = {sizeof mac};
            if ((rc = send_fields(t, ix, HTEX_MSG_AUTH, 1, ap, al)) < 0)
                return cparsl_error_set(err, rc, "join: cannot send AUTH");
            authed = true;
            continue;
        }
        if (type == HTEX_MSG_WELCOME && authed && f.n == 1 && f.len[0] < 16) {
            char id[16];
            memcpy(id, f.p[0], f.len[0]);
            id[f.len[0]] = '\0';
            *manager_id = atoi(id);
            t->ops->msg_free(t, buf);
            return 0;
        }
        t->ops->msg_free(t, buf); /* out of order: ignore */
    }
}
