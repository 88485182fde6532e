/*
 * test_bash_template.c - the bash app kind on its own, without a DFK:
 * template syntax and rendering, shell quoting proven by running bash on
 * hostile strings, exit-status mapping, stream files, walltime kills,
 * signal deaths and many threads spawning at once.
 *
 * Arguments are built by hand as the DFK would; every try gets a fresh
 * zeroed cparsl_exec_t.  CPARSL_TEST_SCALE divides the loop counts.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bash.h"
#include "check.h"

static char dir[64];
static int scale = 1;

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A call's arguments, as the DFK would lay them out. */
struct call {
    cparsl_app_t app;
    cparsl_argslot_t pos[8], named[8];
    cparsl_value_t inputs[4], outputs[4];
    cparsl_args_t args;
};

static void call_init(struct call *c, const char *cmd)
{
    memset(c, 0, sizeof *c);
    c->app.name = "t";
    c->app.kind = CPARSL_KIND_BASH;
    c->app.command = cmd;
    c->args.app = &c->app;
    c->args.pos = c->pos;
    c->args.named = c->named;
    c->args.inputs = c->inputs;
    c->args.outputs = c->outputs;
}

static void add_pos(struct call *c, cparsl_value_t v)
{
    c->pos[c->args.npos++].value = v;
}

static void add_named(struct call *c, const char *name, cparsl_value_t v)
{
    c->named[c->args.nnamed].name = name;
    c->named[c->args.nnamed++].value = v;
}

static void add_input(struct call *c, const char *path)
{
    c->inputs[c->args.ninputs++] = cparsl_file(path);
}

static void add_output(struct call *c, const char *path)
{
    c->outputs[c->args.noutputs++] = cparsl_file(path);
}

/* A try's error is made when it fails (cparsl_exec_err); reusing or
 * leaving an exec frees it.  Execs are declared EXEC(e), zeroed. */
static void exec_free(cparsl_exec_t *e)
{
    cparsl_exec_clear_error(e);
}
#define EXEC(e) cparsl_exec_t e __attribute__((cleanup(exec_free))) = {0}

static void exec_init(cparsl_exec_t *e, const struct call *c)
{
    exec_free(e);
    memset(e, 0, sizeof *e);
    e->args = c->args;
    e->exit_code = -1;
    e->cpu_s = -1;
    e->maxrss_kib = -1;
}

static int run_call(cparsl_exec_t *e, const struct call *c)
{
    exec_init(e, c);
    return cparsl_appkind_bash.run(e);
}

/* Render c's template; returns the code, the text in out (or ""). */
static int render(const struct call *c, char *out, size_t cap,
                  cparsl_error_t *err)
{
    char *s = NULL;
    int rc = cparsl__bash_render(c->app.command, &c->args, &s, err);
    snprintf(out, cap, "%s", s ? s : "");
    free(s);
    return rc;
}

/* Whole file into a malloc'd buffer (NUL-terminated); NULL if absent. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

static void path_in(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (d == NULL)
        return -1;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

/* ---- templates -------------------------------------------------------- */

static void test_render_forms(void)
{
    struct call c;
    cparsl_error_t err = {0};
    char out[512];
    int rc;

    call_init(&c, "echo {0} {1} {name} {inputs[0]} {outputs[1]} {{x}} }}{{");
    add_pos(&c, cparsl_str("a b"));
    add_pos(&c, cparsl_int(42));
    add_named(&c, "name", cparsl_str("x.txt"));
    add_input(&c, "file:///tmp/in put");
    add_output(&c, "o1");
    add_output(&c, "file:///tmp/o2");
    rc = render(&c, out, sizeof out, &err);
    CHECK(rc == 0, "rc %d: %s", rc, err.text);
    CHECK(strcmp(out, "echo 'a b' 42 x.txt '/tmp/in put' /tmp/o2 {x} }{") == 0,
          "got [%s]", out);

    /* Every value type. */
    int64_t ia[] = {1, -2, 3};
    double da[] = {0.5, -1e300};
    call_init(&c, "{0} {1} {2} {3} {4} {5} {6} {7}");
    add_pos(&c, cparsl_double(0.1));
    add_pos(&c, cparsl_double(3.0));
    add_pos(&c, cparsl_bool(true));
    add_pos(&c, cparsl_bool(false));
    add_pos(&c, cparsl_nil());
    add_pos(&c, cparsl_int_array(ia, 3));
    add_pos(&c, cparsl_double_array(da, 2));
    add_pos(&c, cparsl_str(""));
    rc = render(&c, out, sizeof out, &err);
    CHECK(rc == 0, "rc %d: %s", rc, err.text);
    CHECK(strcmp(out, "0.1 3 true false '' 1 -2 3 0.5 -1e+300 ''") == 0,
          "got [%s]", out);

    call_init(&c, "{0} {1}");
    add_pos(&c, cparsl_int(INT64_MIN));
    add_pos(&c, cparsl_double(1.0 / 3));
    rc = render(&c, out, sizeof out, &err);
    CHECK(rc == 0 && strcmp(out, "-9223372036854775808 "
                                 "0.3333333333333333") == 0,
          "got [%s]", out);

    /* Quoting: safe words bare, the rest single-quoted. */
    call_init(&c, "{0} {1} {2} {3}");
    add_pos(&c, cparsl_str("it's"));
    add_pos(&c, cparsl_str("a-b_c@d%e+f=g:h,i./j"));
    add_pos(&c, cparsl_str("$HOME"));
    add_pos(&c, cparsl_str("'"));
    rc = render(&c, out, sizeof out, &err);
    CHECK(rc == 0, "rc %d", rc);
    CHECK(strcmp(out, "'it'\\''s' a-b_c@d%e+f=g:h,i./j '$HOME' ''\\'''") == 0,
          "got [%s]", out);

    /* Raw mode. */
    call_init(&c, "{0:raw} {v:raw} {outputs[0]:raw} {1:raw}");
    add_pos(&c, cparsl_str("a b | c"));
    add_pos(&c, cparsl_nil());
    add_named(&c, "v", cparsl_str("$X"));
    add_output(&c, "file:///o u t");
    rc = render(&c, out, sizeof out, &err);
    CHECK(rc == 0 && strcmp(out, "a b | c $X /o u t ") == 0, "got [%s]", out);

    /* Keyword names are exact, not prefixes; "outputs" is just a name. */
    call_init(&c, "{n} {outputs}");
    add_named(&c, "nn", cparsl_int(1));
    add_named(&c, "n", cparsl_int(2));
    add_named(&c, "outputs", cparsl_int(3));
    rc = render(&c, out, sizeof out, &err);
    CHECK(rc == 0 && strcmp(out, "2 3") == 0, "got [%s]", out);

    /* Empty template, no placeholders. */
    call_init(&c, "");
    rc = render(&c, out, sizeof out, &err);
    CHECK(rc == 0 && out[0] == '\0', "empty");
}

static void expect_render_error(struct call *c, const char *want)
{
    cparsl_error_t err = {0};
    char out[64];
    int rc = render(c, out, sizeof out, &err);
    CHECK(rc == -CPARSL_ETEMPLATE && err.code == -CPARSL_ETEMPLATE, "%s: rc %d",
          c->app.command, rc);
    CHECK(strstr(err.text, want) != NULL, "%s: [%s] lacks [%s]", c->app.command,
          err.text, want);
}

static void test_render_errors(void)
{
    struct call c;

    call_init(&c, "cp {inputs[0]} {outputs[2]}");
    add_input(&c, "a");
    add_output(&c, "b");
    expect_render_error(&c, "template placeholder {outputs[2]} has no value "
                            "(the call has 1 output)");
    call_init(&c, "cat {inputs[0]}");
    expect_render_error(&c, "template placeholder {inputs[0]} has no value "
                            "(the call has 0 inputs)");
    call_init(&c, "echo {name}");
    add_named(&c, "other", cparsl_int(1));
    expect_render_error(&c, "template placeholder {name} has no value (no "
                            "keyword argument 'name')");
    call_init(&c, "echo {3:raw}");
    add_pos(&c, cparsl_int(1));
    add_pos(&c, cparsl_int(2));
    expect_render_error(&c, "template placeholder {3:raw} has no value (the "
                            "call has 2 positional arguments)");
    call_init(&c, "echo ${HOME}");
    expect_render_error(&c, "no keyword argument 'HOME'");

    /* Values that have no shell form. */
    cparsl_value_t items[1] = {cparsl_int(1)};
    call_init(&c, "echo {0}");
    add_pos(&c, cparsl_bytes("ab", 2));
    expect_render_error(&c, "{0} has type bytes");
    call_init(&c, "echo {k}");
    add_named(&c, "k", cparsl_list(items, 1));
    expect_render_error(&c, "{k} has type list");

    /* Syntax, with byte offsets. */
    static const struct {
        const char *tmpl, *want;
    } bad[] = {
        {"echo {", "at byte 5: '{' is never closed"},
        {"echo {0", "at byte 5"},
        {"a {b{c}}", "at byte 2: '{' is never closed"},
        {"echo }", "at byte 5: lone '}'"},
        {"x}}}", "at byte 3: lone '}'"},
        {"echo {}", "at byte 5: placeholder '{}': empty"},
        {"{0:bogus}", "at byte 0: placeholder '{0:bogus}': unknown modifier"},
        {"{0:}", "unknown modifier"},
        {"{:raw}", "missing argument name"},
        {"{inputs[x]}", "'{inputs[x]}': bad index"},
        {"{inputs[]}", "bad index"},
        {"{outputs[1}", "bad index"},
        {"{outputs[1]x}", "bad index"},
        {"{inputs[99999999999]}", "bad index"},
        {"{foo[1]}", "only inputs[i] and outputs[i] take an index"},
        {"{1x}", "bad positional index"},
        {"{-1}", "not a name, a number"},
        {"{a b}", "not a name, a number"},
        {"echo {a,b}", "at byte 5"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cparsl_error_t err = {0};
        int rc = cparsl__bash_check_template(bad[i].tmpl, &err);
        CHECK(rc == -CPARSL_ETEMPLATE, "%s: rc %d", bad[i].tmpl, rc);
        CHECK(strstr(err.text, bad[i].want) != NULL, "%s: [%s] lacks [%s]",
              bad[i].tmpl, err.text, bad[i].want);
        call_init(&c, bad[i].tmpl);
        expect_render_error(&c, bad[i].want);
    }

    static const char *const good[] = {
        "",          "plain",     "{{}}",
        "{0}{1}{x}", "{_a9:raw}", "{inputs[0]}{outputs[12]:raw}",
        "${{HOME}}",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        cparsl_error_t err = {0};
        int rc = cparsl__bash_check_template(good[i], &err);
        CHECK(rc == 0, "%s: %s", good[i], err.text);
    }

    /* The kind's check() at registration. */
    cparsl_app_t app = {.name = "reg", .kind = CPARSL_KIND_BASH};
    cparsl_error_t err = {0};
    CHECK(cparsl_appkind_bash.check(&app, &err) == -EINVAL, "no command");
    CHECK(strstr(err.text, "'reg'") != NULL, "[%s]", err.text);
    app.command = "echo {";
    CHECK(cparsl_appkind_bash.check(&app, &err) == -CPARSL_ETEMPLATE,
          "bad template");
    CHECK(strstr(err.text, "bash app 'reg': template syntax error at byte 5") ==
              err.text,
          "[%s]", err.text);
    app.command = "echo {0} > {outputs[0]}";
    CHECK(cparsl_appkind_bash.check(&app, &err) == 0, "good template");
    CHECK(strcmp(cparsl_appkind_bash.name, "bash") == 0, "name");
}

/* ---- running ---------------------------------------------------------- */

static void test_hostile_strings(void)
{
    char out[256], pwned[256], big[10001], cmd[600];
    struct call c;
    EXEC(e);

    path_in(out, sizeof out, "hostile.out");
    path_in(pwned, sizeof pwned, "PWNED");
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    big[5000] = '\'';
    char subst[300], bq[300], semi[300];
    snprintf(subst, sizeof subst, "$(touch %s)", pwned);
    snprintf(bq, sizeof bq, "`touch %s`", pwned);
    snprintf(semi, sizeof semi, "; touch %s; '\"", pwned);
    const char *strs[] = {
        "a b",
        "it's",
        subst,
        bq,
        semi,
        "line1\nline2\n",
        "$HOME",
        "\\",
        "'",
        "''",
        "*",
        "",
        "a\"b",
        "!!",
        "~",
        "-n",
        "h\xc3\xa9llo",
        "\ttab ",
        "{0}",
        "&|<>()[]#",
        big,
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        /* positional, and keyword in the redirect's place */
        const char *tmpl = i % 2 ? "printf '%s' {0} > {outputs[0]}"
                                 : "printf '%s' {s} >{outputs[0]}";
        call_init(&c, tmpl);
        if (i % 2)
            add_pos(&c, cparsl_str(strs[i]));
        else
            add_named(&c, "s", cparsl_str(strs[i]));
        add_output(&c, out);
        unlink(out);
        int rc = run_call(&e, &c);
        CHECK(rc == 0, "string %zu: rc %d: %s", i, rc, cparsl_exec_text(&e));
        size_t len = 0;
        char *got = slurp(out, &len);
        CHECK(got && len == strlen(strs[i]) && memcmp(got, strs[i], len) == 0,
              "string %zu: [%.60s] came back as [%.60s]", i, strs[i],
              got ? got : "(none)");
        free(got);
    }
    CHECK(access(pwned, F_OK) != 0, "a quoted string ran a command");

    /* Raw mode is the user's own shell text. */
    snprintf(cmd, sizeof cmd, "printf '%%s' {0:raw} > {outputs[0]}");
    call_init(&c, cmd);
    add_pos(&c, cparsl_str("a   b"));
    add_output(&c, out);
    CHECK(run_call(&e, &c) == 0, "%s", cparsl_exec_text(&e));
    char *got = slurp(out, NULL);
    CHECK(got && strcmp(got, "ab") == 0, "raw: [%s]", got ? got : "");
    free(got);

    /* A file path with a space, from inputs. */
    char in[256];
    path_in(in, sizeof in, "in put.txt");
    FILE *f = fopen(in, "w");
    fputs("content", f);
    fclose(f);
    call_init(&c, "cat {inputs[0]} > {outputs[0]}");
    add_input(&c, in);
    add_output(&c, out);
    CHECK(run_call(&e, &c) == 0, "%s", cparsl_exec_text(&e));
    got = slurp(out, NULL);
    CHECK(got && strcmp(got, "content") == 0, "inputs: [%s]", got ? got : "");
    free(got);
}

static void test_exit_codes(void)
{
    struct call c;
    EXEC(e);
    char path[256], cmd[400];
    int rc;

    call_init(&c, "exit 0");
    rc = run_call(&e, &c);
    CHECK(rc == 0 && cparsl_exec_code(&e) == 0 &&
              cparsl_exec_text(&e)[0] == '\0',
          "exit 0");
    CHECK(e.result.type == CPARSL_T_INT && e.result.u.i == 0, "result");
    CHECK(e.exit_code == 0 && e.term_signal == 0, "exit_code %d", e.exit_code);
    CHECK(e.t_start > 0 && e.t_end >= e.t_start, "times");
    CHECK(e.cpu_s >= 0 && e.maxrss_kib > 0, "cpu %g rss %lld", e.cpu_s,
          (long long)e.maxrss_kib);

    call_init(&c, "echo first line >&2; echo oops >&2; exit 3");
    rc = run_call(&e, &c);
    CHECK(rc == -CPARSL_EEXIT && cparsl_exec_code(&e) == rc, "rc %d", rc);
    CHECK(e.exit_code == 3, "exit_code %d", e.exit_code);
    CHECK(strcmp(cparsl_exec_text(&e),
                 "bash app 't' exited with status 3: first "
                 "line\noops") == 0,
          "[%s]", cparsl_exec_text(&e));

    call_init(&c, "no_such_command_xyz --flag");
    rc = run_call(&e, &c);
    CHECK(rc == -CPARSL_ENOTFOUND && e.exit_code == 127, "rc %d", rc);
    CHECK(strstr(cparsl_exec_text(&e), "command not found (exit 127): ") !=
                  NULL &&
              strstr(cparsl_exec_text(&e), "no_such_command_xyz") != NULL,
          "[%s]", cparsl_exec_text(&e));

    path_in(path, sizeof path, "noexec.sh");
    FILE *f = fopen(path, "w");
    fputs("echo hi\n", f);
    fclose(f);
    chmod(path, 0644);
    call_init(&c, "{0}");
    add_pos(&c, cparsl_str(path));
    rc = run_call(&e, &c);
    CHECK(rc == -CPARSL_ENOEXEC && e.exit_code == 126, "rc %d", rc);
    CHECK(strstr(cparsl_exec_text(&e), "command found but not executable (exit "
                                       "126): ") != NULL &&
              strstr(cparsl_exec_text(&e), "noexec.sh") != NULL,
          "[%s]", cparsl_exec_text(&e));

    /* A long stderr: the message keeps its end and still fits. */
    call_init(&c, "head -c 5000 /dev/zero | tr '\\0' y >&2; "
                  "echo THE END >&2; exit 9");
    rc = run_call(&e, &c);
    size_t tl = strlen(cparsl_exec_text(&e));
    CHECK(rc == -CPARSL_EEXIT && tl < CPARSL_ERROR_TEXT && tl > 400,
          "rc %d len %zu", rc, tl);
    CHECK(tl > 7 && strcmp(cparsl_exec_text(&e) + tl - 7, "THE END") == 0,
          "[%s]", cparsl_exec_text(&e));
    CHECK(strstr(cparsl_exec_text(&e), "exited with status 9: ...yyy") != NULL,
          "[%.80s]", cparsl_exec_text(&e));

    /* Death by signal. */
    call_init(&c, "echo dying >&2; kill -9 $$");
    rc = run_call(&e, &c);
    CHECK(rc == -CPARSL_ESIGNAL && e.term_signal == SIGKILL &&
              e.exit_code == -1,
          "rc %d sig %d", rc, e.term_signal);
    CHECK(strstr(cparsl_exec_text(&e),
                 "bash app 't' killed by signal 9 (Killed)") ==
              cparsl_exec_text(&e),
          "[%s]", cparsl_exec_text(&e));

    /* Declared outputs. */
    path_in(path, sizeof path, "never");
    call_init(&c, "true");
    add_output(&c, path);
    rc = run_call(&e, &c);
    snprintf(cmd, sizeof cmd,
             "bash app 't' exited 0 but did not create its output '%s'", path);
    CHECK(rc == -CPARSL_EOUTPUT && strcmp(cparsl_exec_text(&e), cmd) == 0,
          "rc %d [%s]", rc, cparsl_exec_text(&e));
    call_init(&c, "touch {outputs[0]} {outputs[1]}");
    add_output(&c, path);
    path_in(path, sizeof path, "made");
    snprintf(cmd, sizeof cmd, "file://%s", path);
    add_output(&c, cmd);
    rc = run_call(&e, &c);
    CHECK(rc == 0, "touch: %s", cparsl_exec_text(&e));

    /* An unbound placeholder fails before anything runs. */
    call_init(&c, "echo {missing}");
    rc = run_call(&e, &c);
    CHECK(rc == -CPARSL_ETEMPLATE && e.exit_code == -1, "rc %d", rc);
    CHECK(strcmp(cparsl_exec_text(&e),
                 "bash app 't': template placeholder "
                 "{missing} has no value (no keyword argument "
                 "'missing')") == 0,
          "[%s]", cparsl_exec_text(&e));

    /* stdin is /dev/null: a reading command sees EOF, never hangs. */
    path_in(path, sizeof path, "stdin.out");
    call_init(&c, "read -r x; echo \"[$x]\" > {outputs[0]}; cat");
    add_output(&c, path);
    rc = run_call(&e, &c);
    char *got = slurp(path, NULL);
    CHECK(rc != 0 || (got && strcmp(got, "[]\n") == 0), "stdin: [%s]",
          got ? got : "");
    free(got);

    /* The host ignores SIGPIPE (many do); the child must not inherit it:
     * `yes` should die of SIGPIPE (141), not print EPIPE errors. */
    call_init(&c, "yes | head -n1 >/dev/null; echo ${{PIPESTATUS[0]}} > "
                  "{outputs[0]}");
    add_output(&c, path);
    rc = run_call(&e, &c);
    got = slurp(path, NULL);
    CHECK(rc == 0 && got && strcmp(got, "141\n") == 0, "SIGPIPE: %s [%s]",
          cparsl_exec_text(&e), got ? got : "");
    free(got);
}

static void test_streams(void)
{
    struct call c;
    EXEC(e);
    char out[256], err_path[256], both[256];
    char *got;

    path_in(out, sizeof out, "stdout.txt");
    path_in(err_path, sizeof err_path, "stderr.txt");
    path_in(both, sizeof both, "both.txt");

    /* append (the default) then truncate */
    call_init(&c, "echo {0}");
    add_pos(&c, cparsl_str("one"));
    for (int i = 0; i < 2; i++) {
        exec_init(&e, &c);
        e.stdout_path = out;
        e.stdout_mode = CPARSL_APPEND;
        CHECK(cparsl_appkind_bash.run(&e) == 0, "%s", cparsl_exec_text(&e));
    }
    got = slurp(out, NULL);
    CHECK(got && strcmp(got, "one\none\n") == 0, "append: [%s]",
          got ? got : "");
    free(got);
    exec_init(&e, &c);
    e.stdout_path = out;
    e.stdout_mode = CPARSL_TRUNCATE;
    CHECK(cparsl_appkind_bash.run(&e) == 0, "%s", cparsl_exec_text(&e));
    got = slurp(out, NULL);
    CHECK(got && strcmp(got, "one\n") == 0, "truncate: [%s]", got ? got : "");
    free(got);

    /* stderr to a file: the message quotes this run's part only. */
    call_init(&c, "echo {0} >&2; exit 2");
    add_pos(&c, cparsl_str("first"));
    exec_init(&e, &c);
    e.stderr_path = err_path;
    CHECK(cparsl_appkind_bash.run(&e) == -CPARSL_EEXIT, "first");
    CHECK(strstr(cparsl_exec_text(&e), "status 2: first") != NULL, "[%s]",
          cparsl_exec_text(&e));
    c.pos[0].value = cparsl_str("second");
    exec_init(&e, &c);
    e.stderr_path = err_path;
    CHECK(cparsl_appkind_bash.run(&e) == -CPARSL_EEXIT, "second");
    CHECK(strstr(cparsl_exec_text(&e), "status 2: second") != NULL &&
              strstr(cparsl_exec_text(&e), "first") == NULL,
          "[%s]", cparsl_exec_text(&e));
    got = slurp(err_path, NULL);
    CHECK(got && strcmp(got, "first\nsecond\n") == 0, "stderr: [%s]",
          got ? got : "");
    free(got);
    exec_init(&e, &c);
    e.stderr_path = err_path;
    e.stderr_mode = CPARSL_TRUNCATE;
    CHECK(cparsl_appkind_bash.run(&e) == -CPARSL_EEXIT, "third");
    got = slurp(err_path, NULL);
    CHECK(got && strcmp(got, "second\n") == 0, "stderr trunc: [%s]",
          got ? got : "");
    free(got);

    /* One file for both streams, truncated: nothing overwritten. */
    FILE *f = fopen(both, "w");
    fputs("old content that must go\n", f);
    fclose(f);
    call_init(&c, "echo out1; echo err1 >&2; echo out2");
    exec_init(&e, &c);
    e.stdout_path = both;
    e.stderr_path = both;
    e.stdout_mode = e.stderr_mode = CPARSL_TRUNCATE;
    CHECK(cparsl_appkind_bash.run(&e) == 0, "%s", cparsl_exec_text(&e));
    got = slurp(both, NULL);
    CHECK(got && strcmp(got, "out1\nerr1\nout2\n") == 0, "both: [%s]",
          got ? got : "");
    free(got);

    /* A stream file that cannot be opened names its path. */
    call_init(&c, "echo x");
    exec_init(&e, &c);
    e.stdout_path = "/nonexistent-dir/out.txt";
    CHECK(cparsl_appkind_bash.run(&e) == -ENOENT, "rc %d",
          cparsl_exec_code(&e));
    CHECK(strstr(cparsl_exec_text(&e), "'/nonexistent-dir/out.txt'") != NULL,
          "[%s]", cparsl_exec_text(&e));
    exec_init(&e, &c);
    e.stderr_path = "/nonexistent-dir/err.txt";
    CHECK(cparsl_appkind_bash.run(&e) == -ENOENT, "rc %d",
          cparsl_exec_code(&e));
    CHECK(strstr(cparsl_exec_text(&e),
                 "stderr file '/nonexistent-dir/err.txt'") != NULL,
          "[%s]", cparsl_exec_text(&e));
}

/* The pgid from "...; process group 1234 killed". */
static long killed_group(const char *text)
{
    const char *p = strstr(text, "process group ");
    return p ? strtol(p + 14, NULL, 10) : -1;
}

/*
 * True once no process is left in group pg.  Members other than the
 * leader were orphaned when the leader died: they are SIGKILLed but init
 * reaps them, and some container inits only do so every second or so.
 */
static bool group_gone(long pg)
{
    for (int i = 0; i < 500; i++) {
        errno = 0;
        if (kill((pid_t)-pg, 0) == -1 && errno == ESRCH)
            return true;
        usleep(10000);
    }
    return false;
}

static void test_walltime(void)
{
    struct call c;
    EXEC(e);
    double t0;
    char want[128];

    /* With SIGTERM blocked here: the child must not inherit the mask, or
     * the kill would need the SIGKILL grace. */
    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, &old);

    call_init(&c, "sleep 30");
    exec_init(&e, &c);
    e.walltime = 0.5;
    t0 = mono_s();
    int rc = cparsl_appkind_bash.run(&e);
    double dt = mono_s() - t0;
    CHECK(rc == -CPARSL_EWALLTIME, "rc %d: %s", rc, cparsl_exec_text(&e));
    CHECK(dt >= 0.45 && dt < 1.4, "took %.2f s", dt);
    CHECK(e.term_signal == SIGTERM, "signal %d", e.term_signal);
    long pg = killed_group(cparsl_exec_text(&e));
    snprintf(want, sizeof want,
             "bash app 't' exceeded its walltime of 0.5 s; process group %ld "
             "killed",
             pg);
    CHECK(pg > 1 && strcmp(cparsl_exec_text(&e), want) == 0, "[%s]",
          cparsl_exec_text(&e));
    CHECK(pg > 1 && group_gone(pg), "group %ld still there", pg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    /* SIGTERM ignored, by the shell and (inherited) by sleep; the
     * background job also outlives the shell's own exit. */
    call_init(&c, "trap '' TERM; sleep 30 & sleep 30; wait");
    exec_init(&e, &c);
    e.walltime = 0.3;
    t0 = mono_s();
    rc = cparsl_appkind_bash.run(&e);
    dt = mono_s() - t0;
    CHECK(rc == -CPARSL_EWALLTIME, "rc %d: %s", rc, cparsl_exec_text(&e));
    CHECK(dt >= 1.25 && dt < 2.5, "took %.2f s", dt);
    CHECK(e.term_signal == SIGKILL, "signal %d", e.term_signal);
    pg = killed_group(cparsl_exec_text(&e));
    CHECK(pg > 1 && group_gone(pg), "group %ld still there", pg);

    /* A command that ends before its walltime is untouched. */
    call_init(&c, "sleep 0.05");
    exec_init(&e, &c);
    e.walltime = 5;
    t0 = mono_s();
    CHECK(cparsl_appkind_bash.run(&e) == 0, "%s", cparsl_exec_text(&e));
    CHECK(mono_s() - t0 < 1, "short command waited");
}

/* ---- threads ---------------------------------------------------------- */

struct worker {
    pthread_t th;
    int id, n, failures;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char out[256], val[64], name[64];

    for (int i = 0; i < w->n; i++) {
        struct call c;
        EXEC(e);
        snprintf(name, sizeof name, "w%d-%d.out", w->id, i);
        path_in(out, sizeof out, name);
        snprintf(val, sizeof val, "thread %d call %d 'q'", w->id, i);
        if (i % 4 == 3) {
            /* a failing one: its stderr must be its own */
            call_init(&c, "echo {0} >&2; exit 5");
            add_pos(&c, cparsl_str(val));
            if (run_call(&e, &c) != -CPARSL_EEXIT ||
                strstr(cparsl_exec_text(&e), val) == NULL)
                w->failures++;
            continue;
        }
        call_init(&c, "printf '%s' {0} > {outputs[0]}");
        add_pos(&c, cparsl_str(val));
        add_output(&c, out);
        if (run_call(&e, &c) != 0) {
            w->failures++;
            continue;
        }
        char *got = slurp(out, NULL);
        if (got == NULL || strcmp(got, val) != 0)
            w->failures++;
        free(got);
    }
    return NULL;
}

static void test_threads(void)
{
    struct worker w[8];
    int n = 20 / scale > 0 ? 20 / scale : 1;
    double t0 = mono_s();

    for (int i = 0; i < 8; i++) {
        w[i] = (struct worker){.id = i, .n = n};
        int rc = pthread_create(&w[i].th, NULL, worker_main, &w[i]);
        REQUIRE(rc == 0, "pthread_create");
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(w[i].th, NULL);
        CHECK(w[i].failures == 0, "thread %d: %d failures", i, w[i].failures);
    }
    printf("threads: 8 x %d commands in %.2f s\n", n, mono_s() - t0);
}

int main(void)
{
    const char *s = getenv("CPARSL_TEST_SCALE");
    if (s && atoi(s) > 0)
        scale = atoi(s);
    signal(SIGPIPE, SIG_IGN);
    snprintf(dir, sizeof dir, "/tmp/cparsl-bash-XXXXXX");
    /* REQUIRE evaluates its condition twice: call mkdtemp once. */
    bool made = mkdtemp(dir) != NULL;
    REQUIRE(made, "mkdtemp");

    int fds = count_fds();
    test_render_forms();
    test_render_errors();
    test_hostile_strings();
    test_exit_codes();
    test_streams();
    test_walltime();
    test_threads();
    CHECK(count_fds() == fds, "descriptors leaked: %d before, %d after", fds,
          count_fds());

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return check_done();
}
