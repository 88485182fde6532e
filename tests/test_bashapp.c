/*
 * test_bashapp.c - bash apps through the DFK: template placeholders filled
 * from futures of C apps, shell quoting, {x:raw}, unbound placeholders,
 * exit codes, walltime, missing outputs, stdout/stderr files, retries,
 * pipelines between bash and C apps, and many tasks at once.  Each case
 * runs in a fresh temporary directory of its own (the commands' cwd).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cparsl/cparsl.h>
#include <cparsl/plugin.h>

#include "check.h"
#define TEST_TMP_TAG "cparsl-bash"
#include "cparsl_test.h"

#define HAS(text, sub) (strstr((text), (sub)) != NULL)

/* ---- C apps ------------------------------------------------------------- */

/* Returns its string argument, after a short nap so that the consumer
 * really waits for it. */
static int app_slow_str(const cparsl_args_t *a, cparsl_value_t *r,
                        cparsl_error_t *err)
{
    (void)err;
    usleep(50000);
    return cparsl_value_set_string(r, cparsl_arg_str(a, 0));
}
CPARSL_APP(slow_str, app_slow_str, .signature = "s")

static int app_slow_int(const cparsl_args_t *a, cparsl_value_t *r,
                        cparsl_error_t *err)
{
    (void)err;
    usleep(50000);
    *r = cparsl_int(cparsl_arg_int(a, 0));
    return 0;
}
CPARSL_APP(slow_int, app_slow_int, .signature = "i")

/* Writes its string argument to its first output. */
static int app_write(const cparsl_args_t *a, cparsl_value_t *r,
                     cparsl_error_t *err)
{
    (void)r;
    usleep(50000);
    FILE *f = fopen(cparsl_args_output(a, 0), "w");
    if (!f)
        return cparsl_error_set(err, -errno, "cannot write %s",
                                cparsl_args_output(a, 0));
    fputs(cparsl_arg_str(a, 0), f);
    fclose(f);
    return 0;
}
CPARSL_APP(write_file, app_write, .signature = "s")

/* Sums the integers, one per line, in its first input. */
static int app_sum_lines(const cparsl_args_t *a, cparsl_value_t *r,
                         cparsl_error_t *err)
{
    FILE *f = fopen(cparsl_args_input(a, 0), "r");
    if (!f)
        return cparsl_error_set(err, -errno, "cannot read %s",
                                cparsl_args_input(a, 0));
    long long s = 0, x;
    while (fscanf(f, "%lld", &x) == 1)
        s += x;
    fclose(f);
    *r = cparsl_int(s);
    return 0;
}
CPARSL_APP(sum_lines, app_sum_lines)

static int app_ident(const cparsl_args_t *a, cparsl_value_t *r,
                     cparsl_error_t *err)
{
    (void)err;
    return cparsl_value_copy(r, cparsl_arg(a, 0));
}
CPARSL_APP(ident, app_ident)

/* ---- bash apps ---------------------------------------------------------- */

CPARSL_BASH_APP(subst, "echo {0} {name} > {outputs[0]}; "
                       "cat {inputs[0]} >> {outputs[0]}")
CPARSL_BASH_APP(quote, "printf '%s' {0} > {outputs[0]}")
CPARSL_BASH_APP(raw, "{{ echo {x:raw}; }} > {outputs[0]}; "
                     "echo {x} >> {outputs[0]}")
CPARSL_BASH_APP(braces, "echo {{a,b}}{0} > {outputs[0]}")
CPARSL_BASH_APP(needkw, "echo {who}")
CPARSL_BASH_APP(exit3, "echo first line >&2; echo boom-{0} >&2; exit 3")
CPARSL_BASH_APP(notfound, "cparsl_no_such_command_xyz {0}")
CPARSL_BASH_APP(noexec, "{0}")
CPARSL_BASH_APP(sleeper, "echo $$ > sleeper.pid; exec sleep 20")
CPARSL_BASH_APP(noout, "true")
CPARSL_BASH_APP(say, "echo {0}; echo err-{0} >&2")
CPARSL_BASH_APP(flakyb, "test -e {0} || {{ touch {0}; exit 1; }}")
CPARSL_BASH_APP(produce, "seq 1 {0} > {outputs[0]}")
CPARSL_BASH_APP(many, "sleep 0.05; echo task-{0} > {outputs[0]}")

/* ---- helpers ------------------------------------------------------------ */

/* The whole file into buf (NUL-terminated); its length, or -1. */
static long read_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        buf[0] = '\0';
        return -1;
    }
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
    return (long)n;
}

static bool file_is(const char *path, const char *want)
{
    char buf[4096];
    long n = read_file(path, buf, sizeof buf);
    if (n < 0 || strcmp(buf, want) != 0) {
        fprintf(stderr, "%s holds '%s', want '%s'\n", path,
                n < 0 ? "(missing)" : buf, want);
        return false;
    }
    return true;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Wait for f; its result must be the int 0 of a bash app's success. */
static void expect_ok(cparsl_future_t *f, const char *what)
{
    int64_t v = -1;
    int rc = cparsl_future_get_int(f, &v);
    CHECK(rc == 0 && v == 0, "%s: %d %s", what, rc, cparsl_future_errstr(f));
}

static cparsl_future_t *call1(const char *app, cparsl_value_t arg,
                              const char *output)
{
    cparsl_call_t *c = cparsl_call_create(app);
    cparsl_call_arg(c, arg);
    if (output)
        cparsl_call_output(c, output);
    return cparsl_call_submit(c);
}

/* ---- cases -------------------------------------------------------------- */

TEST_CASE(substitution_from_futures)
{
    enter_tmp();
    init_yaml(NULL);
    cparsl_future_t *word = cparsl_submit("slow_str", CPARSL_S("hello"));
    cparsl_future_t *num = cparsl_submit("slow_int", CPARSL_I(42));
    cparsl_call_t *c = cparsl_call_create("write_file");
    cparsl_call_arg(c, cparsl_str("data line\n"));
    cparsl_call_output(c, "in.txt");
    cparsl_future_t *w = cparsl_call_submit(c);
    cparsl_future_t *in = cparsl_future_output(w, 0);
    REQUIRE(in != NULL, "DataFuture");

    c = cparsl_call_create("subst");
    cparsl_call_arg_future(c, word);
    cparsl_call_kwarg_future(c, "name", num);
    cparsl_call_input_future(c, in);
    cparsl_call_output(c, "out.txt");
    cparsl_future_t *b = cparsl_call_submit(c);
    expect_ok(b, "subst");
    CHECK(file_is("out.txt", "hello 42\ndata line\n"),
          "all four placeholders filled");
    cparsl_future_t *bout = cparsl_future_output(b, 0);
    const char *p = NULL;
    CHECK(cparsl_future_get_string(bout, &p) == 0 && HAS(p, "out.txt"),
          "the bash app's DataFuture names its file: %s",
          p ? p : cparsl_future_errstr(bout));

    /* Plain values too, and an int array as separate words. */
    int64_t arr[3] = {1, 2, 3};
    c = cparsl_call_create("subst");
    cparsl_call_arg(c, cparsl_int_array(arr, 3));
    cparsl_call_kwarg(c, "name", cparsl_double(0.5));
    cparsl_call_input(c, "in.txt");
    cparsl_call_output(c, "file://out2.txt");
    cparsl_future_t *b2 = cparsl_call_submit(c);
    expect_ok(b2, "subst with values");
    CHECK(file_is("out2.txt", "1 2 3 0.5\ndata line\n"), "values rendered");

    cparsl_future_t *all[] = {word, num, w, in, b, bout, b2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        cparsl_future_decref(all[i]);
    finalize_ok();
    leave_tmp();
}

TEST_CASE(quoting)
{
    enter_tmp();
    init_yaml(NULL);
    static const char *hostile[] = {
        "a b'c\"d $(touch pwned1) `touch pwned2` ; touch pwned3 && echo *",
        "line1\nline2\ttab \\ back $HOME ${HOME} | > < & ! ~ # %",
        "'",
        "",
        "-n",
        "plain_word-1.2/x",
    };
    size_t n = sizeof hostile / sizeof hostile[0];
    for (size_t i = 0; i < n; i++) {
        char out[32];
        snprintf(out, sizeof out, "q%zu.txt", i);
        /* the first through a future, the rest as values */
        cparsl_future_t *f;
        if (i == 0) {
            cparsl_future_t *s =
                cparsl_submit("slow_str", CPARSL_S(hostile[i]));
            cparsl_call_t *c = cparsl_call_create("quote");
            cparsl_call_arg_future(c, s);
            cparsl_call_output(c, out);
            f = cparsl_call_submit(c);
            cparsl_future_decref(s);
        } else {
            f = call1("quote", cparsl_str(hostile[i]), out);
        }
        expect_ok(f, out);
        CHECK(file_is(out, hostile[i]),
              "string %zu reached the command "
              "as one word, unchanged",
              i);
        cparsl_future_decref(f);
    }
    CHECK(!exists("pwned1") && !exists("pwned2") && !exists("pwned3"),
          "nothing in the strings ran");
    finalize_ok();
    leave_tmp();
}

TEST_CASE(raw_and_braces)
{
    enter_tmp();
    init_yaml(NULL);
    cparsl_call_t *c = cparsl_call_create("raw");
    cparsl_call_kwarg(c, "x", cparsl_str("one; echo two"));
    cparsl_call_output(c, "raw.txt");
    cparsl_future_t *f = cparsl_call_submit(c);
    expect_ok(f, "raw");
    CHECK(file_is("raw.txt", "one\ntwo\none; echo two\n"),
          "{x:raw} is shell text, {x} one word");
    cparsl_future_decref(f);

    f = call1("braces", cparsl_str("z"), "br.txt");
    expect_ok(f, "braces");
    CHECK(file_is("br.txt", "az bz\n"), "{{a,b}} is bash's brace expansion");
    cparsl_future_decref(f);
    finalize_ok();
    leave_tmp();
}

TEST_CASE(missing_placeholder)
{
    enter_tmp();
    init_yaml(NULL);
    cparsl_call_t *c = cparsl_call_create("needkw");
    cparsl_call_kwarg(c, "whom", cparsl_str("x"));
    cparsl_future_t *f = cparsl_call_submit(c);
    cparsl_future_t *dep = cparsl_submit("ident", CPARSL_F(f));
    CHECK(cparsl_future_error(f) == -CPARSL_ETEMPLATE, "unbound: %d %s",
          cparsl_future_error(f), cparsl_future_errstr(f));
    CHECK(HAS(cparsl_future_errstr(f), "{who}") &&
              HAS(cparsl_future_errstr(f), "has no value") &&
              HAS(cparsl_future_errstr(f), "needkw"),
          "names the placeholder and app: %s", cparsl_future_errstr(f));
    CHECK(cparsl_future_error(dep) == -CPARSL_EDEPFAIL, "dependent: %d %s",
          cparsl_future_error(dep), cparsl_future_errstr(dep));
    CHECK(HAS(cparsl_future_errstr(dep), "needkw"), "names the parent: %s",
          cparsl_future_errstr(dep));
    cparsl_future_decref(f);
    cparsl_future_decref(dep);

    /* {outputs[0]} without outputs, {1} with one argument */
    c = cparsl_call_create("produce");
    cparsl_call_arg(c, cparsl_int(3));
    f = cparsl_call_submit(c);
    CHECK(cparsl_future_error(f) == -CPARSL_ETEMPLATE &&
              HAS(cparsl_future_errstr(f), "{outputs[0]}"),
          "no output: %s", cparsl_future_errstr(f));
    cparsl_future_decref(f);
    c = cparsl_call_create("exit3");
    f = cparsl_call_submit(c);
    CHECK(cparsl_future_error(f) == -CPARSL_ETEMPLATE &&
              HAS(cparsl_future_errstr(f), "{0}"),
          "no positional: %s", cparsl_future_errstr(f));
    cparsl_future_decref(f);
    finalize_ok();
    leave_tmp();
}

TEST_CASE(exit_codes)
{
    enter_tmp();
    init_yaml(NULL);
    cparsl_future_t *f = call1("exit3", cparsl_str("tail"), NULL);
    CHECK(cparsl_future_error(f) == -CPARSL_EEXIT, "exit 3: %d %s",
          cparsl_future_error(f), cparsl_future_errstr(f));
    CHECK(HAS(cparsl_future_errstr(f), "exited with status 3") &&
              HAS(cparsl_future_errstr(f), "exit3"),
          "status: %s", cparsl_future_errstr(f));
    CHECK(HAS(cparsl_future_errstr(f), "first line\nboom-tail"),
          "stderr tail: %s", cparsl_future_errstr(f));
    cparsl_future_decref(f);

    /* With a stderr file, only this run's part is quoted. */
    FILE *old = fopen("e.txt", "w");
    REQUIRE(old, "e.txt");
    fputs("old stuff\n", old);
    fclose(old);
    cparsl_call_t *c = cparsl_call_create("exit3");
    cparsl_call_arg(c, cparsl_str("file"));
    cparsl_call_stderr(c, "e.txt", CPARSL_APPEND);
    f = cparsl_call_submit(c);
    CHECK(cparsl_future_error(f) == -CPARSL_EEXIT &&
              HAS(cparsl_future_errstr(f), "boom-file") &&
              !HAS(cparsl_future_errstr(f), "old stuff"),
          "tail from the file: %s", cparsl_future_errstr(f));
    CHECK(file_is("e.txt", "old stuff\nfirst line\nboom-file\n"),
          "appended to the stderr file");
    cparsl_future_decref(f);

    f = call1("notfound", cparsl_int(1), NULL);
    CHECK(cparsl_future_error(f) == -CPARSL_ENOTFOUND, "127: %d %s",
          cparsl_future_error(f), cparsl_future_errstr(f));
    CHECK(HAS(cparsl_future_errstr(f), "exit 127") &&
              HAS(cparsl_future_errstr(f), "cparsl_no_such_command_xyz"),
          "text and tail: %s", cparsl_future_errstr(f));
    cparsl_future_decref(f);

    FILE *s = fopen("script.sh", "w");
    REQUIRE(s, "script.sh");
    fputs("#!/bin/sh\necho hi\n", s);
    fclose(s);
    REQUIRE(chmod("script.sh", 0644) == 0, "chmod");
    f = call1("noexec", cparsl_str("./script.sh"), NULL);
    CHECK(cparsl_future_error(f) == -CPARSL_ENOEXEC, "126: %d %s",
          cparsl_future_error(f), cparsl_future_errstr(f));
    CHECK(HAS(cparsl_future_errstr(f), "exit 126"), "text: %s",
          cparsl_future_errstr(f));
    cparsl_future_decref(f);
    finalize_ok();
    leave_tmp();
}

TEST_CASE(walltime)
{
    enter_tmp();
    init_yaml(NULL);
    cparsl_call_t *c = cparsl_call_create("sleeper");
    cparsl_call_walltime(c, 0.3);
    int64_t t0 = cparsl_mono_ns();
    cparsl_future_t *f = cparsl_call_submit(c);
    int rc = cparsl_future_error(f);
    double dt = (double)(cparsl_mono_ns() - t0) / 1e9;
    CHECK(rc == -CPARSL_EWALLTIME, "walltime: %d %s", rc,
          cparsl_future_errstr(f));
    CHECK(HAS(cparsl_future_errstr(f), "walltime"), "text: %s",
          cparsl_future_errstr(f));
    /* docs/bash-apps.md: "bash app 'x' exceeded its walltime of 2 s;
     * process group 1234 killed" - the command is stopped, unlike a C
     * app's thread. */
    CHECK(HAS(cparsl_future_errstr(f), "bash app 'sleeper'") &&
              HAS(cparsl_future_errstr(f), "process group"),
          "the bash runner's walltime message: %s", cparsl_future_errstr(f));
    CHECK(dt >= 0.25 && dt < 5.0, "failed at the walltime: %.3f s", dt);
    cparsl_future_decref(f);
    /* The command itself was killed, not left running. */
    char buf[32];
    long pid = 0;
    if (read_file("sleeper.pid", buf, sizeof buf) > 0)
        pid = atol(buf);
    CHECK(pid > 1, "the command wrote its pid");
    bool gone = false;
    for (int i = 0; i < 100 && pid > 1 && !gone; i++) {
        gone = kill((pid_t)pid, 0) < 0 && errno == ESRCH;
        if (!gone)
            usleep(50000);
    }
    CHECK(gone, "sleep 20 (pid %ld) was killed", pid);
    finalize_ok();
    leave_tmp();
}

/* A bash app past its walltime is killed, so its worker thread is free
 * again: repeated timeouts must not use up a small pool. */
TEST_CASE(walltime_pool_survives)
{
    enter_tmp();
    init_yaml("executors:\n  - {type: threadpool, max_threads: 1}\n");
    for (int i = 0; i < 3; i++) {
        cparsl_call_t *c = cparsl_call_create("sleeper");
        cparsl_call_walltime(c, 0.2);
        cparsl_future_t *f = cparsl_call_submit(c);
        REQUIRE(cparsl_future_wait(f, 5) == 0,
                "timeout %d did not end within 5 s (capacity %zu)", i,
                cparsl_capacity());
        CHECK(cparsl_future_error(f) == -CPARSL_EWALLTIME, "try %d: %s", i,
              cparsl_future_errstr(f));
        cparsl_future_decref(f);
    }
    cparsl_future_t *g = call1("say", cparsl_str("after"), NULL);
    REQUIRE(cparsl_future_wait(g, 5) == 0,
            "a task after 3 timeouts never ran (capacity %zu)",
            cparsl_capacity());
    expect_ok(g, "after the timeouts");
    cparsl_future_decref(g);
    usleep(200000); /* the runner's own kill, if it came second */
    CHECK(cparsl_capacity() == 1, "capacity %zu", cparsl_capacity());
    finalize_ok();
    leave_tmp();
}

TEST_CASE(missing_output)
{
    enter_tmp();
    init_yaml(NULL);
    cparsl_call_t *c = cparsl_call_create("noout");
    cparsl_call_output(c, "never.txt");
    cparsl_future_t *f = cparsl_call_submit(c);
    cparsl_future_t *d = cparsl_future_output(f, 0);
    CHECK(cparsl_future_error(f) == -CPARSL_EOUTPUT, "missing output: %d %s",
          cparsl_future_error(f), cparsl_future_errstr(f));
    CHECK(HAS(cparsl_future_errstr(f), "never.txt"), "names the file: %s",
          cparsl_future_errstr(f));
    CHECK(cparsl_future_error(d) < 0, "its DataFuture fails: %s",
          cparsl_future_errstr(d));
    cparsl_future_decref(f);
    cparsl_future_decref(d);
    finalize_ok();
    leave_tmp();
}

static cparsl_future_t *say(const char *word, const char *out, int omode,
                            const char *errf, int emode)
{
    cparsl_call_t *c = cparsl_call_create("say");
    cparsl_call_arg(c, cparsl_str(word));
    if (out)
        cparsl_call_stdout(c, out, omode);
    if (errf)
        cparsl_call_stderr(c, errf, emode);
    return cparsl_call_submit(c);
}

TEST_CASE(stream_files)
{
    enter_tmp();
    init_yaml(NULL);
    const int A = CPARSL_APPEND, T = CPARSL_TRUNCATE;
    cparsl_future_t *f = say("one", "o.txt", A, "e.txt", A);
    expect_ok(f, "one");
    cparsl_future_decref(f);
    f = say("two", "o.txt", A, "e.txt", A);
    expect_ok(f, "two");
    cparsl_future_decref(f);
    CHECK(file_is("o.txt", "one\ntwo\n"), "stdout appended");
    CHECK(file_is("e.txt", "err-one\nerr-two\n"), "stderr appended");

    f = say("three", "o.txt", T, "e.txt", T);
    expect_ok(f, "three");
    cparsl_future_decref(f);
    CHECK(file_is("o.txt", "three\n"), "stdout truncated");
    CHECK(file_is("e.txt", "err-three\n"), "stderr truncated");

    /* Mixed: truncate stdout, append stderr. */
    f = say("four", "o.txt", T, "e.txt", A);
    expect_ok(f, "four");
    cparsl_future_decref(f);
    CHECK(file_is("o.txt", "four\n"), "stdout truncated again");
    CHECK(file_is("e.txt", "err-three\nerr-four\n"), "stderr appended");

    /* One file for both, truncated: neither stream overwrites the other. */
    f = say("x", "both.txt", A, "both.txt", A);
    expect_ok(f, "both");
    cparsl_future_decref(f);
    f = say("five", "both.txt", T, "both.txt", T);
    expect_ok(f, "both truncated");
    cparsl_future_decref(f);
    CHECK(file_is("both.txt", "five\nerr-five\n"), "one shared file");

    /* A stream file that cannot be opened fails the task, naming it. */
    f = say("six", "no/such/dir/o.txt", A, NULL, A);
    CHECK(cparsl_future_error(f) == -ENOENT &&
              HAS(cparsl_future_errstr(f), "no/such/dir/o.txt"),
          "bad stdout path: %d %s", cparsl_future_error(f),
          cparsl_future_errstr(f));
    cparsl_future_decref(f);
    finalize_ok();
    leave_tmp();
}

TEST_CASE(retries)
{
    enter_tmp();
    init_yaml(NULL);
    /* Fails the first time (and leaves the marker), then succeeds. */
    cparsl_call_t *c = cparsl_call_create("flakyb");
    cparsl_call_arg(c, cparsl_str("m"));
    cparsl_call_retries(c, 1);
    cparsl_future_t *f = cparsl_call_submit(c);
    expect_ok(f, "second try succeeded");
    CHECK(exists("m"), "the first try left its marker");
    cparsl_future_decref(f);

    /* Without retries the first failure is final. */
    f = call1("flakyb", cparsl_str("m2"), NULL);
    CHECK(cparsl_future_error(f) == -CPARSL_EEXIT, "no retries: %d %s",
          cparsl_future_error(f), cparsl_future_errstr(f));
    CHECK(exists("m2"), "it ran once");
    cparsl_future_decref(f);
    finalize_ok();

    /* retries from the config */
    init_yaml("retries: 1\n");
    f = call1("flakyb", cparsl_str("m3"), NULL);
    expect_ok(f, "config retries");
    cparsl_future_decref(f);
    finalize_ok();
    leave_tmp();
}

TEST_CASE(pipeline)
{
    enter_tmp();
    init_yaml(NULL);
    /* int from a C app -> bash app writes a file -> C app reads it */
    cparsl_future_t *n = cparsl_submit("slow_int", CPARSL_I(10));
    cparsl_call_t *c = cparsl_call_create("produce");
    cparsl_call_arg_future(c, n);
    cparsl_call_output(c, "seq.txt");
    cparsl_future_t *p = cparsl_call_submit(c);
    cparsl_future_t *d = cparsl_future_output(p, 0);
    REQUIRE(d != NULL, "DataFuture");
    c = cparsl_call_create("sum_lines");
    cparsl_call_input_future(c, d);
    cparsl_future_t *s = cparsl_call_submit(c);
    int64_t v = 0;
    CHECK(cparsl_future_get_int(s, &v) == 0 && v == 55, "sum %lld: %s",
          (long long)v, cparsl_future_errstr(s));
    CHECK(cparsl_future_done(p), "the producer finished first");
    expect_ok(p, "producer");

    /* A bash app failing in the middle fails the consumer. */
    c = cparsl_call_create("noout");
    cparsl_call_output(c, "never.txt");
    cparsl_future_t *bad = cparsl_call_submit(c);
    cparsl_future_t *dbad = cparsl_future_output(bad, 0);
    c = cparsl_call_create("sum_lines");
    cparsl_call_input_future(c, dbad);
    cparsl_future_t *sbad = cparsl_call_submit(c);
    CHECK(cparsl_future_error(sbad) == -CPARSL_EDEPFAIL &&
              HAS(cparsl_future_errstr(sbad), "noout"),
          "consumer of a failed bash app: %s", cparsl_future_errstr(sbad));
    cparsl_future_t *all[] = {n, p, d, s, bad, dbad, sbad};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        cparsl_future_decref(all[i]);
    finalize_ok();
    leave_tmp();
}

TEST_CASE(concurrent_50)
{
    enter_tmp();
    init_yaml("executors:\n  - {type: threadpool, max_threads: 8}\n");
    enum { N = 50 };
    cparsl_future_t *fs[N];
    int64_t t0 = cparsl_mono_ns();
    for (int i = 0; i < N; i++) {
        char out[32];
        snprintf(out, sizeof out, "c%02d.txt", i);
        fs[i] = call1("many", cparsl_int(i), out);
    }
    CHECK(cparsl_future_wait_all(fs, N, 60) == 0, "all done");
    double dt = (double)(cparsl_mono_ns() - t0) / 1e9;
    int ok = 0;
    for (int i = 0; i < N; i++) {
        if (cparsl_future_error(fs[i]) == 0)
            ok++;
        else
            CHECK(0, "task %d: %s", i, cparsl_future_errstr(fs[i]));
        char out[32], want[32];
        snprintf(out, sizeof out, "c%02d.txt", i);
        snprintf(want, sizeof want, "task-%d\n", i);
        CHECK(file_is(out, want), "output %d", i);
        cparsl_future_decref(fs[i]);
    }
    CHECK(ok == N, "%d of %d succeeded", ok, N);
    /* 50 x 0.05 s serially would be 2.5 s; 8 at a time about 0.35 s. */
    fprintf(stderr, "50 bash tasks on 8 threads: %.3f s\n", dt);
    finalize_ok();
    leave_tmp();
}

static const check_case_t cases[] = {
    TEST_ENTRY(substitution_from_futures),
    TEST_ENTRY(quoting),
    TEST_ENTRY(raw_and_braces),
    TEST_ENTRY(missing_placeholder),
    TEST_ENTRY(exit_codes),
    TEST_ENTRY(walltime),
    TEST_ENTRY(walltime_pool_survives),
    TEST_ENTRY(missing_output),
    TEST_ENTRY(stream_files),
    TEST_ENTRY(retries),
    TEST_ENTRY(pipeline),
    TEST_ENTRY(concurrent_50),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    unsetenv("CPARSL_CONFIG");
    atexit(cleanup_at_exit);
    return check_main(argc, argv, cases);
}
