/*
 * cparsl.c - the cparsl command: looking at a run file.
 *
 *   cparsl inspect FILE [--json] [--failed]
 *   cparsl report FILE -o report.html
 *
 * inspect prints counts by state, per-app runtimes (p50, p95, max of
 * t_end - t_start), the failed tasks with their errors, and throughput
 * over time; report writes one self-contained HTML page with SVG plots
 * (no scripts, no network).  Both read the file as docs/run-file.md
 * describes, in SWMR-read mode when it is still being written, and
 * report bad input (missing, not HDF5, truncated, not ours, newer) in
 * one line with exit status 1; bad usage exits 2.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runfile.h"

#define FAILED_SHOWN 10

static int usage(void)
{
    fputs("usage: cparsl inspect FILE [--json] [--failed]\n"
          "       cparsl report FILE -o report.html\n",
          stderr);
    return 2;
}

/* ---- numbers ------------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

struct appstat {
    size_t n;    /* tasks of the app */
    size_t nrt;  /* with a runtime */
    int64_t *rt; /* runtimes, ns, sorted */
};

static double pct(const struct appstat *a, double p)
{
    if (!a->nrt)
        return 0;
    size_t i = (size_t)ceil(p * (double)a->nrt) - 1;
    return (double)a->rt[i < a->nrt ? i : a->nrt - 1] / 1e9;
}

static struct appstat *app_stats(const rf_file_t *f)
{
    struct appstat *s = calloc(f->napps ? f->napps : 1, sizeof *s);
    if (!s)
        return NULL;
    for (size_t i = 0; i < f->ntasks; i++)
        s[f->tasks[i].app].n++;
    for (size_t a = 0; a < f->napps; a++)
        s[a].rt = malloc((s[a].n ? s[a].n : 1) * sizeof *s[a].rt);
    for (size_t i = 0; i < f->ntasks; i++) {
        const rf_task_t *t = &f->tasks[i];
        struct appstat *a = &s[t->app];
        if (a->rt && t->t_start && t->t_end >= t->t_start)
            a->rt[a->nrt++] = t->t_end - t->t_start;
    }
    for (size_t a = 0; a < f->napps; a++)
        if (s[a].rt)
            qsort(s[a].rt, s[a].nrt, sizeof *s[a].rt, cmp_i64);
    return s;
}

static void app_stats_free(struct appstat *s, size_t n)
{
    for (size_t i = 0; s && i < n; i++)
        free(s[i].rt);
    free(s);
}

static bool is_failure(const rf_file_t *f, const rf_task_t *t)
{
    const char *s = rf_state_name(f, t->state);
    return strcmp(s, "failed") == 0 || strcmp(s, "dep_fail") == 0;
}

/* First and last final times (0, 0 if none). */
static void span(const rf_file_t *f, int64_t *lo, int64_t *hi)
{
    *lo = *hi = 0;
    for (size_t i = 0; i < f->ntasks; i++) {
        const rf_task_t *t = &f->tasks[i];
        int64_t a = t->t_pending ? t->t_pending : t->t_final;
        if (a && (!*lo || a < *lo))
            *lo = a;
        if (t->t_final > *hi)
            *hi = t->t_final;
    }
}

/* Tasks finished per bucket of 'width' ns from lo. */
static size_t *finish_buckets(const rf_file_t *f, int64_t lo, int64_t width,
                              size_t nb)
{
    size_t *b = calloc(nb ? nb : 1, sizeof *b);
    for (size_t i = 0; b && i < f->ntasks; i++) {
        int64_t t = f->tasks[i].t_final;
        if (!t || t < lo)
            continue;
        size_t k = (size_t)((t - lo) / width);
        b[k < nb ? k : nb - 1]++;
    }
    return b;
}

/* ---- JSON ---------------------------------------------------------------- */

/* A JSON string: control characters escaped, invalid UTF-8 replaced. */
static void json_str(FILE *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    fputc('"', out);
    while (*p) {
        unsigned c = *p;
        int len = c < 0x80           ? 1
                  : (c >> 5) == 0x6  ? 2
                  : (c >> 4) == 0xe  ? 3
                  : (c >> 3) == 0x1e ? 4
                                     : 0;
        bool ok = len > 0;
        for (int k = 1; ok && k < len; k++)
            ok = (p[k] & 0xc0) == 0x80;
        if (!ok) {
            fputs("\\ufffd", out);
            p++;
            continue;
        }
        if (len > 1) {
            fwrite(p, 1, (size_t)len, out);
            p += len;
            continue;
        }
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", out);
        else if (c == '\t')
            fputs("\\t", out);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\u%04x", c);
        else
            fputc((int)c, out);
        p++;
    }
    fputc('"', out);
}

/* ---- inspect ------------------------------------------------------------- */

static int inspect(const rf_file_t *f, bool json, bool all_failed)
{
    size_t counts[RF_MAX_STATES] = {0}, nfailed = 0;
    for (size_t i = 0; i < f->ntasks; i++) {
        const rf_task_t *t = &f->tasks[i];
        if (t->state >= 0 && t->state < RF_MAX_STATES)
            counts[t->state]++;
        nfailed += is_failure(f, t);
    }
    struct appstat *as = app_stats(f);
    if (!as) {
        fprintf(stderr, "cparsl: out of memory\n");
        return 1;
    }
    int64_t lo, hi;
    span(f, &lo, &hi);
    int64_t width = 1000000000;
    if (hi > lo && (hi - lo) / width > 60)
        width = (hi - lo) / 60 + 1;
    size_t nb = hi > lo ? (size_t)((hi - lo) / width) + 1 : 0;
    size_t *b = finish_buckets(f, lo, width, nb);
    size_t shown = all_failed ? nfailed : FAILED_SHOWN;
    if (json) {
        printf("{\"file\":");
        json_str(stdout, f->path);
        printf(",\"run_dir\":");
        json_str(stdout, f->run_dir);
        printf(",\"layout_version\":%d,\"live\":%s,\"tasks\":%zu,"
               "\"unwritten\":%zu,\"states\":{",
               f->layout, f->live ? "true" : "false", f->ntasks, f->unwritten);
        for (int s = 0; s < f->nstates; s++) {
            printf("%s", s ? "," : "");
            json_str(stdout, f->states[s]);
            printf(":%zu", counts[s]);
        }
        printf("},\"apps\":{");
        for (size_t a = 0; a < f->napps; a++) {
            printf("%s", a ? "," : "");
            json_str(stdout, f->apps[a]);
            printf(":{\"count\":%zu,\"with_runtime\":%zu,\"p50_s\":%.9g,"
                   "\"p95_s\":%.9g,\"max_s\":%.9g}",
                   as[a].n, as[a].nrt, pct(&as[a], 0.5), pct(&as[a], 0.95),
                   pct(&as[a], 1.0));
        }
        printf("},\"failed_count\":%zu,\"failed\":[", nfailed);
        size_t k = 0;
        for (size_t i = 0; i < f->ntasks && k < shown; i++) {
            const rf_task_t *t = &f->tasks[i];
            if (!is_failure(f, t))
                continue;
            printf("%s{\"id\":%llu,\"app\":", k ? "," : "",
                   (unsigned long long)t->id);
            json_str(stdout, f->apps[t->app]);
            printf(",\"state\":");
            json_str(stdout, rf_state_name(f, t->state));
            printf(",\"error\":");
            json_str(stdout, t->error);
            printf("}");
            k++;
        }
        printf("],\"blocks\":[");
        for (size_t i = 0; i < f->nblocks; i++) {
            const rf_block_t *bk = &f->blocks[i];
            printf("%s{\"t_ns\":%lld,\"executor\":", i ? "," : "",
                   (long long)bk->t_ns);
            json_str(stdout, bk->executor);
            printf(",\"block\":%lld,\"event\":", (long long)bk->block);
            json_str(stdout, bk->event);
            printf(",\"job\":");
            json_str(stdout, bk->job);
            printf(",\"workers\":%d}", bk->workers);
        }
        printf("],\"first_ns\":%lld,\"last_ns\":%lld,"
               "\"throughput\":{\"bucket_s\":%.9g,\"finished\":[",
               (long long)lo, (long long)hi, (double)width / 1e9);
        for (size_t i = 0; b && i < nb; i++)
            printf("%s%zu", i ? "," : "", b[i]);
        printf("]}}\n");
    } else {
        printf("%s: %zu tasks%s%s\n", f->path, f->ntasks,
               f->live ? " (live, or its writer was killed)" : "",
               f->unwritten ? " (some rows not fully written yet)" : "");
        for (int s = 0; s < f->nstates; s++)
            if (counts[s])
                printf("  %-15s %zu\n", f->states[s], counts[s]);
        printf("apps (runtime = end - start of the last try):\n");
        for (size_t a = 0; a < f->napps; a++)
            printf("  %-24s %8zu tasks  p50 %.6f s  p95 %.6f s  max %.6f s\n",
                   f->apps[a], as[a].n, pct(&as[a], 0.5), pct(&as[a], 0.95),
                   pct(&as[a], 1.0));
        if (hi > lo)
            printf("throughput: %zu tasks finished over %.3f s (%.1f/s); per "
                   "%.3g s:",
                   f->ntasks, (double)(hi - lo) / 1e9,
                   (double)f->ntasks / ((double)(hi - lo) / 1e9),
                   (double)width / 1e9);
        for (size_t i = 0; b && i < nb && i < 60; i++)
            printf(" %zu", b[i]);
        printf("\n");
        if (f->nblocks > 1 || (f->nblocks && *f->blocks[0].job)) {
            printf("blocks (s since the first event: executor block event "
                   "job workers):\n");
            for (size_t i = 0; i < f->nblocks; i++) {
                const rf_block_t *k = &f->blocks[i];
                printf("  %8.2f  %s %lld %-10s %s %d\n",
                       (double)(k->t_ns - f->blocks[0].t_ns) / 1e9, k->executor,
                       (long long)k->block, k->event, *k->job ? k->job : "-",
                       k->workers);
            }
        }
        if (nfailed) {
            printf("failed: %zu%s\n", nfailed,
                   nfailed > shown ? " (the first shown; --failed: all)" : "");
            size_t k = 0;
            for (size_t i = 0; i < f->ntasks && k < shown; i++) {
                const rf_task_t *t = &f->tasks[i];
                if (!is_failure(f, t))
                    continue;
                printf("  task %llu (%s, %s): %s\n", (unsigned long long)t->id,
                       f->apps[t->app], rf_state_name(f, t->state),
                       t->error ? t->error : "");
                k++;
            }
        }
    }
    free(b);
    app_stats_free(as, f->napps);
    return 0;
}

/* ---- report -------------------------------------------------------------- */

static void html_esc(FILE *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p;
         p++) {
        if (*p == '<')
            fputs("&lt;", out);
        else if (*p == '>')
            fputs("&gt;", out);
        else if (*p == '&')
            fputs("&amp;", out);
        else if (*p == '"')
            fputs("&quot;", out);
        else if (*p < 0x20 && *p != '\n' && *p != '\t')
            fputc('?', out);
        else
            fputc(*p, out);
    }
}

static const char *const palette[] = {"#4e79a7", "#f28e2b", "#59a14f",
                                      "#e15759", "#76b7b2", "#edc948",
                                      "#b07aa1", "#9c755f"};
#define NPAL (sizeof palette / sizeof palette[0])

#define W      900
#define H      240
#define MARGIN 50

/* A line chart of v[0..n) over [0, secs] seconds. */
static void line_chart(FILE *out, const char *title, const char *ylabel,
                       const double *v, size_t n, double secs)
{
    double max = 0;
    for (size_t i = 0; i < n; i++)
        max = v[i] > max ? v[i] : max;
    if (max <= 0)
        max = 1;
    fprintf(out,
            "<h2>%s</h2>\n<svg width=\"%d\" height=\"%d\" "
            "xmlns=\"http://www.w3.org/2000/svg\">\n",
            title, W + 2 * MARGIN, H + 2 * MARGIN);
    fprintf(out,
            "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
            "fill=\"#fafafa\" stroke=\"#999\"/>\n",
            MARGIN, MARGIN, W, H);
    fprintf(out, "<polyline fill=\"none\" stroke=\"#4e79a7\" "
                 "stroke-width=\"2\" points=\"");
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%.1f,%.1f ",
                MARGIN + (n > 1 ? (double)i * W / (double)(n - 1) : 0.0),
                MARGIN + H - v[i] / max * H);
    fprintf(out, "\"/>\n");
    fprintf(out,
            "<text x=\"%d\" y=\"%d\" font-size=\"12\">%.4g</text>\n"
            "<text x=\"%d\" y=\"%d\" font-size=\"12\">0</text>\n"
            "<text x=\"%d\" y=\"%d\" font-size=\"12\">%s</text>\n"
            "<text x=\"%d\" y=\"%d\" font-size=\"12\">time since the first "
            "task, s (0 to %.3f)</text>\n</svg>\n",
            5, MARGIN + 4, max, 5, MARGIN + H, 5, MARGIN - 20, ylabel,
            MARGIN + W / 2 - 100, MARGIN + H + 30, secs);
}

static int report(const rf_file_t *f, const char *path)
{
    FILE *out = fopen(path, "w");
    if (!out) {
        fprintf(stderr, "cparsl: cannot write '%s': %s\n", path,
                strerror(errno));
        return 1;
    }
    int64_t lo, hi;
    span(f, &lo, &hi);
    double secs = hi > lo ? (double)(hi - lo) / 1e9 : 0;
    size_t nfailed = 0;
    for (size_t i = 0; i < f->ntasks; i++)
        nfailed += is_failure(f, &f->tasks[i]);
    fprintf(out, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                 "<title>cparsl run report</title>\n<style>body{font-family:"
                 "sans-serif;margin:20px}table{border-collapse:collapse}"
                 "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}"
                 "pre{background:#f4f4f4;padding:8px}</style></head><body>\n");
    fprintf(out, "<h1>Run report: ");
    html_esc(out, f->run_dir ? f->run_dir : f->path);
    fprintf(out, "</h1>\n<p>File ");
    html_esc(out, f->path);
    fprintf(out,
            ": %zu tasks, %zu failed, %zu apps, %.3f s from the first task "
            "to the last%s.</p>\n",
            f->ntasks, nfailed, f->napps, secs,
            f->live ? " (the run is live, or was killed)" : "");

    /* 1. timeline: a lane per (node, worker, slot), at most ROWS drawn */
    enum { LANES_MAX = 4096, ROWS = 40, RECTS_MAX = 20000 };
    struct lane {
        int32_t node, worker, slot;
    } *lanes = calloc(LANES_MAX, sizeof *lanes);
    size_t nlanes = 0, ran = 0;
    uint16_t *lane_of = calloc(f->ntasks ? f->ntasks : 1, sizeof *lane_of);
    for (size_t i = 0; lanes && lane_of && i < f->ntasks; i++) {
        const rf_task_t *t = &f->tasks[i];
        if (!t->t_start || !t->t_end)
            continue;
        ran++;
        size_t l = 0;
        while (l < nlanes &&
               (lanes[l].node != t->node || lanes[l].worker != t->worker ||
                lanes[l].slot != t->slot))
            l++;
        if (l == nlanes && nlanes < LANES_MAX)
            lanes[nlanes++] = (struct lane){t->node, t->worker, t->slot};
        lane_of[i] = (uint16_t)(l < LANES_MAX ? l : LANES_MAX - 1);
    }
    size_t rows = nlanes < ROWS ? (nlanes ? nlanes : 1) : ROWS;
    size_t step = ran > RECTS_MAX ? (ran + RECTS_MAX - 1) / RECTS_MAX : 1;
    int lane_h = 14, left = 150;
    fprintf(out, "<h2>Tasks per worker</h2>\n");
    if (step > 1)
        fprintf(out, "<p>Every %zu-th task of %zu is drawn.</p>\n", step, ran);
    if (nlanes > ROWS)
        fprintf(out, "<p>%zu workers: lane k shows workers k, k+%d, ...</p>\n",
                nlanes, ROWS);
    fprintf(out,
            "<svg width=\"%d\" height=\"%zu\" "
            "xmlns=\"http://www.w3.org/2000/svg\">\n",
            left + W + MARGIN, rows * (size_t)lane_h + 50);
    for (size_t r = 0; r < rows && r < nlanes; r++)
        fprintf(out,
                "<text x=\"2\" y=\"%zu\" font-size=\"11\">node %d worker "
                "%d slot %d</text>\n",
                r * (size_t)lane_h + 11, lanes[r].node, lanes[r].worker,
                lanes[r].slot);
    size_t k = 0;
    for (size_t i = 0; lanes && lane_of && i < f->ntasks && secs > 0; i++) {
        const rf_task_t *t = &f->tasks[i];
        if (!t->t_start || !t->t_end || k++ % step)
            continue;
        size_t row = lane_of[i] % ROWS;
        double x0 = left + (double)(t->t_start - lo) / 1e9 / secs * W;
        double x1 = left + (double)(t->t_end - lo) / 1e9 / secs * W;
        fprintf(out,
                "<rect x=\"%.1f\" y=\"%zu\" width=\"%.2f\" height=\"%d\" "
                "fill=\"%s\"/>\n",
                x0, row * (size_t)lane_h, x1 - x0 < 0.5 ? 0.5 : x1 - x0,
                lane_h - 2, palette[t->app % NPAL]);
    }
    fprintf(out,
            "<text x=\"%d\" y=\"%zu\" font-size=\"12\">time since the "
            "first task, s (0 to %.3f)</text>\n</svg>\n",
            left, rows * (size_t)lane_h + 30, secs);
    free(lanes);
    free(lane_of);
    fprintf(out, "<p>Apps: ");
    for (size_t a = 0; a < f->napps; a++) {
        fprintf(out, "<span style=\"color:%s\">&#9632; ", palette[a % NPAL]);
        html_esc(out, f->apps[a]);
        fprintf(out, "</span> ");
    }
    fprintf(out, "</p>\n");

    /* 2, 3. running tasks and throughput over time */
    enum { NB = 200 };
    double running[NB] = {0}, done[NB] = {0};
    if (secs > 0) {
        double bw = secs / NB;
        for (size_t i = 0; i < f->ntasks; i++) {
            const rf_task_t *t = &f->tasks[i];
            if (t->t_final >= lo) {
                size_t b = (size_t)((double)(t->t_final - lo) / 1e9 / bw);
                done[b < NB ? b : NB - 1] += 1 / bw;
            }
            if (!t->t_start || !t->t_end)
                continue;
            size_t b0 = (size_t)((double)(t->t_start - lo) / 1e9 / bw);
            size_t b1 = (size_t)((double)(t->t_end - lo) / 1e9 / bw);
            for (size_t b = b0; b <= b1 && b < NB; b++)
                running[b] += 1;
        }
    }
    line_chart(out, "Running tasks", "tasks running", running, NB, secs);
    line_chart(out, "Throughput", "tasks finished per second", done, NB, secs);

    /* 4. runtime distribution per app: log-scale bins from 1 us to 1e4 s */
    struct appstat *as = app_stats(f);
    fprintf(out, "<h2>Runtime per app</h2>\n<table><tr><th>app</th>"
                 "<th>tasks</th><th>p50 s</th><th>p95 s</th><th>max s</th>"
                 "<th>distribution (log scale, 1 us to 10,000 s)</th></tr>\n");
    for (size_t a = 0; as && a < f->napps; a++) {
        enum { BINS = 40 };
        size_t h[BINS] = {0}, hmax = 1;
        for (size_t i = 0; i < as[a].nrt; i++) {
            double s = (double)as[a].rt[i] / 1e9;
            int bin = s <= 1e-6 ? 0 : (int)((log10(s) + 6) / 10 * BINS);
            bin = bin < 0 ? 0 : bin >= BINS ? BINS - 1 : bin;
            if (++h[bin] > hmax)
                hmax = h[bin];
        }
        fprintf(out, "<tr><td>");
        html_esc(out, f->apps[a]);
        fprintf(out,
                "</td><td>%zu</td><td>%.6f</td><td>%.6f</td><td>%.6f</td>"
                "<td><svg width=\"%d\" height=\"40\" "
                "xmlns=\"http://www.w3.org/2000/svg\">",
                as[a].n, pct(&as[a], 0.5), pct(&as[a], 0.95), pct(&as[a], 1.0),
                BINS * 8);
        for (int b = 0; b < BINS; b++)
            if (h[b])
                fprintf(out,
                        "<rect x=\"%d\" y=\"%.1f\" width=\"7\" "
                        "height=\"%.1f\" fill=\"%s\"/>",
                        b * 8, 40 - 38.0 * (double)h[b] / (double)hmax,
                        38.0 * (double)h[b] / (double)hmax, palette[a % NPAL]);
        fprintf(out, "</svg></td></tr>\n");
    }
    fprintf(out, "</table>\n");
    app_stats_free(as, f->napps);

    /* 5. failures */
    fprintf(out, "<h2>Failures (%zu)</h2>\n", nfailed);
    if (nfailed) {
        fprintf(out, "<table><tr><th>task</th><th>app</th><th>state</th>"
                     "<th>error</th></tr>\n");
        size_t shown = 0;
        for (size_t i = 0; i < f->ntasks && shown < 1000; i++) {
            const rf_task_t *t = &f->tasks[i];
            if (!is_failure(f, t))
                continue;
            fprintf(out, "<tr><td>%llu</td><td>", (unsigned long long)t->id);
            html_esc(out, f->apps[t->app]);
            fprintf(out, "</td><td>%s</td><td>", rf_state_name(f, t->state));
            html_esc(out, t->error);
            fprintf(out, "</td></tr>\n");
            shown++;
        }
        fprintf(out, "</table>\n");
        if (nfailed > shown)
            fprintf(out, "<p>The first %zu of %zu failures.</p>\n", shown,
                    nfailed);
    }
    /* 6. blocks */
    if (f->nblocks > 1 || (f->nblocks && *f->blocks[0].job)) {
        fprintf(out, "<h2>Blocks</h2>\n<table><tr><th>s</th><th>executor"
                     "</th><th>block</th><th>event</th><th>job</th>"
                     "<th>workers</th></tr>\n");
        for (size_t i = 0; i < f->nblocks; i++) {
            const rf_block_t *bk = &f->blocks[i];
            fprintf(out, "<tr><td>%.2f</td><td>",
                    (double)(bk->t_ns - f->blocks[0].t_ns) / 1e9);
            html_esc(out, bk->executor);
            fprintf(out, "</td><td>%lld</td><td>", (long long)bk->block);
            html_esc(out, bk->event);
            fprintf(out, "</td><td>");
            html_esc(out, bk->job);
            fprintf(out, "</td><td>%d</td></tr>\n", bk->workers);
        }
        fprintf(out, "</table>\n");
    }
    fprintf(out, "<h2>Config</h2>\n<pre>");
    html_esc(out, f->config ? f->config : "(none recorded)");
    fprintf(out, "</pre>\n</body></html>\n");
    if (fclose(out) != 0) {
        fprintf(stderr, "cparsl: cannot write '%s': %s\n", path,
                strerror(errno));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return usage();
    const char *cmd = argv[1], *file = argv[2], *out = NULL;
    bool json = false, all_failed = false;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(cmd, "inspect") && !strcmp(argv[i], "--json"))
            json = true;
        else if (!strcmp(cmd, "inspect") && !strcmp(argv[i], "--failed"))
            all_failed = true;
        else if (!strcmp(cmd, "report") && !strcmp(argv[i], "-o") &&
                 i + 1 < argc)
            out = argv[++i];
        else
            return usage();
    }
    if (strcmp(cmd, "inspect") != 0 && strcmp(cmd, "report") != 0)
        return usage();
    if (!strcmp(cmd, "report") && !out)
        return usage();
    rf_file_t f;
    char why[600];
    if (rf_open(&f, file, why, sizeof why) < 0) {
        fprintf(stderr, "cparsl: %s\n", why);
        return 1;
    }
    int rc = !strcmp(cmd, "inspect") ? inspect(&f, json, all_failed)
                                     : report(&f, out);
    rf_close(&f);
    return rc;
}
