/*
 * hdf5.c - the "hdf5" store: the run file, one results.h5 per run,
 * written in SWMR mode so that it can be read while the run goes on and
 * after the process is killed (docs/run-file.md is the layout, written
 * so that a reader needs none of this code).
 *
 * Two threads share the store.  The DFK thread calls task_event and
 * dependency; they copy what they need into two single-producer,
 * single-consumer rings (fixed records, plus a byte ring for a final
 * state's record, strings and encoded result) and return.  When a ring is
 * full the DFK thread waits for room, so a disk that falls behind slows
 * submission instead of growing memory; the waits are counted and logged
 * at close.  Every HDF5 call happens on the writer thread, which the
 * store starts at open: it keeps the unfinished tasks' timestamps in a
 * hash map keyed by task id, turns each task's final state into one row
 * of /tasks, and appends strings and results to the byte heap /heap.
 *
 * SWMR's rules shape the file: everything is created before
 * H5Fstart_swmr_write, afterwards only the three chunked unlimited
 * datasets grow, and nothing is variable-length.  The heap is written and
 * flushed before the rows that point into it, so a reader that sees a row
 * sees its bytes (or, for a row it reads before that, an (offset, length)
 * past the heap's end, which it takes as "not yet written").
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

#include <cparsl/plugin.h>

#include "log.h"

#define LAYOUT_VERSION 1

/* Rows and heap bytes the writer gathers before it writes them out; the
 * flush timer writes whatever is there sooner. */
#define ROW_BATCH  8192
#define HEAP_BATCH (4u << 20)
/* Chunk sizes: about 256 KiB each, under HDF5's 1 MiB chunk cache. */
#define TASK_CHUNK 1024
#define HEAP_CHUNK (256u << 10)
#define DEP_CHUNK  8192
/* Strings each column remembers, so an app name is stored once, not once
 * per task. */
#define INTERN_SLOTS 16

enum { NSTR = 5 }; /* app, executor, host, error, result */
enum { S_APP, S_EXECUTOR, S_HOST, S_ERROR, S_RESULT };

/* ---- the queue ---------------------------------------------------------- */

enum rec_kind {
    R_EVENT, /* a state change that is not final */
    R_FINAL, /* a final state: payload in the byte ring */
    R_BIG,   /* a final state whose payload did not fit: malloc'd */
    R_DEP,   /* a dependency edge */
    R_CKPT,  /* a checkpoint entry: payload in the byte ring, or malloc'd */
    R_FLUSH, /* flush(): ticket in t_ns */
    R_CLOSE, /* close(): the last record */
};

struct rec {
    uint64_t id;   /* task; R_DEP: the child */
    int64_t t_ns;  /* R_DEP: the parent; R_FLUSH: the ticket */
    uint64_t boff; /* R_FINAL: payload position; R_BIG: its pointer */
    uint32_t blen; /* payload bytes */
    int32_t try_no;
    uint8_t kind, to;
    uint8_t big; /* R_CKPT: boff is a malloc'd pointer */
};

/* A checkpoint entry's fixed part, followed by the key and the result. */
struct ckh {
    uint64_t task_id, hash;
    int64_t t_ns;
    uint32_t klen, rlen;
};

/* A final state's fixed part, followed by the NSTR strings' bytes. */
struct fin {
    int64_t t_pending, t_launch, t_dispatch, t_start, t_end;
    double cpu_s;
    int64_t maxrss_kib;
    int32_t worker, slot, node, exit_code, term_signal, error_code;
    int32_t result_type;
    uint32_t len[NSTR];
};

/* ---- the row, in memory exactly as in the file -------------------------- */

struct row {
    uint64_t id;
    uint64_t off[NSTR];
    int64_t t_pending, t_launched, t_dispatch, t_start, t_end;
    int64_t t_joining, t_fail_retryable, t_final;
    double cpu_s;
    int64_t maxrss_kib;
    uint32_t len[NSTR];
    int32_t state, tries, worker, slot, node, exit_code, term_signal;
    int32_t error_code, result_type;
};
/* No padding: the memory type is the file type, so H5Dwrite copies. */
_Static_assert(sizeof(struct row) == 8 * (1 + NSTR + 8 + 2) + 4 * (NSTR + 9),
               "struct row has padding");

/* The int64 columns, in file order. */
static const struct {
    const char *name;
    size_t off;
} time_cols[] = {
    {"t_pending", offsetof(struct row, t_pending)},
    {"t_launched", offsetof(struct row, t_launched)},
    {"t_dispatch", offsetof(struct row, t_dispatch)},
    {"t_start", offsetof(struct row, t_start)},
    {"t_end", offsetof(struct row, t_end)},
    {"t_joining", offsetof(struct row, t_joining)},
    {"t_fail_retryable", offsetof(struct row, t_fail_retryable)},
    {"t_final", offsetof(struct row, t_final)},
};

/* The smaller tables, each one row per struct (padding included). */
struct ckpt_row {
    uint64_t task_id, hash, key_off, result_off;
    int64_t t_ns;
    uint32_t key_len, result_len;
};

struct worker_row {
    uint64_t executor_off, host_off, first_task;
    int64_t t_first;
    uint32_t executor_len, host_len;
    int32_t node, worker, slot;
};

struct block_row {
    int64_t t_ns, block;
    uint64_t executor_off, event_off, job_off;
    uint32_t executor_len, event_len, job_len;
    int32_t nodes, workers;
};

/* An appendable dataset and the rows gathered for it. */
struct table {
    const char *name;
    size_t size; /* bytes a row */
    hid_t ds, type;
    uint64_t on_disk;
    uint8_t *buf;
    size_t n, cap;
};

enum { T_CKPT, T_WORKERS, T_BLOCKS, NTABLES };

/* A block event, between the thread that reports it and the writer. */
struct blk {
    char *executor, *event, *job;
    int64_t t_ns, block;
    int32_t nodes, workers;
};

/* A worker seen, keyed by where it is. */
struct wkey {
    uint64_t executor_off;
    int32_t node, worker, slot, used;
};

static const char *const str_names[NSTR] = {"app", "executor", "host", "error",
                                            "result"};

/* The states queued before a task's final one (launch, start and end
 * come with the final record): an unfinished task's timestamps are kept
 * for these only. */
static const cparsl_state_t open_states[] = {
    CPARSL_PENDING,
    CPARSL_JOINING,
    CPARSL_FAIL_RETRYABLE,
};
#define NOPEN ((int)(sizeof open_states / sizeof open_states[0]))

/* An unfinished task's timestamps, keyed by id (0: free slot). */
struct partial {
    uint64_t id;
    int64_t t[NOPEN];
};

/* The column that holds the time a task entered 'st' (not a final
 * state), or NULL. */
static int64_t *row_time(struct row *r, cparsl_state_t st)
{
    switch (st) {
    case CPARSL_PENDING:
        return &r->t_pending;
    case CPARSL_LAUNCHED:
        return &r->t_launched;
    case CPARSL_RUNNING:
        return &r->t_start;
    case CPARSL_RUNNING_ENDED:
        return &r->t_end;
    case CPARSL_JOINING:
        return &r->t_joining;
    case CPARSL_FAIL_RETRYABLE:
        return &r->t_fail_retryable;
    default:
        return NULL;
    }
}

struct intern {
    char *s;
    uint32_t len;
    uint64_t off;
};

struct h5store {
    cparsl_store_t base;
    char path[4200];
    char *config_yaml;
    char run_dir[4200];
    double flush_interval;

    /* rings: producer fields, then consumer fields, apart */
    struct rec *recs;
    uint64_t nrec; /* power of two */
    uint8_t *bytes;
    uint64_t nbytes;
    uint64_t head, bhead; /* producer's own */
    uint64_t tail_seen, btail_seen;
    _Alignas(64) _Atomic uint64_t head_pub;
    _Alignas(64) _Atomic uint64_t tail, btail;

    pthread_mutex_t mu;
    pthread_cond_t data_cv;  /* the writer sleeps here */
    pthread_cond_t space_cv; /* the DFK thread waits for room here */
    pthread_cond_t done_cv;  /* flush() and open() wait here */
    _Atomic bool writer_sleeping;
    _Atomic bool producer_waiting;
    bool urgent; /* a flush or close is queued (under mu) */
    uint64_t ticket, flushed;
    bool opened; /* the writer finished creating the file (under mu) */
    int open_rc;
    cparsl_error_t open_err;
    pthread_t writer;

    /* the first failure on the writer; later records are dropped */
    _Atomic int failed;
    cparsl_error_t fail_err; /* under mu */

    /* producer statistics */
    uint64_t waits, waited_ns, big;

    /* writer state */
    hid_t file, heap_ds, tasks_ds, deps_ds, row_type;
    uint64_t heap_len, nrows, ndeps; /* on disk */
    uint8_t *heap_buf;
    size_t heap_buf_len, heap_buf_cap;
    struct row *rows;
    size_t nrow_buf;
    uint64_t (*deps)[2];
    size_t ndep_buf, dep_cap;
    struct partial *dir; /* slot id % dir_cap */
    size_t dir_cap, dir_n;
    struct partial *map; /* the rest: hashed */
    size_t map_cap, map_n;
    struct intern interned[3][INTERN_SLOTS];
    unsigned intern_next[3];
    uint64_t nrecords, nflushes;
    int64_t write_ns;

    /* checkpoints, workers and blocks */
    struct table tables[NTABLES];
    bool ckpt_flush_each; /* checkpoint_mode task_exit */
    bool ckpt_unflushed;
    struct wkey *wset;
    size_t wset_cap, wset_n;
    struct blk *blks; /* under mu */
    size_t nblks, blks_cap;
};

extern const struct cparsl_store_ops cparsl_store_hdf5_ops;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void abs_mono(struct timespec *ts, int64_t ns)
{
    ts->tv_sec = ns / 1000000000;
    ts->tv_nsec = ns % 1000000000;
}

/* ==== the DFK side ======================================================== */

static void wake_writer(struct h5store *s, bool urgent)
{
    pthread_mutex_lock(&s->mu);
    if (urgent)
        s->urgent = true;
    pthread_cond_signal(&s->data_cv);
    pthread_mutex_unlock(&s->mu);
}

/* Wait until the rings have a free record and 'need' contiguous bytes at
 * byte position 'bend' (0: no bytes).  The writer frees room, so wake it
 * first: it may be asleep until its next flush. */
static void wait_room(struct h5store *s, uint64_t bend)
{
    int64_t t0 = mono_ns();
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->producer_waiting, true);
    pthread_cond_signal(&s->data_cv);
    for (;;) {
        uint64_t tail = atomic_load(&s->tail);
        uint64_t btail = atomic_load(&s->btail);
        if (s->head - tail < s->nrec && (!bend || bend - btail <= s->nbytes))
            break;
        pthread_cond_wait(&s->space_cv, &s->mu);
    }
    atomic_store(&s->producer_waiting, false);
    pthread_mutex_unlock(&s->mu);
    s->waits++;
    s->waited_ns += (uint64_t)(mono_ns() - t0);
}

static struct rec *rec_next(struct h5store *s)
{
    if (s->head - s->tail_seen == s->nrec) {
        s->tail_seen = atomic_load_explicit(&s->tail, memory_order_acquire);
        if (s->head - s->tail_seen == s->nrec) {
            wait_room(s, 0);
            s->tail_seen = atomic_load(&s->tail);
        }
    }
    return &s->recs[s->head & (s->nrec - 1)];
}

static void rec_publish(struct h5store *s)
{
    s->head++;
    atomic_store_explicit(&s->head_pub, s->head, memory_order_release);
    /* Half full: have the writer start on it rather than at its timer.
     * Only the caller that turns the flag off pays for the signal. */
    uint64_t tail = atomic_load_explicit(&s->tail, memory_order_relaxed);
    if (s->head - tail >= s->nrec / 2 &&
        atomic_load_explicit(&s->writer_sleeping, memory_order_relaxed) &&
        atomic_exchange(&s->writer_sleeping, false))
        wake_writer(s, false);
}

/* Room for 'len' contiguous bytes in the byte ring; its position in *pos.
 * A payload never wraps: the end of the ring is skipped instead. */
static uint8_t *bytes_reserve(struct h5store *s, uint64_t len, uint64_t *pos)
{
    uint64_t start = s->bhead;
    uint64_t off = start % s->nbytes;
    if (off + len > s->nbytes)
        start += s->nbytes - off;
    uint64_t end = start + ((len + 7) & ~(uint64_t)7);
    if (end - s->btail_seen > s->nbytes) {
        s->btail_seen = atomic_load_explicit(&s->btail, memory_order_acquire);
        if (end - s->btail_seen > s->nbytes) {
            wait_room(s, end);
            s->btail_seen = atomic_load(&s->btail);
        }
    }
    s->bhead = end;
    *pos = start;
    return s->bytes + start % s->nbytes;
}

static bool state_is_final(cparsl_state_t st)
{
    return st == CPARSL_EXEC_DONE || st == CPARSL_MEMO_DONE ||
           st == CPARSL_FAILED || st == CPARSL_DEP_FAIL;
}

/* Copy a final state's record: exec is only valid during the call. */
static void put_final(struct h5store *s, struct rec *r,
                      const cparsl_task_event_t *ev)
{
    const cparsl_exec_t *e = ev->exec;
    struct fin f = {
        .t_pending = ev->t_pending,
        .t_launch = e->t_launch,
        .t_dispatch = e->t_dispatch,
        .t_start = e->t_start,
        .t_end = e->t_end,
        .cpu_s = e->cpu_s,
        .maxrss_kib = e->maxrss_kib,
        .worker = e->worker,
        .slot = e->slot,
        .node = e->node,
        .exit_code = e->exit_code,
        .term_signal = e->term_signal,
        .error_code = cparsl_exec_code(e),
        .result_type = -1,
    };
    /* The future's error is the task's: the try's, or the DFK's own
     * (a dependency failed) when no try ran. */
    if (ev->error_code) {
        f.error_code = ev->error_code;
    }
    const char *str[NSTR - 1] = {ev->app, ev->executor, e->host,
                                 ev->error_text ? ev->error_text
                                                : cparsl_exec_text(e)};
    for (int i = 0; i < NSTR - 1; i++)
        f.len[i] = str[i] ? (uint32_t)strnlen(str[i], UINT32_MAX / 4) : 0;
    /* Only exec_done and memo_done have a result. */
    size_t rlen = 0;
    if (ev->result) {
        rlen = cparsl_value_encoded_size(ev->result);
        if (rlen > UINT32_MAX / 2)
            rlen = 0; /* cannot be addressed by a u32 length */
        if (rlen)
            f.result_type = (int32_t)ev->result->type;
    }
    f.len[S_RESULT] = (uint32_t)rlen;
    uint64_t total = sizeof f;
    for (int i = 0; i < NSTR; i++)
        total += f.len[i];

    uint8_t *p;
    if (total <= s->nbytes / 4) {
        p = bytes_reserve(s, total, &r->boff);
        r->kind = R_FINAL;
    } else {
        /* Rare: a result too large for the ring gets its own copy. */
        p = malloc(total);
        if (!p) {
            CPARSL_LOG(CPARSL_LOG_ERROR, "store",
                       "hdf5 store: out of memory for task %" PRIu64
                       "'s %" PRIu64 "-byte record; its result is left out",
                       ev->task_id, total);
            total -= f.len[S_RESULT];
            f.len[S_RESULT] = 0;
            f.result_type = -1;
            p = bytes_reserve(s, total, &r->boff);
            r->kind = R_FINAL;
        } else {
            r->boff = (uint64_t)(uintptr_t)p;
            r->kind = R_BIG;
            s->big++;
        }
    }
    r->blen = (uint32_t)total;
    memcpy(p, &f, sizeof f);
    uint8_t *q = p + sizeof f;
    for (int i = 0; i < NSTR - 1; i++) {
        if (f.len[i])
            memcpy(q, str[i], f.len[i]);
        q += f.len[i];
    }
    size_t used;
    if (f.len[S_RESULT] &&
        cparsl_value_encode(ev->result, q, f.len[S_RESULT], &used) < 0)
        memset(q, 0, f.len[S_RESULT]); /* sized just above: cannot happen */
}

static void h5_task_event(cparsl_store_t *st, const cparsl_task_event_t *ev)
{
    struct h5store *s = cparsl_container_of(st, struct h5store, base);
    /* The last try's launch, start and end come with the final record
     * (the try stamped them): not queueing them saves three of a task's
     * five events. */
    if (ev->to == CPARSL_PENDING || ev->to == CPARSL_LAUNCHED ||
        ev->to == CPARSL_RUNNING || ev->to == CPARSL_RUNNING_ENDED)
        if (!ev->unfinished)
            return;
    struct rec *r = rec_next(s);
    r->id = ev->task_id;
    r->t_ns = ev->t_ns;
    r->to = (uint8_t)ev->to;
    r->try_no = ev->try_no;
    r->blen = 0;
    r->kind = R_EVENT;
    if (ev->exec && (state_is_final(ev->to) || ev->unfinished))
        put_final(s, r, ev);
    rec_publish(s);
}

static void h5_dependency(cparsl_store_t *st, uint64_t child, uint64_t parent)
{
    struct h5store *s = cparsl_container_of(st, struct h5store, base);
    struct rec *r = rec_next(s);
    r->kind = R_DEP;
    r->id = child;
    r->t_ns = (int64_t)parent;
    r->blen = 0;
    rec_publish(s);
}

static void h5_checkpoint(cparsl_store_t *st, const cparsl_ckpt_t *e)
{
    struct h5store *s = cparsl_container_of(st, struct h5store, base);
    size_t rlen = cparsl_value_encoded_size(e->result);
    if (!rlen || rlen > UINT32_MAX / 2 || e->key_len > UINT32_MAX / 2) {
        CPARSL_LOG(CPARSL_LOG_WARN, "store",
                   "hdf5 store: task %" PRIu64 "'s result cannot be "
                   "checkpointed (%zu bytes encoded, key %zu bytes)",
                   e->task_id, rlen, e->key_len);
        return;
    }
    struct ckh h = {
        .task_id = e->task_id,
        .hash = e->hash,
        .t_ns = cparsl_now_ns(),
        .klen = (uint32_t)e->key_len,
        .rlen = (uint32_t)rlen,
    };
    uint64_t total = sizeof h + h.klen + h.rlen;
    struct rec *r = rec_next(s);
    uint8_t *p;
    r->big = 0;
    if (total <= s->nbytes / 4) {
        p = bytes_reserve(s, total, &r->boff);
    } else {
        p = malloc(total);
        if (!p) {
            CPARSL_LOG(CPARSL_LOG_ERROR, "store",
                       "hdf5 store: out of memory for task %" PRIu64
                       "'s %" PRIu64 "-byte checkpoint entry; left out",
                       e->task_id, total);
            return;
        }
        r->boff = (uint64_t)(uintptr_t)p;
        r->big = 1;
        s->big++;
    }
    r->kind = R_CKPT;
    r->id = e->task_id;
    r->blen = (uint32_t)total;
    memcpy(p, &h, sizeof h);
    memcpy(p + sizeof h, e->key, h.klen);
    size_t used;
    if (cparsl_value_encode(e->result, p + sizeof h + h.klen, h.rlen, &used) <
        0)
        memset(p + sizeof h + h.klen, 0, h.rlen); /* sized above */
    rec_publish(s);
    /* task_exit: the entry should reach the disk soon, not at the
     * writer's next timer. */
    if (s->ckpt_flush_each &&
        atomic_load_explicit(&s->writer_sleeping, memory_order_relaxed) &&
        atomic_exchange(&s->writer_sleeping, false))
        wake_writer(s, false);
}

static char *dup_or_null(const char *p)
{
    return p ? strdup(p) : NULL;
}

static void h5_block_event(cparsl_store_t *st, const cparsl_block_event_t *ev)
{
    struct h5store *s = cparsl_container_of(st, struct h5store, base);
    struct blk b = {
        .executor = dup_or_null(ev->executor),
        .event = dup_or_null(ev->event),
        .job = dup_or_null(ev->job_id),
        .t_ns = ev->t_ns ? ev->t_ns : cparsl_now_ns(),
        .block = ev->block,
        .nodes = ev->nodes,
        .workers = ev->workers,
    };
    pthread_mutex_lock(&s->mu);
    if (s->nblks == s->blks_cap) {
        size_t cap = s->blks_cap ? s->blks_cap * 2 : 16;
        void *v = realloc(s->blks, cap * sizeof *s->blks);
        if (v) {
            s->blks = v;
            s->blks_cap = cap;
        }
    }
    bool kept = s->nblks < s->blks_cap;
    if (kept)
        s->blks[s->nblks++] = b;
    pthread_mutex_unlock(&s->mu);
    if (!kept) {
        free(b.executor);
        free(b.event);
        free(b.job);
        CPARSL_LOG(CPARSL_LOG_ERROR, "store",
                   "hdf5 store: out of memory recording block %" PRId64
                   " of '%s'",
                   ev->block, ev->executor ? ev->executor : "?");
    }
}

static int failure(struct h5store *s, cparsl_error_t *err)
{
    int rc = atomic_load(&s->failed);
    if (rc < 0 && err) {
        pthread_mutex_lock(&s->mu);
        *err = s->fail_err;
        pthread_mutex_unlock(&s->mu);
    }
    return rc;
}

/* Queue a flush (or the close) and wake the writer at once. */
static uint64_t post_marker(struct h5store *s, enum rec_kind kind)
{
    struct rec *r = rec_next(s);
    uint64_t ticket = ++s->ticket;
    r->kind = (uint8_t)kind;
    r->t_ns = (int64_t)ticket;
    r->blen = 0;
    s->head++;
    atomic_store_explicit(&s->head_pub, s->head, memory_order_release);
    atomic_store(&s->writer_sleeping, false);
    wake_writer(s, true);
    return ticket;
}

static int h5_flush(cparsl_store_t *st, cparsl_error_t *err)
{
    struct h5store *s = cparsl_container_of(st, struct h5store, base);
    uint64_t ticket = post_marker(s, R_FLUSH);
    pthread_mutex_lock(&s->mu);
    while (s->flushed < ticket)
        pthread_cond_wait(&s->done_cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    return failure(s, err);
}

static void store_free(struct h5store *s)
{
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->data_cv);
    pthread_cond_destroy(&s->space_cv);
    pthread_cond_destroy(&s->done_cv);
    for (size_t i = 0; i < s->nblks; i++) {
        free(s->blks[i].executor);
        free(s->blks[i].event);
        free(s->blks[i].job);
    }
    free(s->blks);
    free(s->recs);
    free(s->bytes);
    free(s->config_yaml);
    free(s);
}

static int h5_close(cparsl_store_t *st, cparsl_error_t *err)
{
    struct h5store *s = cparsl_container_of(st, struct h5store, base);
    post_marker(s, R_CLOSE);
    pthread_join(s->writer, NULL);
    if (s->waits)
        CPARSL_LOG(CPARSL_LOG_WARN, "store",
                   "hdf5 store: the writer fell behind; submission waited "
                   "%" PRIu64 " times, %.3f s in all",
                   s->waits, (double)s->waited_ns / 1e9);
    CPARSL_LOG(CPARSL_LOG_INFO, "store",
               "hdf5 store: %s closed: %" PRIu64 " task rows, %" PRIu64
               " dependency edges, %" PRIu64 " heap bytes, %" PRIu64
               " records, %" PRIu64 " flushes, %.3f s writing; "
               "submission waited %" PRIu64 " times (%.3f s); %" PRIu64
               " records too large for the queue",
               s->path, s->nrows, s->ndeps, s->heap_len, s->nrecords,
               s->nflushes, (double)s->write_ns / 1e9, s->waits,
               (double)s->waited_ns / 1e9, s->big);
    int rc = failure(s, err);
    store_free(s);
    return rc;
}

/* ==== the writer ========================================================== */

static herr_t first_desc(unsigned n, const H5E_error2_t *e, void *ctx)
{
    char *buf = ctx;
    if (n == 0 && e->desc)
        snprintf(buf, 200, "%s", e->desc);
    return 0;
}

/* Record the writer's first failure, naming what failed and HDF5's own
 * innermost reason. */
static int h5_fail(struct h5store *s, cparsl_error_t *err, const char *what)
{
    char detail[200] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, first_desc, detail);
    H5Eclear2(H5E_DEFAULT);
    cparsl_error_t local;
    if (!err)
        err = &local;
    cparsl_error_set(err, -EIO, "hdf5 store: %s '%s' failed%s%s", what, s->path,
                     *detail ? ": " : "", detail);
    return -EIO;
}

static void writer_failed(struct h5store *s, const cparsl_error_t *e)
{
    if (atomic_load(&s->failed) < 0)
        return;
    CPARSL_LOG(CPARSL_LOG_ERROR, "store", "%s; no more records are written",
               e->text);
    pthread_mutex_lock(&s->mu);
    s->fail_err = *e;
    pthread_mutex_unlock(&s->mu);
    atomic_store(&s->failed, e->code ? e->code : -EIO);
}

static hid_t make_row_type(void)
{
    hid_t st = H5Tenum_create(H5T_NATIVE_INT32);
    for (int32_t i = 0; i < CPARSL_STATE_COUNT; i++)
        H5Tenum_insert(st, cparsl_state_name((cparsl_state_t)i), &i);
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(struct row));
    char name[64];
    H5Tinsert(t, "id", HOFFSET(struct row, id), H5T_NATIVE_UINT64);
    for (int i = 0; i < NSTR; i++) {
        snprintf(name, sizeof name, "%s_off", str_names[i]);
        H5Tinsert(t, name, HOFFSET(struct row, off) + 8 * (size_t)i,
                  H5T_NATIVE_UINT64);
    }
    for (size_t i = 0; i < sizeof time_cols / sizeof time_cols[0]; i++)
        H5Tinsert(t, time_cols[i].name, time_cols[i].off, H5T_NATIVE_INT64);
    H5Tinsert(t, "cpu_s", HOFFSET(struct row, cpu_s), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "maxrss_kib", HOFFSET(struct row, maxrss_kib),
              H5T_NATIVE_INT64);
    for (int i = 0; i < NSTR; i++) {
        snprintf(name, sizeof name, "%s_len", str_names[i]);
        H5Tinsert(t, name, HOFFSET(struct row, len) + 4 * (size_t)i,
                  H5T_NATIVE_UINT32);
    }
    H5Tinsert(t, "state", HOFFSET(struct row, state), st);
    static const struct {
        const char *name;
        size_t off;
    } ints[] = {
        {"tries", offsetof(struct row, tries)},
        {"worker", offsetof(struct row, worker)},
        {"slot", offsetof(struct row, slot)},
        {"node", offsetof(struct row, node)},
        {"exit_code", offsetof(struct row, exit_code)},
        {"term_signal", offsetof(struct row, term_signal)},
        {"error_code", offsetof(struct row, error_code)},
        {"result_type", offsetof(struct row, result_type)},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        H5Tinsert(t, ints[i].name, ints[i].off, H5T_NATIVE_INT32);
    H5Tclose(st);
    return t;
}

#define COL(t, st, name, type) H5Tinsert(t, #name, HOFFSET(st, name), type)

static hid_t make_ckpt_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(struct ckpt_row));
    COL(t, struct ckpt_row, task_id, H5T_NATIVE_UINT64);
    COL(t, struct ckpt_row, hash, H5T_NATIVE_UINT64);
    COL(t, struct ckpt_row, key_off, H5T_NATIVE_UINT64);
    COL(t, struct ckpt_row, result_off, H5T_NATIVE_UINT64);
    COL(t, struct ckpt_row, t_ns, H5T_NATIVE_INT64);
    COL(t, struct ckpt_row, key_len, H5T_NATIVE_UINT32);
    COL(t, struct ckpt_row, result_len, H5T_NATIVE_UINT32);
    return t;
}

static hid_t make_worker_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(struct worker_row));
    COL(t, struct worker_row, executor_off, H5T_NATIVE_UINT64);
    COL(t, struct worker_row, host_off, H5T_NATIVE_UINT64);
    COL(t, struct worker_row, first_task, H5T_NATIVE_UINT64);
    COL(t, struct worker_row, t_first, H5T_NATIVE_INT64);
    COL(t, struct worker_row, executor_len, H5T_NATIVE_UINT32);
    COL(t, struct worker_row, host_len, H5T_NATIVE_UINT32);
    COL(t, struct worker_row, node, H5T_NATIVE_INT32);
    COL(t, struct worker_row, worker, H5T_NATIVE_INT32);
    COL(t, struct worker_row, slot, H5T_NATIVE_INT32);
    return t;
}

static hid_t make_block_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(struct block_row));
    COL(t, struct block_row, t_ns, H5T_NATIVE_INT64);
    COL(t, struct block_row, block, H5T_NATIVE_INT64);
    COL(t, struct block_row, executor_off, H5T_NATIVE_UINT64);
    COL(t, struct block_row, event_off, H5T_NATIVE_UINT64);
    COL(t, struct block_row, job_off, H5T_NATIVE_UINT64);
    COL(t, struct block_row, executor_len, H5T_NATIVE_UINT32);
    COL(t, struct block_row, event_len, H5T_NATIVE_UINT32);
    COL(t, struct block_row, job_len, H5T_NATIVE_UINT32);
    COL(t, struct block_row, nodes, H5T_NATIVE_INT32);
    COL(t, struct block_row, workers, H5T_NATIVE_INT32);
    return t;
}

/* A fixed-length string attribute (written before SWMR starts). */
static int put_str_attr(hid_t obj, const char *name, const char *val)
{
    size_t n = strlen(val);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, n ? n : 1);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, t, n ? val : "");
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return rc < 0 || a < 0 ? -1 : 0;
}

static int put_int_attr(hid_t obj, const char *name, hid_t type,
                        const void *val)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, type, val);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    return rc < 0 || a < 0 ? -1 : 0;
}

/* A 1-D (or N x 2) chunked dataset with an unlimited first dimension. */
static hid_t make_ds(hid_t file, const char *name, hid_t type, int rank,
                     hsize_t chunk)
{
    hsize_t dims[2] = {0, 2}, maxd[2] = {H5S_UNLIMITED, 2};
    hsize_t ch[2] = {chunk, 2};
    hid_t sp = H5Screate_simple(rank, dims, maxd);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, rank, ch);
    hid_t ds = H5Dcreate2(file, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(sp);
    return ds;
}

static int create_file(struct h5store *s, cparsl_error_t *err)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    s->file = H5Fcreate(s->path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (s->file < 0)
        return h5_fail(s, err, "cannot create");

    s->row_type = make_row_type();
    s->heap_ds = make_ds(s->file, "/heap", H5T_NATIVE_UINT8, 1, HEAP_CHUNK);
    s->tasks_ds = make_ds(s->file, "/tasks", s->row_type, 1, TASK_CHUNK);
    s->deps_ds = make_ds(s->file, "/deps", H5T_NATIVE_UINT64, 2, DEP_CHUNK);
    if (s->row_type < 0 || s->heap_ds < 0 || s->tasks_ds < 0 || s->deps_ds < 0)
        return h5_fail(s, err, "cannot create the datasets in");
    static const struct {
        const char *name;
        hid_t (*type)(void);
        hsize_t chunk;
    } extra[NTABLES] = {
        [T_CKPT] = {"/checkpoint", make_ckpt_type, 1024},
        [T_WORKERS] = {"/workers", make_worker_type, 256},
        [T_BLOCKS] = {"/blocks", make_block_type, 64},
    };
    for (int i = 0; i < NTABLES; i++) {
        struct table *tb = &s->tables[i];
        tb->name = extra[i].name;
        tb->type = extra[i].type();
        tb->size = H5Tget_size(tb->type);
        tb->ds = tb->type < 0
                     ? -1
                     : make_ds(s->file, tb->name, tb->type, 1, extra[i].chunk);
        if (tb->ds < 0)
            return h5_fail(s, err, "cannot create the datasets in");
    }

    hid_t meta =
        H5Gcreate2(s->file, "/meta", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (meta < 0)
        return h5_fail(s, err, "cannot create /meta in");
    int32_t layout = LAYOUT_VERSION;
    int64_t created = cparsl_now_ns();
    char states[256] = "", host[256] = "";
    for (int i = 0; i < CPARSL_STATE_COUNT; i++)
        snprintf(states + strlen(states), sizeof states - strlen(states),
                 "%s%s", i ? "," : "", cparsl_state_name((cparsl_state_t)i));
    gethostname(host, sizeof host - 1);
    char pid[32];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    int bad =
        put_int_attr(meta, "layout_version", H5T_NATIVE_INT32, &layout) |
        put_str_attr(meta, "cparsl_version", CPARSL_VERSION_STRING) |
        put_str_attr(meta, "run_dir", s->run_dir) |
        put_str_attr(meta, "config", s->config_yaml ? s->config_yaml : "") |
        put_str_attr(meta, "states", states) |
        put_str_attr(meta, "host", host) | put_str_attr(meta, "pid", pid) |
        put_int_attr(meta, "created_ns", H5T_NATIVE_INT64, &created);
    H5Gclose(meta);
    if (bad)
        return h5_fail(s, err, "cannot write /meta's attributes in");
    /* From here on, only the three datasets grow. */
    if (H5Fstart_swmr_write(s->file) < 0)
        return h5_fail(s, err, "cannot start SWMR writing of");
    return 0;
}

static void close_file(struct h5store *s)
{
    if (s->heap_ds > 0)
        H5Dclose(s->heap_ds);
    if (s->tasks_ds > 0)
        H5Dclose(s->tasks_ds);
    if (s->deps_ds > 0)
        H5Dclose(s->deps_ds);
    if (s->row_type > 0)
        H5Tclose(s->row_type);
    s->heap_ds = s->tasks_ds = s->deps_ds = s->row_type = -1;
    for (int i = 0; i < NTABLES; i++) {
        struct table *tb = &s->tables[i];
        if (tb->ds > 0)
            H5Dclose(tb->ds);
        if (tb->type > 0)
            H5Tclose(tb->type);
        tb->ds = tb->type = -1;
        free(tb->buf);
        tb->buf = NULL;
    }
    if (s->file > 0 && H5Fclose(s->file) < 0) {
        cparsl_error_t e;
        h5_fail(s, &e, "cannot close");
        writer_failed(s, &e);
    }
    s->file = -1;
}

/* Append n items at 'at' (growing the dataset first). */
static int append(hid_t ds, hid_t type, int rank, uint64_t at, size_t n,
                  const void *buf)
{
    hsize_t size[2] = {at + n, 2}, start[2] = {at, 0}, count[2] = {n, 2};
    if (H5Dset_extent(ds, size) < 0)
        return -1;
    hid_t fs = H5Dget_space(ds);
    hid_t ms = H5Screate_simple(rank, count, NULL);
    herr_t rc =
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    if (rc >= 0)
        rc = H5Dwrite(ds, type, ms, fs, H5P_DEFAULT, buf);
    H5Sclose(ms);
    H5Sclose(fs);
    return rc < 0 ? -1 : 0;
}

/* Write what the writer gathered: the heap first, flushed, so that no row
 * on disk points past the heap a reader can see. */
static void write_out(struct h5store *s, bool flush)
{
    if (atomic_load(&s->failed) < 0 || s->file < 0)
        return;
    int64_t t0 = mono_ns();
    cparsl_error_t e;
    if (s->heap_buf_len) {
        if (append(s->heap_ds, H5T_NATIVE_UINT8, 1, s->heap_len,
                   s->heap_buf_len, s->heap_buf) < 0 ||
            H5Dflush(s->heap_ds) < 0) {
            h5_fail(s, &e, "writing /heap of");
            writer_failed(s, &e);
            return;
        }
        s->heap_len += s->heap_buf_len;
        s->heap_buf_len = 0;
    }
    if (s->nrow_buf) {
        if (append(s->tasks_ds, s->row_type, 1, s->nrows, s->nrow_buf,
                   s->rows) < 0) {
            h5_fail(s, &e, "writing /tasks of");
            writer_failed(s, &e);
            return;
        }
        s->nrows += s->nrow_buf;
        s->nrow_buf = 0;
    }
    if (s->ndep_buf) {
        if (append(s->deps_ds, H5T_NATIVE_UINT64, 2, s->ndeps, s->ndep_buf,
                   s->deps) < 0) {
            h5_fail(s, &e, "writing /deps of");
            writer_failed(s, &e);
            return;
        }
        s->ndeps += s->ndep_buf;
        s->ndep_buf = 0;
    }
    for (int i = 0; i < NTABLES; i++) {
        struct table *tb = &s->tables[i];
        if (!tb->n)
            continue;
        if (append(tb->ds, tb->type, 1, tb->on_disk, tb->n, tb->buf) < 0) {
            h5_fail(s, &e, "writing a table of");
            cparsl_error_prefix(&e, "%s", tb->name);
            writer_failed(s, &e);
            return;
        }
        tb->on_disk += tb->n;
        tb->n = 0;
    }
    if (flush) {
        bool bad = H5Dflush(s->tasks_ds) < 0 || H5Dflush(s->deps_ds) < 0;
        for (int i = 0; i < NTABLES; i++)
            bad = bad || H5Dflush(s->tables[i].ds) < 0;
        if (bad || H5Fflush(s->file, H5F_SCOPE_GLOBAL) < 0) {
            h5_fail(s, &e, "flushing");
            writer_failed(s, &e);
            return;
        }
        s->nflushes++;
        s->ckpt_unflushed = false;
    }
    s->write_ns += mono_ns() - t0;
}

static void oom(struct h5store *s)
{
    cparsl_error_t e;
    cparsl_error_set(&e, -ENOMEM, "hdf5 store: out of memory writing '%s'",
                     s->path);
    writer_failed(s, &e);
}

/* Bytes onto the heap; their offset in *off. */
static bool heap_put(struct h5store *s, const void *p, uint32_t len,
                     uint64_t *off)
{
    *off = len ? s->heap_len + s->heap_buf_len : 0;
    if (!len)
        return true;
    if (s->heap_buf_len + len > s->heap_buf_cap) {
        size_t cap = s->heap_buf_cap ? s->heap_buf_cap : HEAP_BATCH;
        while (cap < s->heap_buf_len + len)
            cap *= 2;
        uint8_t *nb = realloc(s->heap_buf, cap);
        if (!nb) {
            oom(s);
            return false;
        }
        s->heap_buf = nb;
        s->heap_buf_cap = cap;
    }
    memcpy(s->heap_buf + s->heap_buf_len, p, len);
    s->heap_buf_len += len;
    return true;
}

/* App, executor and host names repeat: store each once. */
static bool heap_put_interned(struct h5store *s, int col, const char *p,
                              uint32_t len, uint64_t *off)
{
    if (!len) {
        *off = 0;
        return true;
    }
    struct intern *t = s->interned[col];
    for (int i = 0; i < INTERN_SLOTS; i++)
        if (t[i].s && t[i].len == len && memcmp(t[i].s, p, len) == 0) {
            *off = t[i].off;
            return true;
        }
    if (!heap_put(s, p, len, off))
        return false;
    struct intern *slot = &t[s->intern_next[col]++ % INTERN_SLOTS];
    char *copy = malloc(len);
    if (copy) {
        memcpy(copy, p, len);
        free(slot->s);
        slot->s = copy;
        slot->len = len;
        slot->off = *off;
    }
    return true;
}

/* ---- the unfinished tasks ---------------------------------------------
 *
 * Ids are handed out in order and most unfinished tasks are recent, so a
 * task lives in a direct-mapped ring at slot id % dir_cap: neighbours
 * share cache lines and a lookup is one compare.  A task whose slot is
 * taken by an older one still running goes to a small hash map (open
 * addressing, linear probing); when that holds more than 1/16 of the
 * ring, the ring doubles.
 */

static size_t map_slot(const struct h5store *s, uint64_t id)
{
    uint64_t h = id * UINT64_C(0x9e3779b97f4a7c15);
    return (size_t)(h >> 32) & (s->map_cap - 1);
}

static struct partial *table_alloc(size_t n)
{
    struct partial *t = aligned_alloc(64, n * sizeof *t);
    if (t)
        memset(t, 0, n * sizeof *t);
    return t;
}

static void map_put(struct h5store *s, const struct partial *p)
{
    size_t j = map_slot(s, p->id);
    while (s->map[j].id)
        j = (j + 1) & (s->map_cap - 1);
    s->map[j] = *p;
    s->map_n++;
}

static bool map_grow(struct h5store *s)
{
    size_t ncap = s->map_cap ? s->map_cap * 2 : 256;
    struct partial *old = s->map, *nm = table_alloc(ncap);
    if (!nm)
        return false;
    size_t ocap = s->map_cap;
    s->map = nm;
    s->map_cap = ncap;
    s->map_n = 0;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].id)
            map_put(s, &old[i]);
    free(old);
    return true;
}

static struct partial *map_find(struct h5store *s, uint64_t id)
{
    if (!s->map_n)
        return NULL;
    for (size_t j = map_slot(s, id);; j = (j + 1) & (s->map_cap - 1)) {
        if (s->map[j].id == id)
            return &s->map[j];
        if (!s->map[j].id)
            return NULL;
    }
}

/* Backward-shift deletion keeps every probe chain unbroken. */
static void map_del(struct h5store *s, struct partial *p)
{
    size_t mask = s->map_cap - 1;
    size_t i = (size_t)(p - s->map);
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!s->map[j].id)
            break;
        size_t k = map_slot(s, s->map[j].id);
        /* Move j back to i unless its home lies cyclically in (i, j]. */
        if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
            s->map[i] = s->map[j];
            i = j;
        }
    }
    s->map[i].id = 0;
    s->map_n--;
}

/* Put p in the ring if its slot is free, else in the map. */
static bool table_put(struct h5store *s, const struct partial *p)
{
    struct partial *d = &s->dir[p->id & (s->dir_cap - 1)];
    if (!d->id) {
        *d = *p;
        s->dir_n++;
        return true;
    }
    if ((s->map_n + 1) * 2 > s->map_cap && !map_grow(s))
        return false;
    map_put(s, p);
    return true;
}

static bool dir_grow(struct h5store *s)
{
    size_t ocap = s->dir_cap, mcap = s->map_cap;
    struct partial *od = s->dir, *om = s->map;
    struct partial *nd = table_alloc(ocap ? ocap * 2 : 16384);
    if (!nd)
        return false;
    s->dir = nd;
    s->dir_cap = ocap ? ocap * 2 : 16384;
    s->dir_n = 0;
    s->map = NULL;
    s->map_cap = s->map_n = 0;
    bool ok = true;
    for (size_t i = 0; i < ocap; i++)
        if (od[i].id)
            ok = table_put(s, &od[i]) && ok;
    for (size_t i = 0; i < mcap; i++)
        if (om[i].id)
            ok = table_put(s, &om[i]) && ok;
    free(od);
    free(om);
    return ok;
}

static struct partial *table_find(struct h5store *s, uint64_t id)
{
    struct partial *d = &s->dir[id & (s->dir_cap - 1)];
    return d->id == id ? d : map_find(s, id);
}

static struct partial *table_add(struct h5store *s, uint64_t id)
{
    if ((!s->dir_cap || s->map_n > s->dir_cap / 16) && !dir_grow(s))
        return NULL;
    struct partial p = {.id = id};
    if (!table_put(s, &p))
        return NULL;
    return table_find(s, id);
}

static void table_del(struct h5store *s, struct partial *p)
{
    if (p >= s->dir && p < s->dir + s->dir_cap) {
        p->id = 0;
        s->dir_n--;
    } else {
        map_del(s, p);
    }
}

/* A zeroed new row of table k, or NULL (out of memory, reported). */
static void *table_row(struct h5store *s, int k)
{
    struct table *tb = &s->tables[k];
    if (tb->n >= ROW_BATCH)
        write_out(s, false);
    if (tb->n == tb->cap) {
        size_t cap = tb->cap ? tb->cap * 2 : 256;
        void *nb = realloc(tb->buf, cap * tb->size);
        if (!nb) {
            oom(s);
            return NULL;
        }
        tb->buf = nb;
        tb->cap = cap;
    }
    void *r = tb->buf + tb->n++ * tb->size;
    memset(r, 0, tb->size);
    return r;
}

static void on_ckpt(struct h5store *s, const uint8_t *p)
{
    struct ckh h;
    memcpy(&h, p, sizeof h);
    struct ckpt_row *r = table_row(s, T_CKPT);
    if (!r)
        return;
    r->task_id = h.task_id;
    r->hash = h.hash;
    r->t_ns = h.t_ns;
    /* Key and result side by side on the heap: a resuming run reads
     * them in one sweep. */
    if (heap_put(s, p + sizeof h, h.klen, &r->key_off) &&
        heap_put(s, p + sizeof h + h.klen, h.rlen, &r->result_off)) {
        r->key_len = h.klen;
        r->result_len = h.rlen;
    }
    s->ckpt_unflushed = true;
}

static size_t wkey_slot(const struct wkey *k, size_t cap)
{
    uint64_t h = k->executor_off * UINT64_C(0x9e3779b97f4a7c15);
    h ^= ((uint64_t)(uint32_t)k->node << 32 | (uint32_t)k->worker) *
         UINT64_C(0xc2b2ae3d27d4eb4f);
    h ^= (uint64_t)(uint32_t)k->slot * UINT64_C(0x165667b19e3779f9);
    return (size_t)(h >> 17) & (cap - 1);
}

/* True the first time a worker is seen (then it is remembered). */
static bool worker_new(struct h5store *s, struct wkey k)
{
    if (s->wset_n * 2 >= s->wset_cap) {
        size_t cap = s->wset_cap ? s->wset_cap * 2 : 256;
        struct wkey *v = calloc(cap, sizeof *v);
        if (!v)
            return false; /* not recorded: the tasks still are */
        for (size_t i = 0; i < s->wset_cap; i++) {
            if (!s->wset[i].used)
                continue;
            size_t j = wkey_slot(&s->wset[i], cap);
            while (v[j].used)
                j = (j + 1) & (cap - 1);
            v[j] = s->wset[i];
        }
        free(s->wset);
        s->wset = v;
        s->wset_cap = cap;
    }
    k.used = 1;
    size_t j = wkey_slot(&k, s->wset_cap);
    for (; s->wset[j].used; j = (j + 1) & (s->wset_cap - 1))
        if (memcmp(&s->wset[j], &k, sizeof k) == 0)
            return false;
    s->wset[j] = k;
    s->wset_n++;
    return true;
}

/* ---- records into rows -------------------------------------------------- */

static struct row *row_next(struct h5store *s)
{
    if (!s->rows) {
        s->rows = malloc(ROW_BATCH * sizeof *s->rows);
        if (!s->rows) {
            oom(s);
            return NULL;
        }
    }
    if (s->nrow_buf == ROW_BATCH)
        write_out(s, false);
    if (s->nrow_buf == ROW_BATCH) /* writing failed */
        s->nrow_buf = 0;
    struct row *r = &s->rows[s->nrow_buf++];
    memset(r, 0, sizeof *r);
    return r;
}

static void on_final(struct h5store *s, const struct rec *rec, const uint8_t *p)
{
    struct fin f;
    memcpy(&f, p, sizeof f);
    struct partial *pt = s->dir_cap ? table_find(s, rec->id) : NULL;
    struct row *r = row_next(s);
    if (!r)
        return;
    r->id = rec->id;
    for (int k = 0; pt && k < NOPEN; k++)
        *row_time(r, open_states[k]) = pt->t[k];
    if (pt)
        table_del(s, pt);
    /* A task left unfinished at the end never reached a final state. */
    r->t_final = state_is_final((cparsl_state_t)rec->to) ? rec->t_ns : 0;
    /* Not queued (h5_task_event): the DFK's and the last try's stamps. */
    r->t_pending = f.t_pending;
    r->t_launched = f.t_launch;
    r->state = rec->to;
    /* Tries are counted from 0; a task that never launched had none. */
    r->tries = r->t_launched ? rec->try_no + 1 : 0;
    r->t_dispatch = f.t_dispatch;
    r->t_start = f.t_start;
    r->t_end = f.t_end;
    r->cpu_s = f.cpu_s;
    r->maxrss_kib = f.maxrss_kib;
    r->worker = f.worker;
    r->slot = f.slot;
    r->node = f.node;
    r->exit_code = f.exit_code;
    r->term_signal = f.term_signal;
    r->error_code = f.error_code;
    r->result_type = f.result_type;
    const uint8_t *q = p + sizeof f;
    for (int i = 0; i < NSTR; i++) {
        bool ok = i <= S_HOST ? heap_put_interned(s, i, (const char *)q,
                                                  f.len[i], &r->off[i])
                              : heap_put(s, q, f.len[i], &r->off[i]);
        r->len[i] = ok ? f.len[i] : 0;
        q += f.len[i];
    }
    /* Last: a table row may write the gathered rows out, this one too. */
    struct wkey k = {.executor_off = r->off[S_EXECUTOR],
                     .node = r->node,
                     .worker = r->worker,
                     .slot = r->slot};
    if (r->worker >= 0 && worker_new(s, k)) {
        struct row done = *r;
        struct worker_row *w = table_row(s, T_WORKERS);
        if (w) {
            w->executor_off = done.off[S_EXECUTOR];
            w->executor_len = done.len[S_EXECUTOR];
            w->host_off = done.off[S_HOST];
            w->host_len = done.len[S_HOST];
            w->first_task = done.id;
            w->t_first = done.t_start ? done.t_start : done.t_final;
            w->node = done.node;
            w->worker = done.worker;
            w->slot = done.slot;
        }
    }
}

/* Block events reported since the last look become rows. */
static void take_blocks(struct h5store *s)
{
    pthread_mutex_lock(&s->mu);
    struct blk *v = s->blks;
    size_t n = s->nblks;
    s->blks = NULL;
    s->nblks = s->blks_cap = 0;
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < n; i++) {
        struct blk *b = &v[i];
        struct block_row *r =
            atomic_load(&s->failed) == 0 ? table_row(s, T_BLOCKS) : NULL;
        if (r) {
            const char *str[3] = {b->executor, b->event, b->job};
            uint64_t *off[3] = {&r->executor_off, &r->event_off, &r->job_off};
            uint32_t *len[3] = {&r->executor_len, &r->event_len, &r->job_len};
            for (int k = 0; k < 3; k++) {
                uint32_t l = str[k] ? (uint32_t)strnlen(str[k], 4096) : 0;
                if (heap_put_interned(s, k == 0 ? S_EXECUTOR : S_APP, str[k], l,
                                      off[k]))
                    *len[k] = l;
            }
            r->t_ns = b->t_ns;
            r->block = b->block;
            r->nodes = b->nodes;
            r->workers = b->workers;
        }
        free(b->executor);
        free(b->event);
        free(b->job);
    }
    free(v);
}

static void on_event(struct h5store *s, const struct rec *rec)
{
    struct partial *pt = s->dir_cap ? table_find(s, rec->id) : NULL;
    if (!pt)
        pt = table_add(s, rec->id);
    if (!pt) {
        oom(s);
        return;
    }
    for (int k = 0; k < NOPEN; k++)
        if (open_states[k] == rec->to)
            pt->t[k] = rec->t_ns;
}

static void on_dep(struct h5store *s, const struct rec *rec)
{
    if (s->ndep_buf == s->dep_cap) {
        if (s->ndep_buf >= ROW_BATCH)
            write_out(s, false);
        if (s->ndep_buf == s->dep_cap) {
            size_t cap = s->dep_cap ? s->dep_cap * 2 : 1024;
            void *nd = realloc(s->deps, cap * sizeof *s->deps);
            if (!nd) {
                oom(s);
                return;
            }
            s->deps = nd;
            s->dep_cap = cap;
        }
    }
    s->deps[s->ndep_buf][0] = rec->id;
    s->deps[s->ndep_buf][1] = (uint64_t)rec->t_ns;
    s->ndep_buf++;
}

/* At close: tasks that never reached a final state still get a row, with
 * the last state they were seen in. */
static void write_unfinished(struct h5store *s)
{
    size_t n = s->dir_cap + s->map_cap;
    for (size_t i = 0; i < n && atomic_load(&s->failed) == 0; i++) {
        struct partial *pt =
            i < s->dir_cap ? &s->dir[i] : &s->map[i - s->dir_cap];
        if (!pt->id)
            continue;
        struct row *r = row_next(s);
        if (!r)
            return;
        r->id = pt->id;
        int last = 0;
        for (int k = 0; k < NOPEN; k++) {
            *row_time(r, open_states[k]) = pt->t[k];
            if (pt->t[k] && pt->t[k] >= pt->t[last])
                last = k;
        }
        r->state = (int32_t)open_states[last];
        r->worker = r->slot = r->node = r->exit_code = r->result_type = -1;
        r->cpu_s = -1;
        r->maxrss_kib = -1;
    }
}

static void finish_marker(struct h5store *s, uint64_t ticket)
{
    pthread_mutex_lock(&s->mu);
    s->flushed = ticket;
    pthread_cond_broadcast(&s->done_cv);
    pthread_mutex_unlock(&s->mu);
}

/* Let the producer reuse what the writer has consumed. */
static void release(struct h5store *s, uint64_t tail, uint64_t btail)
{
    atomic_store(&s->tail, tail);
    if (btail)
        atomic_store(&s->btail, btail);
    if (atomic_load(&s->producer_waiting)) {
        pthread_mutex_lock(&s->mu);
        pthread_cond_signal(&s->space_cv);
        pthread_mutex_unlock(&s->mu);
    }
}

/* Consume every record queued so far; true after R_CLOSE. */
static bool drain(struct h5store *s)
{
    uint64_t tail = atomic_load(&s->tail);
    uint64_t head = atomic_load_explicit(&s->head_pub, memory_order_acquire);
    uint64_t btail = 0;
    bool closing = false;
    while (tail != head && !closing) {
        const struct rec *rec = &s->recs[tail & (s->nrec - 1)];
        bool ok = atomic_load_explicit(&s->failed, memory_order_relaxed) == 0;
        switch (rec->kind) {
        case R_EVENT:
            if (ok)
                on_event(s, rec);
            break;
        case R_FINAL:
            if (ok)
                on_final(s, rec, s->bytes + rec->boff % s->nbytes);
            btail = rec->boff + ((rec->blen + 7u) & ~(uint64_t)7);
            break;
        case R_BIG: {
            uint8_t *p = (uint8_t *)(uintptr_t)rec->boff;
            if (ok)
                on_final(s, rec, p);
            free(p);
            break;
        }
        case R_DEP:
            if (ok)
                on_dep(s, rec);
            break;
        case R_CKPT:
            if (rec->big) {
                uint8_t *p = (uint8_t *)(uintptr_t)rec->boff;
                if (ok)
                    on_ckpt(s, p);
                free(p);
            } else {
                if (ok)
                    on_ckpt(s, s->bytes + rec->boff % s->nbytes);
                btail = rec->boff + ((rec->blen + 7u) & ~(uint64_t)7);
            }
            break;
        case R_FLUSH:
            write_out(s, true);
            finish_marker(s, (uint64_t)rec->t_ns);
            break;
        case R_CLOSE:
            closing = true;
            break;
        }
        s->nrecords++;
        tail++;
        /* Give room back in steps, not once per record. */
        if ((tail & 1023) == 0 || tail == head) {
            release(s, tail, btail);
            btail = 0;
        }
        if (tail == head && !closing)
            head = atomic_load_explicit(&s->head_pub, memory_order_acquire);
        if (s->nrow_buf >= ROW_BATCH || s->heap_buf_len >= HEAP_BATCH)
            write_out(s, false);
    }
    release(s, tail, btail);
    return closing;
}

static void *writer_main(void *arg)
{
    struct h5store *s = arg;
    pthread_setname_np(pthread_self(), "cparsl-h5write");
    /* Our errors are read from the stack and reported, not printed. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    cparsl_error_t err;
    cparsl_error_clear(&err);
    int rc = create_file(s, &err);
    pthread_mutex_lock(&s->mu);
    s->opened = true;
    s->open_rc = rc;
    s->open_err = err;
    pthread_cond_broadcast(&s->done_cv);
    pthread_mutex_unlock(&s->mu);
    if (rc < 0) {
        close_file(s);
        return NULL;
    }

    int64_t interval = (int64_t)(s->flush_interval * 1e9);
    int64_t next_flush = mono_ns() + interval;
    for (;;) {
        if (drain(s))
            break;
        take_blocks(s);
        /* task_exit: a checkpoint entry is on disk once its batch is. */
        if (s->ckpt_flush_each && s->ckpt_unflushed)
            write_out(s, true);
        if (mono_ns() >= next_flush) {
            write_out(s, true);
            next_flush = mono_ns() + interval;
        }
        /* Sleep until the timer, a flush or close, or half a ring. */
        pthread_mutex_lock(&s->mu);
        atomic_store(&s->writer_sleeping, true);
        for (;;) {
            uint64_t fill = atomic_load(&s->head_pub) - atomic_load(&s->tail);
            if (s->urgent || fill >= s->nrec / 2 ||
                atomic_load(&s->producer_waiting) || mono_ns() >= next_flush)
                break;
            struct timespec ts;
            abs_mono(&ts, next_flush);
            if (pthread_cond_timedwait(&s->data_cv, &s->mu, &ts) != 0 &&
                mono_ns() >= next_flush)
                break;
            if (!atomic_load(&s->writer_sleeping))
                break; /* a producer woke us */
        }
        atomic_store(&s->writer_sleeping, false);
        s->urgent = false;
        pthread_mutex_unlock(&s->mu);
    }
    take_blocks(s);
    write_unfinished(s);
    write_out(s, true);
    close_file(s);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < INTERN_SLOTS; i++)
            free(s->interned[c][i].s);
    free(s->heap_buf);
    free(s->rows);
    free(s->deps);
    free(s->dir);
    free(s->map);
    free(s->wset);
    return NULL;
}

/* ==== open ================================================================ */

static int h5_open(const cparsl_cnode_t *root, const char *run_dir,
                   cparsl_store_t **out, cparsl_error_t *err)
{
    static const char *const keys[] = {"type", "path", "flush_interval",
                                       "queue", NULL};
    const cparsl_cnode_t *node = cparsl_cnode_get(root, "store");
    const char *path;
    double interval;
    int64_t queue;
    int rc;
    if ((rc = cparsl_cnode_check_keys(node, keys, err)) < 0 ||
        (rc = cparsl_cnode_string(node, "path", NULL, &path, err)) < 0 ||
        (rc = cparsl_cnode_double(node, "flush_interval", 1.0, 0.001, 86400,
                                  &interval, err)) < 0 ||
        (rc = cparsl_cnode_int(node, "queue", 65536, 64, 1 << 24, &queue,
                               err)) < 0)
        return rc;
    if (path && !*path)
        return cparsl_cnode_error(cparsl_cnode_get(node, "path"), err,
                                  "must not be empty");

    struct h5store *s = calloc(1, sizeof *s);
    if (!s)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    int n = path ? snprintf(s->path, sizeof s->path, "%s", path)
                 : snprintf(s->path, sizeof s->path, "%s/results.h5", run_dir);
    if (n >= (int)sizeof s->path) {
        free(s);
        return cparsl_cnode_error(cparsl_cnode_get(node, "path"), err,
                                  "the file name is too long");
    }
    snprintf(s->run_dir, sizeof s->run_dir, "%s", run_dir);
    s->flush_interval = interval;
    const char *mode = "none";
    cparsl_cnode_string(root, "checkpoint_mode", "none", &mode, NULL);
    s->ckpt_flush_each = strcmp(mode, "task_exit") == 0;
    s->config_yaml = cparsl_cnode_to_yaml(root);
    s->nrec = 64;
    while (s->nrec < (uint64_t)queue)
        s->nrec *= 2;
    /* About 128 bytes a final record plus its strings: room for a full
     * ring's worth of small results, never less than 1 MiB. */
    s->nbytes = s->nrec * 128 < (1u << 20) ? (1u << 20) : s->nrec * 128;
    s->recs = malloc(s->nrec * sizeof *s->recs);
    s->bytes = malloc(s->nbytes);
    s->file = s->heap_ds = s->tasks_ds = s->deps_ds = s->row_type = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->data_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&s->space_cv, NULL);
    pthread_cond_init(&s->done_cv, NULL);
    if (!s->recs || !s->bytes) {
        uint64_t nrec = s->nrec;
        store_free(s);
        return cparsl_error_set(err, -ENOMEM,
                                "hdf5 store: out of memory for a queue of "
                                "%" PRIu64 " records",
                                nrec);
    }
    s->base.ops = &cparsl_store_hdf5_ops;
    if ((rc = pthread_create(&s->writer, NULL, writer_main, s)) != 0) {
        store_free(s);
        return cparsl_error_set(err, -rc,
                                "hdf5 store: cannot start the writer: %s",
                                cparsl_strerror(-rc));
    }
    /* The file is made on the writer: wait to hear whether it could be. */
    pthread_mutex_lock(&s->mu);
    while (!s->opened)
        pthread_cond_wait(&s->done_cv, &s->mu);
    rc = s->open_rc;
    pthread_mutex_unlock(&s->mu);
    if (rc < 0) {
        pthread_join(s->writer, NULL);
        if (err)
            *err = s->open_err;
        store_free(s);
        return rc;
    }
    CPARSL_LOG(CPARSL_LOG_INFO, "store",
               "hdf5 store: writing %s (flush every %.3g s, queue of "
               "%" PRIu64 " records)",
               s->path, s->flush_interval, s->nrec);
    *out = &s->base;
    return 0;
}

/* ==== resume: reading an earlier run's checkpoint entries ================ */

/* "checkpoint file 'F': what", with HDF5's innermost reason if any. */
static int resume_fail(cparsl_error_t *err, const char *path, int code,
                       const char *what)
{
    char desc[256] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, first_desc, desc);
    return cparsl_error_set(err, code, "checkpoint file '%s': %s%s%s", path,
                            what, *desc ? ": " : "", desc);
}

/* Read rows [at, at+n) of an earlier file's /checkpoint and hand each
 * entry to fn; bytes past the heap's visible end are not yet written. */
static int resume_rows(hid_t ds, hid_t heap, uint64_t heap_len, hid_t type,
                       uint64_t at, size_t n, struct ckpt_row *rows,
                       int (*fn)(void *, const cparsl_ckpt_t *), void *arg,
                       uint64_t *skipped)
{
    hsize_t start = at, count = n;
    hid_t fs = H5Dget_space(ds), ms = H5Screate_simple(1, &count, NULL);
    herr_t hr =
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL);
    if (hr >= 0)
        hr = H5Dread(ds, type, ms, fs, H5P_DEFAULT, rows);
    H5Sclose(ms);
    H5Sclose(fs);
    if (hr < 0)
        return -EIO;
    /* Entries are written key then result, in order: one sweep of the
     * heap covers a batch, unless it is very large. */
    uint64_t lo = UINT64_MAX, hi = 0;
    for (size_t i = 0; i < n; i++) {
        struct ckpt_row *r = &rows[i];
        if (r->key_off > heap_len || r->key_len > heap_len - r->key_off ||
            r->result_off > heap_len ||
            r->result_len > heap_len - r->result_off || !r->key_len ||
            !r->result_len) {
            r->key_len = 0; /* not yet written (or damaged): skip it */
            continue;
        }
        lo = r->key_off < lo ? r->key_off : lo;
        lo = r->result_off < lo ? r->result_off : lo;
        uint64_t e1 = r->key_off + r->key_len,
                 e2 = r->result_off + r->result_len;
        hi = e1 > hi ? e1 : hi;
        hi = e2 > hi ? e2 : hi;
    }
    if (hi <= lo)
        return 0;
    const uint64_t sweep_max = 64u << 20;
    uint64_t span = hi - lo <= sweep_max ? hi - lo : sweep_max;
    uint8_t *buf = malloc(span);
    if (!buf)
        return -ENOMEM;
    int rc = 0;
    uint64_t base = UINT64_MAX, have = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct ckpt_row *r = &rows[i];
        if (!r->key_len) {
            (*skipped)++;
            continue;
        }
        uint64_t a = r->key_off < r->result_off ? r->key_off : r->result_off;
        uint64_t e1 = r->key_off + r->key_len,
                 e2 = r->result_off + r->result_len;
        uint64_t b = e1 > e2 ? e1 : e2;
        if (b - a > span) {
            (*skipped)++; /* a result over 64 MiB: not resumed */
            continue;
        }
        if (a < base || b > base + have) {
            base = a;
            have = hi - a < span ? hi - a : span;
            hsize_t hs = base, hc = have;
            fs = H5Dget_space(heap);
            ms = H5Screate_simple(1, &hc, NULL);
            hr = H5Sselect_hyperslab(fs, H5S_SELECT_SET, &hs, NULL, &hc, NULL);
            if (hr >= 0)
                hr = H5Dread(heap, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, buf);
            H5Sclose(ms);
            H5Sclose(fs);
            if (hr < 0) {
                rc = -EIO;
                break;
            }
        }
        cparsl_ckpt_t e = {
            .task_id = r->task_id,
            .hash = r->hash,
            .key = buf + (r->key_off - base),
            .key_len = r->key_len,
            .encoded = buf + (r->result_off - base),
            .encoded_len = r->result_len,
        };
        rc = fn(arg, &e) < 0 ? -ENOMEM : 0;
    }
    free(buf);
    return rc;
}

static int resume_file(const char *path,
                       int (*fn)(void *, const cparsl_ckpt_t *), void *arg,
                       uint64_t *nread, uint64_t *skipped, cparsl_error_t *err)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT);
    if (f < 0) /* a file not written in SWMR mode opens plainly */
        f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return resume_fail(err, path, CPARSL_ECONFIG,
                           "cannot open it as an HDF5 file (missing, "
                           "truncated or not HDF5)");
    int rc = 0;
    int32_t version = 0;
    hid_t a = -1, ds = -1, heap = -1, type = -1;
    if (H5Lexists(f, "/meta", H5P_DEFAULT) <= 0 ||
        H5Aexists_by_name(f, "/meta", "layout_version", H5P_DEFAULT) <= 0) {
        rc = resume_fail(err, path, CPARSL_ECONFIG,
                         "not a cparsl run file (no /meta layout_version)");
        goto out;
    }
    a = H5Aopen_by_name(f, "/meta", "layout_version", H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Aread(a, H5T_NATIVE_INT32, &version) < 0) {
        rc = resume_fail(err, path, CPARSL_ECONFIG,
                         "cannot read /meta layout_version");
        goto out;
    }
    if (version > LAYOUT_VERSION || version < 1) {
        char what[160];
        snprintf(what, sizeof what,
                 "layout version %d; this cparsl reads version %d%s",
                 (int)version, LAYOUT_VERSION,
                 version > LAYOUT_VERSION ? " (written by a newer cparsl)"
                                          : "");
        rc = resume_fail(err, path, CPARSL_ECONFIG, what);
        goto out;
    }
    if (H5Lexists(f, "/checkpoint", H5P_DEFAULT) <= 0 ||
        H5Lexists(f, "/heap", H5P_DEFAULT) <= 0) {
        rc = resume_fail(err, path, CPARSL_ECONFIG,
                         "has no /checkpoint table or /heap");
        goto out;
    }
    ds = H5Dopen2(f, "/checkpoint", H5P_DEFAULT);
    heap = H5Dopen2(f, "/heap", H5P_DEFAULT);
    type = make_ckpt_type();
    hsize_t nrows = 0, heap_len = 0;
    hid_t sp;
    if (ds < 0 || heap < 0 || (sp = H5Dget_space(ds)) < 0) {
        rc = resume_fail(err, path, -EIO, "cannot open /checkpoint");
        goto out;
    }
    if (H5Sget_simple_extent_ndims(sp) != 1)
        rc = resume_fail(err, path, CPARSL_ECONFIG,
                         "/checkpoint is not a table");
    else
        H5Sget_simple_extent_dims(sp, &nrows, NULL);
    H5Sclose(sp);
    if (rc < 0)
        goto out;
    if ((sp = H5Dget_space(heap)) < 0 || H5Sget_simple_extent_ndims(sp) != 1) {
        rc = resume_fail(err, path, CPARSL_ECONFIG, "/heap is not a 1-D array");
        if (sp >= 0)
            H5Sclose(sp);
        goto out;
    }
    H5Sget_simple_extent_dims(sp, &heap_len, NULL);
    H5Sclose(sp);
    enum { BATCH = 4096 };
    struct ckpt_row *rows = malloc(BATCH * sizeof *rows);
    if (!rows) {
        rc = cparsl_error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (uint64_t at = 0; at < nrows && rc == 0; at += BATCH) {
        size_t n = nrows - at < BATCH ? (size_t)(nrows - at) : BATCH;
        rc = resume_rows(ds, heap, heap_len, type, at, n, rows, fn, arg,
                         skipped);
        if (rc == -ENOMEM)
            rc = cparsl_error_set(err, rc, "out of memory loading checkpoints");
        else if (rc < 0)
            rc = resume_fail(err, path, rc,
                             "cannot read /checkpoint (is it ours?)");
    }
    free(rows);
    if (rc == 0)
        *nread += nrows;
out:
    if (type >= 0)
        H5Tclose(type);
    if (heap >= 0)
        H5Dclose(heap);
    if (ds >= 0)
        H5Dclose(ds);
    if (a >= 0)
        H5Aclose(a);
    H5Fclose(f);
    return rc;
}

static int h5_resume(cparsl_store_t *st, const char *const *paths, size_t n,
                     int (*fn)(void *, const cparsl_ckpt_t *), void *arg,
                     cparsl_error_t *err)
{
    struct h5store *s = cparsl_container_of(st, struct h5store, base);
    (void)s;
    /* Errors are reported in our words, not printed by HDF5. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    uint64_t nread = 0, skipped = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = resume_file(paths[i], fn, arg, &nread, &skipped, err);
        if (rc < 0)
            return rc;
    }
    if (skipped)
        CPARSL_LOG(CPARSL_LOG_WARN, "store",
                   "hdf5 store: %" PRIu64 " of %" PRIu64
                   " checkpoint entries were not (fully) written or too "
                   "large, and are not resumed",
                   skipped, nread);
    return 0;
}

const struct cparsl_store_ops cparsl_store_hdf5_ops = {
    .name = "hdf5",
    .flags = CPARSL_STORE_FINALS,
    .open = h5_open,
    .task_event = h5_task_event,
    .dependency = h5_dependency,
    .flush = h5_flush,
    .close = h5_close,
    .checkpoint = h5_checkpoint,
    .resume = h5_resume,
    .block_event = h5_block_event,
};
