/*
 * runfile.h - reading a run file (docs/run-file.md) for the cparsl tool:
 * the tasks' columns that inspect and report use, their app names and
 * error texts, in memory.
 */
#ifndef CPARSL_TOOLS_RUNFILE_H
#define CPARSL_TOOLS_RUNFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RF_MAX_STATES 16

typedef struct rf_task {
    uint64_t id;
    int64_t t_pending, t_start, t_end, t_final;
    int32_t state, worker, slot, node, tries;
    uint32_t app; /* index into rf_file.apps */
    char *error;  /* failed tasks: the error text (NULL otherwise) */
} rf_task_t;

/* One /blocks row: a block's state change. */
typedef struct rf_block {
    int64_t t_ns, block;
    int32_t nodes, workers;
    char *executor, *event, *job; /* malloc'd ("" when empty) */
} rf_block_t;

typedef struct rf_file {
    char path[4096];
    int layout;
    bool live;    /* still open for writing (or killed while it was) */
    char *config; /* /meta config */
    char *run_dir;
    char *states[RF_MAX_STATES]; /* state names by number */
    int nstates;
    char **apps; /* distinct app names */
    size_t napps;
    rf_task_t *tasks;
    size_t ntasks;
    size_t unwritten; /* rows whose strings lie past the visible heap */
    rf_block_t *blocks;
    size_t nblocks;
} rf_file_t;

/* Read 'path'.  0, or -1 with a one-line reason in why[0..cap). */
int rf_open(rf_file_t *f, const char *path, char *why, size_t cap);
void rf_close(rf_file_t *f);

/* The name of state s ("?" when out of range). */
const char *rf_state_name(const rf_file_t *f, int s);

#endif
