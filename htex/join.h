/*
 * join.h - how a process from outside the MPI job joins an interchange.
 *
 * The handshake (wire.h's HELLO .. REFUSE), before the joiner is sent
 * anything else:
 *
 *   joiner -> HELLO {endpoint name, build id, host[, block id]}
 *   ix     -> CHALLENGE {32 random bytes}         (the name admitted first)
 *   joiner -> AUTH {HMAC-SHA256(secret, transcript)}
 *   ix     -> WELCOME {manager id}   or   REFUSE {reason}, then forgets it
 *
 * The transcript is "cparsl-join-1", the nonce, the build id and the
 * endpoint name, each with its length, so the MAC also vouches for the
 * build id: a joiner of another build is refused by name, and a man in
 * the middle cannot swap it.  The secret is 32 random bytes made per run,
 * kept in a 0600 file in the run dir (hex), and reaches joiners by that
 * file or the environment (CPARSL_HTEX_SECRET), never a command line.
 */
#ifndef CPARSL_HTEX_JOIN_H
#define CPARSL_HTEX_JOIN_H

#include <stddef.h>
#include <stdint.h>

#include <cparsl/error.h>
#include <cparsl/transport.h>

#define HTEX_SECRET_LEN 32
#define HTEX_NONCE_LEN  32
#define HTEX_MAC_LEN    32

/* Make a secret and write it, in hex, to a new file 'path' with mode
 * 0600 (an existing file is refused).  0 or negative with err. */
int htex_secret_create(const char *path, unsigned char *secret,
                       cparsl_error_t *err);
/* Read a secret: the environment's CPARSL_HTEX_SECRET (hex) if set, else
 * the file at 'path' (which must not be readable by others). */
int htex_secret_load(const char *path, unsigned char *secret,
                     cparsl_error_t *err);

/* The MAC of the transcript (see above). */
void htex_join_mac(const unsigned char *secret, const unsigned char *nonce,
                   const char *build, const void *name, size_t name_len,
                   unsigned char *mac);

/* Constant-time comparison of two MACs: 1 if equal. */
int htex_mac_equal(const unsigned char *a, const unsigned char *b);

/* Fill buf with n random bytes (getrandom).  0 or -errno. */
int htex_random(void *buf, size_t n);

/*
 * The joiner's side, over a transport whose peer 'ix' is the interchange:
 * send HELLO, answer the challenge, wait for WELCOME (sleeping, up to
 * 'timeout' seconds).  0 with *manager_id; a REFUSE gives -EACCES with
 * the interchange's reason in err; silence -ETIMEDOUT.
 */
int htex_join(cparsl_transport_t *t, int ix, const unsigned char *secret,
              const void *name, size_t name_len, const char *build,
              const char *host, double timeout, int *manager_id,
              cparsl_error_t *err);

#endif
