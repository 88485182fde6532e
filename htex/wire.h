/*
 * wire.h - the htex wire protocol: messages between the interchange,
 * managers, worker ranks and isolated worker children.
 *
 * Every message is a 32-byte header followed by 'count' records of the
 * header's type.  All integers are little-endian; strings are a u32 length
 * and that many bytes (no NUL); values use the canonical encoding of
 * cparsl/value.h.  A reader checks every length against the bytes it was
 * given and rejects anything malformed with -CPARSL_EDECODE and a reason:
 * a message from the wire is never trusted.
 *
 *   header:  u32 magic "CPX1" | u16 version | u16 type | u32 count |
 *            u32 want | u64 body_len | u64 reserved (0)
 *
 *   TASKS record (one try of one task):
 *            u64 ticket | u32 try | f64 walltime | str app |
 *            u32 stdout_mode | str stdout | u32 stderr_mode | str stderr |
 *            u32 npos | u32 nnamed | u32 ninputs | u32 noutputs |
 *            npos values | nnamed (str name, value) | ninputs values |
 *            noutputs values
 *   RESULTS record:
 *            u64 ticket | u32 try | i32 errcode | str errtext |
 *            value result (nil when errcode != 0) |
 *            i64 t_start | i64 t_end | i32 exit_code | i32 term_signal |
 *            f64 cpu_s | i64 maxrss_kib | i32 worker | i32 slot
 *   REGISTER record (a manager or worker rank says hello):
 *            i32 rank | i32 node | u32 slots | str host | str build
 *   HEARTBEAT, SHUTDOWN, BYE, DRAIN: no records (count 0).
 *   HELLO, CHALLENGE, AUTH, WELCOME, REFUSE (the join handshake): one
 *            FIELDS record: u32 n (at most HTEX_MAX_FIELDS) | n times
 *            (u32 len | len bytes), each at most HTEX_FIELD_MAX bytes.
 *
 * 'want' in any header from downstream is the number of further tasks the
 * sender asks for (credits); upstream ignores it in its own messages.
 */
#ifndef CPARSL_HTEX_WIRE_H
#define CPARSL_HTEX_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <cparsl/plugin.h>

#define HTEX_MAGIC   0x31585043u /* "CPX1" little-endian */
#define HTEX_VERSION 1
#define HTEX_HDR_LEN 32
/* Longest string a reader accepts (paths, names, error text). */
#define HTEX_MAX_STR (1u << 20)

enum htex_msg_type {
    HTEX_MSG_REGISTER = 1,
    HTEX_MSG_TASKS = 2,
    HTEX_MSG_RESULTS = 3,
    HTEX_MSG_HEARTBEAT = 4,
    HTEX_MSG_SHUTDOWN = 5,
    HTEX_MSG_BYE = 6,
    /* joining from outside the MPI job (htex/join.c): one FIELDS record */
    HTEX_MSG_HELLO = 7,     /* name, build id, host */
    HTEX_MSG_CHALLENGE = 8, /* nonce */
    HTEX_MSG_AUTH = 9,      /* HMAC-SHA256 over the handshake */
    HTEX_MSG_WELCOME = 10,  /* manager id (decimal text) */
    HTEX_MSG_REFUSE = 11,   /* reason */
    HTEX_MSG_DRAIN = 12,    /* no records: take no new tasks, then leave */
    HTEX_MSG_LAST
};

const char *htex_msg_name(int type);

typedef struct htex_hdr {
    uint32_t magic;
    uint16_t version;
    uint16_t type;
    uint32_t count;
    uint32_t want;
    uint64_t body_len;
} htex_hdr_t;

/* ---- writing --------------------------------------------------------------
 */

/* A growable output buffer, reused from message to message. */
typedef struct htex_buf {
    unsigned char *p;
    size_t len, cap;
    int error; /* sticky: -ENOMEM or -EINVAL once a write failed */
} htex_buf_t;

void htex_buf_free(htex_buf_t *b);

/* Start a message of 'type' in b (resets b). */
void htex_msg_begin(htex_buf_t *b, int type, uint32_t want);
/* Append one record; the header's count grows.  0 or negative (and sticky
 * in b->error). */
int htex_msg_add_task(htex_buf_t *b, uint64_t ticket, const cparsl_exec_t *e);
int htex_msg_add_result(htex_buf_t *b, uint64_t ticket, int try_no,
                        const cparsl_exec_t *e, int worker, int slot);
int htex_msg_add_register(htex_buf_t *b, int rank, int node, uint32_t slots,
                          const char *host, const char *build);
/* Append every record of the message r was opened on (of the type b was
 * begun as), as they are: a sub-interchange merges its managers' RESULTS
 * this way.  r's records are not checked here; the final reader checks
 * them as it does any message's.  0 or negative (sticky). */
struct htex_reader;
int htex_msg_add_records(htex_buf_t *b, const struct htex_reader *r);
/* Patch the header (count, body_len).  Returns the message length, or
 * b->error if a write failed. */
long htex_msg_end(htex_buf_t *b);
/* The number of records so far. */
uint32_t htex_msg_count(const htex_buf_t *b);
/* Set the 'want' field of the message being built. */
void htex_msg_set_want(htex_buf_t *b, uint32_t want);

/* An exec with nothing known yet: no result, no error, exit code, CPU,
 * peak memory and placement unknown (-1).  For a record built by hand (a
 * result a worker or manager reports without running the task). */
void htex_exec_blank(cparsl_exec_t *e);

/* ---- reading --------------------------------------------------------------
 */

typedef struct htex_reader {
    const unsigned char *p;
    size_t len, pos;
    htex_hdr_t hdr;
    uint32_t next; /* records read so far */
} htex_reader_t;

/* Check the header of buf[0..len) (magic, version, known type, body_len
 * matching len).  0 or -CPARSL_EDECODE with the reason in err. */
int htex_msg_open(htex_reader_t *r, const void *buf, size_t len,
                  cparsl_error_t *err);

/*
 * A decoded TASKS record: a complete cparsl_exec_t whose arguments live in
 * storage this struct owns (reused across calls; cleared by
 * htex_task_clear, freed by htex_task_free).  The app is looked up by name
 * in this process's registry; an unknown app is not a decode error: 'app'
 * is NULL and 'app_name' says which, so the worker can answer with a
 * clear failure.
 */
typedef struct htex_task {
    uint64_t ticket;
    cparsl_exec_t exec;
    char *app_name;
    char *stdout_path, *stderr_path;
    cparsl_argslot_t *slots; /* npos then nnamed */
    size_t nslots_cap;
    cparsl_value_t *files; /* ninputs then noutputs */
    size_t nfiles_cap;
    char **names; /* owned keyword names */
} htex_task_t;

void htex_task_init(htex_task_t *t);
void htex_task_clear(htex_task_t *t);
void htex_task_free(htex_task_t *t);

/* Next TASKS record into t (cleared first).  0, or -CPARSL_EDECODE. */
int htex_msg_next_task(htex_reader_t *r, htex_task_t *t, cparsl_error_t *err);

/*
 * Next RESULTS record: its ticket and try, and the outcome written into
 * *e: e->result (owned, decoded), e->error, t_start, t_end, exit_code,
 * term_signal, cpu_s, maxrss_kib.  *worker and *slot say who ran it.
 * On a decode error nothing in *e is changed.
 */
int htex_msg_next_result(htex_reader_t *r, uint64_t *ticket, int *try_no,
                         cparsl_exec_t *e, int *worker, int *slot,
                         cparsl_error_t *err);

typedef struct htex_register {
    int rank, node;
    uint32_t slots;
    char host[256];
    char build[128];
} htex_register_t;

int htex_msg_next_register(htex_reader_t *r, htex_register_t *out,
                           cparsl_error_t *err);

/* The handshake's records: up to HTEX_MAX_FIELDS byte strings.  The
 * reader's pointers point into the message. */
#define HTEX_MAX_FIELDS 8
#define HTEX_FIELD_MAX  4096
typedef struct htex_fields {
    size_t n;
    const unsigned char *p[HTEX_MAX_FIELDS];
    uint32_t len[HTEX_MAX_FIELDS];
} htex_fields_t;

int htex_msg_add_fields(htex_buf_t *b, size_t n, const void *const *p,
                        const size_t *len);
int htex_msg_next_fields(htex_reader_t *r, htex_fields_t *out,
                         cparsl_error_t *err);

#endif
