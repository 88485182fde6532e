/*
 * test_cmd.c - running scheduler commands (providers/cmd.c) and reading
 * walltimes: output captured whole, statuses and signals, timeouts that
 * kill the command's whole process group, commands that do not exist,
 * input on stdin, and every walltime form the schedulers use.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "cmd.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

TEST_CASE(output)
{
    cparsl_cmd_result_t r;
    cparsl_error_t err;
    const char *echo[] = {"echo", "hello", "world", NULL};
    CHECK(cparsl_cmd_run(echo, NULL, 10, &r, &err) == 0, "%s", err.text);
    CHECK(r.status == 0 && strcmp(r.out, "hello world\n") == 0 &&
              r.err_len == 0,
          "echo: %d '%s'", r.status, r.out);
    cparsl_cmd_result_free(&r);
    /* A megabyte on each stream, read while the command writes. */
    const char *big[] = {"sh", "-c",
                         "head -c 1048576 /dev/zero | tr '\\0' a; "
                         "head -c 1048576 /dev/zero | tr '\\0' b >&2",
                         NULL};
    CHECK(cparsl_cmd_run(big, NULL, 30, &r, &err) == 0, "%s", err.text);
    CHECK(r.out_len == 1048576 && r.err_len == 1048576 && r.out[0] == 'a' &&
              r.err[1048575] == 'b',
          "1 MiB each: %zu %zu", r.out_len, r.err_len);
    cparsl_cmd_result_free(&r);
    /* stdin */
    const char *cat[] = {"cat", NULL};
    CHECK(cparsl_cmd_run(cat, "#!/bin/sh\n#SBATCH --nodes=2\n", 10, &r, &err) ==
                  0 &&
              strcmp(r.out, "#!/bin/sh\n#SBATCH --nodes=2\n") == 0,
          "stdin reaches the command: '%s'", r.out);
    cparsl_cmd_result_free(&r);
}

TEST_CASE(status)
{
    cparsl_cmd_result_t r;
    cparsl_error_t err;
    const char *fail[] = {"sh", "-c",
                          "echo 'sbatch: error: Invalid account' >&2;"
                          " exit 1",
                          NULL};
    CHECK(cparsl_cmd_run(fail, NULL, 10, &r, &err) == 0 && r.status == 1,
          "a failing command still ran: %d", r.status);
    cparsl_cmd_result_free(&r);
    CHECK(cparsl_cmd_check(fail, NULL, 10, &r, &err) == -CPARSL_EEXECUTOR &&
              strstr(err.text, "'sh' failed (exit status 1)") &&
              strstr(err.text, "Invalid account"),
          "check names the command, status and message: %s", err.text);
    cparsl_cmd_result_free(&r);
    const char *sig[] = {"sh", "-c", "kill -TERM $$", NULL};
    CHECK(cparsl_cmd_run(sig, NULL, 10, &r, &err) == 0 &&
              r.status == 128 + SIGTERM,
          "a signal: %d", r.status);
    cparsl_cmd_result_free(&r);
    const char *missing[] = {"no-such-scheduler-command", "-x", NULL};
    CHECK(cparsl_cmd_run(missing, NULL, 10, &r, &err) == -ENOENT &&
              strstr(err.text, "no-such-scheduler-command"),
          "a missing command: %s", err.text);
    cparsl_cmd_result_free(&r);
    const char *empty[] = {NULL};
    CHECK(cparsl_cmd_run(empty, NULL, 10, &r, &err) == -EINVAL, "no argv");
    cparsl_cmd_result_free(&r);
}

TEST_CASE(timeout)
{
    cparsl_cmd_result_t r;
    cparsl_error_t err;
    /* The command and its child both hang; both must go. */
    const char *hang[] = {"sh", "-c", "sleep 30 & echo started $!; wait", NULL};
    double t0 = now_s();
    int rc = cparsl_cmd_run(hang, NULL, 0.5, &r, &err);
    double took = now_s() - t0;
    CHECK(rc == -ETIMEDOUT && strstr(err.text, "within 0.5 s"),
          "timed out: %d %s", rc, err.text);
    CHECK(took < 5, "it took %.2f s", took);
    long child = 0;
    CHECK(sscanf(r.out, "started %ld", &child) == 1 && child > 0,
          "what it printed is kept: '%s'", r.out);
    cparsl_cmd_result_free(&r);
    /* The background sleep was killed with the group. */
    bool gone = false;
    for (int i = 0; i < 200 && !gone && child > 0; i++) {
        char path[64], state = '?';
        snprintf(path, sizeof path, "/proc/%ld/stat", child);
        FILE *fp = fopen(path, "r");
        if (!fp || fscanf(fp, "%*d %*s %c", &state) != 1 || state == 'Z')
            gone = true;
        if (fp)
            fclose(fp);
        usleep(10000);
    }
    CHECK(gone, "the command's child %ld was killed too", child);
}

/* From a process with other threads, as rank 0 is. */
static void *spin(void *arg)
{
    volatile int *stop = arg;
    while (!*stop)
        usleep(1000);
    return NULL;
}

TEST_CASE(threads)
{
    volatile int stop = 0;
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, spin, (void *)&stop);
    long bad = 0;
    for (int i = 0; i < 50; i++) {
        cparsl_cmd_result_t r;
        cparsl_error_t err;
        const char *argv[] = {"echo", "x", NULL};
        if (cparsl_cmd_run(argv, NULL, 10, &r, &err) != 0 ||
            strcmp(r.out, "x\n") != 0)
            bad++;
        cparsl_cmd_result_free(&r);
    }
    stop = 1;
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    CHECK(bad == 0, "%ld of 50 runs went wrong", bad);
}

TEST_CASE(walltime)
{
    static const struct {
        const char *text;
        long s;
    } cases[] = {
        {"30", 1800},
        {"05:30", 330},
        {"01:00:00", 3600},
        {"48:00:00", 172800},
        {"2-00", 172800},
        {"1-12:30", 131400},
        {"1-00:00:01", 86401},
        {"00:00:00", 0},
        {"", -1},
        {"-5", -1},
        {"1:60:00", -1},
        {"1:00:61", -1},
        {"1-24", -1},
        {"1:2:3:4", -1},
        {"10m", -1},
        {":30", -1},
        {"1::00", -1},
        {"1-", -1},
        {" 1:00", -1},
        {"1:00 ", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long got = cparsl_walltime_parse(cases[i].text);
        CHECK(got == cases[i].s, "'%s' -> %ld, expected %ld", cases[i].text,
              got, cases[i].s);
    }
    CHECK(cparsl_walltime_parse(NULL) == -1, "NULL");
}

static const check_case_t cases[] = {
    TEST_ENTRY(output),  TEST_ENTRY(status),   TEST_ENTRY(timeout),
    TEST_ENTRY(threads), TEST_ENTRY(walltime), {NULL, NULL},
};

int main(int argc, char **argv)
{
    return check_main(argc, argv, cases);
}
