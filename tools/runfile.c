/*
 * runfile.c - the run file reader of the cparsl tool (see runfile.h).
 *
 * A file closed cleanly opens plainly; one still being written (or whose
 * writer was killed) opens only in SWMR-read mode, which is also how we
 * tell that it is live.  /tasks is read by column name, in slices, so
 * columns added later do not matter; app names are interned in the
 * heap, so each distinct offset is read once.  A heap reference past
 * the heap's visible end is "not yet written": the row is counted and
 * left out, never read out of bounds.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "runfile.h"

#define LAYOUT_KNOWN 1
#define SLICE        65536

struct mrow {
    uint64_t id, app_off, error_off;
    int64_t t_pending, t_start, t_end, t_final;
    uint32_t app_len, error_len;
    int32_t state, worker, slot, node, tries;
};

static herr_t first_desc(unsigned n, const H5E_error2_t *e, void *ctx)
{
    (void)n;
    char *out = ctx;
    if (!*out && e->desc)
        snprintf(out, 200, "%s", e->desc);
    return 0;
}

static int fail(char *why, size_t cap, const char *path, const char *what)
{
    char desc[200] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, first_desc, desc);
    snprintf(why, cap, "%s: %s%s%s", path, what, *desc ? " (HDF5: " : "",
             *desc ? desc : "");
    if (*desc)
        strncat(why, ")", cap - strlen(why) - 1);
    return -1;
}

static char *read_str_attr(hid_t obj, const char *name)
{
    if (H5Aexists(obj, name) <= 0)
        return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : -1;
    char *s = NULL;
    if (t >= 0 && H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t)) {
        size_t n = H5Tget_size(t);
        s = calloc(n + 1, 1);
        if (s && H5Aread(a, t, s) < 0) {
            free(s);
            s = NULL;
        }
    }
    if (t >= 0)
        H5Tclose(t);
    if (a >= 0)
        H5Aclose(a);
    return s;
}

static hid_t mem_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(struct mrow));
#define M(name, type) H5Tinsert(t, #name, HOFFSET(struct mrow, name), type)
    M(id, H5T_NATIVE_UINT64);
    M(app_off, H5T_NATIVE_UINT64);
    M(error_off, H5T_NATIVE_UINT64);
    M(t_pending, H5T_NATIVE_INT64);
    M(t_start, H5T_NATIVE_INT64);
    M(t_end, H5T_NATIVE_INT64);
    M(t_final, H5T_NATIVE_INT64);
    M(app_len, H5T_NATIVE_UINT32);
    M(error_len, H5T_NATIVE_UINT32);
    M(state, H5T_NATIVE_INT32);
    M(worker, H5T_NATIVE_INT32);
    M(slot, H5T_NATIVE_INT32);
    M(node, H5T_NATIVE_INT32);
    M(tries, H5T_NATIVE_INT32);
#undef M
    return t;
}

struct brow {
    int64_t t_ns, block;
    uint64_t executor_off, event_off, job_off;
    uint32_t executor_len, event_len, job_len;
    int32_t nodes, workers;
};

static hid_t block_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(struct brow));
#define M(name, type) H5Tinsert(t, #name, HOFFSET(struct brow, name), type)
    M(t_ns, H5T_NATIVE_INT64);
    M(block, H5T_NATIVE_INT64);
    M(executor_off, H5T_NATIVE_UINT64);
    M(event_off, H5T_NATIVE_UINT64);
    M(job_off, H5T_NATIVE_UINT64);
    M(executor_len, H5T_NATIVE_UINT32);
    M(event_len, H5T_NATIVE_UINT32);
    M(job_len, H5T_NATIVE_UINT32);
    M(nodes, H5T_NATIVE_INT32);
    M(workers, H5T_NATIVE_INT32);
#undef M
    return t;
}

static char *heap_read(hid_t heap, uint64_t off, uint32_t len);

/* /blocks, when the file has it (rows whose strings are not written yet
 * are left out, as for /tasks).  0, or -1 with why. */
static int read_blocks(rf_file_t *f, hid_t file, hid_t heap, hsize_t heap_len,
                       char *why, size_t cap)
{
    if (H5Lexists(file, "/blocks", H5P_DEFAULT) <= 0)
        return 0;
    hid_t d = H5Dopen2(file, "/blocks", H5P_DEFAULT);
    hid_t fs = d >= 0 ? H5Dget_space(d) : -1, bt = block_type();
    hsize_t n = 0;
    if (fs >= 0)
        H5Sget_simple_extent_dims(fs, &n, NULL);
    struct brow *rows = malloc((n ? n : 1) * sizeof *rows);
    f->blocks = calloc(n ? n : 1, sizeof *f->blocks);
    int rc = -1;
    if (d < 0 || fs < 0 || !rows || !f->blocks ||
        (n && H5Dread(d, bt, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows) < 0)) {
        fail(why, cap, f->path, "cannot read /blocks");
        goto out;
    }
    for (hsize_t i = 0; i < n; i++) {
        const struct brow *r = &rows[i];
        if (r->executor_off + r->executor_len > heap_len ||
            r->event_off + r->event_len > heap_len ||
            r->job_off + r->job_len > heap_len)
            continue;
        rf_block_t *b = &f->blocks[f->nblocks++];
        *b = (rf_block_t){.t_ns = r->t_ns,
                          .block = r->block,
                          .nodes = r->nodes,
                          .workers = r->workers};
        b->executor = heap_read(heap, r->executor_off, r->executor_len);
        b->event = heap_read(heap, r->event_off, r->event_len);
        b->job = heap_read(heap, r->job_off, r->job_len);
        if (!b->executor || !b->event || !b->job) {
            snprintf(why, cap, "%s: cannot read a /blocks row's strings",
                     f->path);
            goto out;
        }
    }
    rc = 0;
out:
    free(rows);
    H5Tclose(bt);
    if (fs >= 0)
        H5Sclose(fs);
    if (d >= 0)
        H5Dclose(d);
    return rc;
}

/* Bytes [off, off+len) of the heap, NUL-terminated (malloc'd), or NULL. */
static char *heap_read(hid_t heap, uint64_t off, uint32_t len)
{
    char *s = malloc((size_t)len + 1);
    if (!s)
        return NULL;
    hsize_t start = off, count = len;
    hid_t fs = H5Dget_space(heap), ms = H5Screate_simple(1, &count, NULL);
    herr_t rc =
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL);
    if (rc >= 0 && len)
        rc = H5Dread(heap, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, s);
    H5Sclose(ms);
    H5Sclose(fs);
    if (rc < 0) {
        free(s);
        return NULL;
    }
    s[len] = '\0';
    return s;
}

/* The app index of a heap reference (names are interned: few). */
static int app_index(rf_file_t *f, hid_t heap, uint64_t off, uint32_t len,
                     uint64_t **offs)
{
    for (size_t i = 0; i < f->napps; i++)
        if ((*offs)[i] == off)
            return (int)i;
    char *name = len ? heap_read(heap, off, len) : strdup("?");
    char **v = realloc(f->apps, (f->napps + 1) * sizeof *v);
    uint64_t *o = realloc(*offs, (f->napps + 1) * sizeof *o);
    if (v)
        f->apps = v;
    if (o)
        *offs = o;
    if (!name || !v || !o) {
        free(name);
        return -1;
    }
    f->apps[f->napps] = name;
    (*offs)[f->napps] = off;
    return (int)f->napps++;
}

static void split_states(rf_file_t *f, char *list)
{
    f->nstates = 0;
    for (char *save = NULL, *tok = strtok_r(list, ",", &save);
         tok && f->nstates < RF_MAX_STATES; tok = strtok_r(NULL, ",", &save))
        f->states[f->nstates++] = strdup(tok);
}

int rf_open(rf_file_t *f, const char *path, char *why, size_t cap)
{
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        snprintf(why, cap, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    fclose(probe);
    if (H5Fis_hdf5(path) <= 0)
        return fail(why, cap, path,
                    "not an HDF5 file (or truncated before its superblock)");
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        /* Marked open for writing: a live run, or one killed. */
        file = H5Fopen(path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT);
        f->live = file >= 0;
    }
    if (file < 0)
        return fail(why, cap, path, "cannot open it as an HDF5 file");
    int rc = -1;
    hid_t meta = -1, tasks = -1, heap = -1, mt = -1, fs = -1;
    uint64_t *offs = NULL;
    struct mrow *buf = NULL;
    if (H5Lexists(file, "/meta", H5P_DEFAULT) <= 0 ||
        (meta = H5Gopen2(file, "/meta", H5P_DEFAULT)) < 0 ||
        H5Aexists(meta, "layout_version") <= 0) {
        fail(why, cap, path,
             "not a cparsl run file (no /meta group with layout_version)");
        goto out;
    }
    hid_t a = H5Aopen(meta, "layout_version", H5P_DEFAULT);
    int32_t layout = 0;
    herr_t hr = a >= 0 ? H5Aread(a, H5T_NATIVE_INT32, &layout) : -1;
    if (a >= 0)
        H5Aclose(a);
    if (hr < 0) {
        fail(why, cap, path, "cannot read /meta layout_version");
        goto out;
    }
    f->layout = layout;
    if (layout > LAYOUT_KNOWN || layout < 1) {
        snprintf(why, cap,
                 "%s: written by a %s cparsl: layout version %d, this reader "
                 "knows %d",
                 path, layout > LAYOUT_KNOWN ? "newer" : "foreign", (int)layout,
                 LAYOUT_KNOWN);
        goto out;
    }
    f->config = read_str_attr(meta, "config");
    f->run_dir = read_str_attr(meta, "run_dir");
    char *states = read_str_attr(meta, "states");
    if (states) {
        split_states(f, states);
        free(states);
    }
    if (H5Lexists(file, "/tasks", H5P_DEFAULT) <= 0 ||
        H5Lexists(file, "/heap", H5P_DEFAULT) <= 0 ||
        (tasks = H5Dopen2(file, "/tasks", H5P_DEFAULT)) < 0 ||
        (heap = H5Dopen2(file, "/heap", H5P_DEFAULT)) < 0) {
        fail(why, cap, path, "has no /tasks table or /heap");
        goto out;
    }
    hsize_t n = 0, heap_len = 0;
    fs = H5Dget_space(tasks);
    if (H5Sget_simple_extent_ndims(fs) != 1) {
        fail(why, cap, path, "/tasks is not a table");
        goto out;
    }
    H5Sget_simple_extent_dims(fs, &n, NULL);
    hid_t hs = H5Dget_space(heap);
    H5Sget_simple_extent_dims(hs, &heap_len, NULL);
    H5Sclose(hs);
    mt = mem_type();
    f->tasks = calloc(n ? n : 1, sizeof *f->tasks);
    buf = malloc(SLICE * sizeof *buf);
    if (!f->tasks || !buf) {
        snprintf(why, cap, "%s: out of memory for %llu rows", path,
                 (unsigned long long)n);
        goto out;
    }
    for (hsize_t at = 0; at < n; at += SLICE) {
        hsize_t count = n - at < SLICE ? n - at : SLICE;
        hid_t ms = H5Screate_simple(1, &count, NULL);
        hr = H5Sselect_hyperslab(fs, H5S_SELECT_SET, &at, NULL, &count, NULL);
        if (hr >= 0)
            hr = H5Dread(tasks, mt, ms, fs, H5P_DEFAULT, buf);
        H5Sclose(ms);
        if (hr < 0) {
            fail(why, cap, path,
                 "cannot read /tasks (its columns are not cparsl's?)");
            goto out;
        }
        for (hsize_t i = 0; i < count; i++) {
            struct mrow *r = &buf[i];
            bool unwritten = r->app_off > heap_len ||
                             r->app_len > heap_len - r->app_off ||
                             r->error_off > heap_len ||
                             r->error_len > heap_len - r->error_off;
            if (unwritten) {
                f->unwritten++;
                continue;
            }
            int app = app_index(f, heap, r->app_off, r->app_len, &offs);
            if (app < 0) {
                snprintf(why, cap, "%s: cannot read an app name", path);
                goto out;
            }
            rf_task_t *t = &f->tasks[f->ntasks++];
            *t = (rf_task_t){
                .id = r->id,
                .t_pending = r->t_pending,
                .t_start = r->t_start,
                .t_end = r->t_end,
                .t_final = r->t_final,
                .state = r->state,
                .worker = r->worker,
                .slot = r->slot,
                .node = r->node,
                .tries = r->tries,
                .app = (uint32_t)app,
                .error = r->error_len
                             ? heap_read(heap, r->error_off, r->error_len)
                             : NULL,
            };
        }
    }
    rc = read_blocks(f, file, heap, heap_len, why, cap);
out:
    free(buf);
    free(offs);
    if (fs >= 0)
        H5Sclose(fs);
    if (mt >= 0)
        H5Tclose(mt);
    if (heap >= 0)
        H5Dclose(heap);
    if (tasks >= 0)
        H5Dclose(tasks);
    if (meta >= 0)
        H5Gclose(meta);
    H5Fclose(file);
    if (rc < 0)
        rf_close(f);
    return rc;
}

void rf_close(rf_file_t *f)
{
    for (size_t i = 0; i < f->ntasks; i++)
        free(f->tasks[i].error);
    for (size_t i = 0; i < f->napps; i++)
        free(f->apps[i]);
    for (int i = 0; i < f->nstates; i++)
        free(f->states[i]);
    for (size_t i = 0; i < f->nblocks; i++) {
        free(f->blocks[i].executor);
        free(f->blocks[i].event);
        free(f->blocks[i].job);
    }
    free(f->blocks);
    f->blocks = NULL;
    f->nblocks = 0;
    free(f->tasks);
    free(f->apps);
    free(f->config);
    free(f->run_dir);
    f->tasks = NULL;
    f->apps = NULL;
    f->config = f->run_dir = NULL;
    f->ntasks = f->napps = 0;
    f->nstates = 0;
}

const char *rf_state_name(const rf_file_t *f, int s)
{
    return s >= 0 && s < f->nstates ? f->states[s] : "?";
}
