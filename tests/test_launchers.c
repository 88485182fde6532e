/*
 * test_launchers.c - launchers (launchers/launchers.c) pinned by golden
 * files, quoting checked by running fragments through /bin/sh, and bad
 * specs refused by name.
 *
 * Golden files: tests/golden/launchers/<name>.sh, the fragment for the
 * spec in golden_spec().  CPARSL_UPDATE_GOLDEN=1 rewrites them (then read
 * the diff: they pin the exact command lines).  The directory comes as
 * argv[2] (CTest passes it).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "launchers.h"

static const char *golden_dir = "tests/golden/launchers";

static const char *const golden_argv[] = {"cparsl-manager", "--label",
                                          "my block", "it's $HOME", NULL};

static cparsl_launch_spec_t golden_spec(const char *name)
{
    return (cparsl_launch_spec_t){
        .argv = golden_argv,
        .nodes_per_block = 2,
        .tasks_per_node = 4,
        .overrides = strcmp(name, "simple") && strcmp(name, "single_node") &&
                             strcmp(name, "wrapped")
                         ? "--exclusive"
                         : NULL,
        .prefix = "apptainer exec image.sif",
    };
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return strdup(buf);
}

TEST_CASE(golden)
{
    bool update = getenv("CPARSL_UPDATE_GOLDEN") &&
                  strcmp(getenv("CPARSL_UPDATE_GOLDEN"), "1") == 0;
    for (const char *const *n = cparsl_launcher_names(); *n; n++) {
        cparsl_launch_spec_t s = golden_spec(*n);
        char *got = NULL;
        cparsl_error_t err;
        CHECK(cparsl_launcher_build(*n, &s, &got, &err) == 0, "%s: %s", *n,
              err.text);
        if (!got)
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.sh", golden_dir, *n);
        if (update) {
            FILE *fp = fopen(path, "w");
            REQUIRE(fp, "write %s: %s", path, strerror(errno));
            fputs(got, fp);
            fclose(fp);
        }
        char *want = slurp(path);
        CHECK(want && strcmp(want, got) == 0,
              "%s differs from %s:\n--- golden\n%s--- got\n%s", *n, path,
              want ? want : "(missing)\n", got);
        free(want);
        free(got);
    }
}

/* Run a fragment through /bin/sh; its exit status. */
static int run_sh(const char *fragment)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", fragment, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

TEST_CASE(quoting)
{
    char out[] = "/tmp/cparsl-launch-XXXXXX";
    int fd = mkstemp(out);
    REQUIRE(fd >= 0, "mkstemp");
    close(fd);
    const char *argv[] = {"sh",     "-c", NULL, "sh", "weird 'arg' $x `y`",
                          "a\nb c", "",   NULL};
    static const char *const names[] = {"simple", "single_node"};
    for (int k = 0; k < 2; k++) {
        /* each word after the script between bars, and the rank, into
         * the file */
        char script2[600];
        snprintf(script2, sizeof script2,
                 "{ for w in \"$@\"; do printf '|%%s' \"$w\"; done; "
                 "printf '|rank=%%s\\n' \"${CPARSL_WORKER_RANK:-none}\"; } "
                 ">> %s",
                 out);
        argv[2] = script2;
        cparsl_launch_spec_t s = {
            .argv = argv, .nodes_per_block = 1, .tasks_per_node = 3};
        char *frag = NULL;
        cparsl_error_t err;
        REQUIRE(cparsl_launcher_build(names[k], &s, &frag, &err) == 0, "%s",
                err.text);
        if (truncate(out, 0) < 0)
            REQUIRE(0, "truncate %s", out);
        CHECK(run_sh(frag) == 0, "%s ran", names[k]);
        free(frag);
        char *got = slurp(out);
        const char *line = "|weird 'arg' $x `y`|a\nb c||rank=";
        size_t copies = 0;
        for (const char *p = got; p && (p = strstr(p, line)); p++)
            copies++;
        CHECK(copies == (k ? 3u : 1u), "%s: %zu copies of the words in:\n%s",
              names[k], copies, got ? got : "");
        if (k)
            CHECK(strstr(got, "rank=0\n") && strstr(got, "rank=1\n") &&
                      strstr(got, "rank=2\n"),
                  "each rank once:\n%s", got);
        free(got);
    }
    /* single_node fails when a copy fails */
    const char *bad[] = {"sh", "-c", "exit $((CPARSL_WORKER_RANK == 1))", NULL};
    cparsl_launch_spec_t s = {
        .argv = bad, .nodes_per_block = 1, .tasks_per_node = 3};
    char *frag = NULL;
    cparsl_error_t err;
    REQUIRE(cparsl_launcher_build("single_node", &s, &frag, &err) == 0, "%s",
            err.text);
    CHECK(run_sh(frag) == 1, "one failed copy fails the block");
    free(frag);
    unlink(out);
    char *q = cparsl_sh_quote("it's");
    CHECK(q && strcmp(q, "'it'\\''s'") == 0, "quote: %s", q ? q : "");
    free(q);
}

TEST_CASE(bad_spec)
{
    static const char *const argv[] = {"x", NULL};
    static const char *const empty[] = {NULL};
    struct {
        const char *name;
        cparsl_launch_spec_t s;
        const char *words;
    } bad[] = {
        {"srunn", {argv, 1, 1, NULL, NULL}, "unknown launcher 'srunn'"},
        {"srun", {empty, 1, 1, NULL, NULL}, "no command"},
        {"srun", {argv, 0, 1, NULL, NULL}, "nodes_per_block 0"},
        {"aprun", {argv, 1, -2, NULL, NULL}, "tasks_per_node -2"},
        {"mpiexec", {argv, 1, 1, "--a\n--b", NULL}, "one line"},
        {"wrapped", {argv, 1, 1, NULL, NULL}, "needs a prefix"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out = (char *)"unset";
        cparsl_error_t err;
        int rc = cparsl_launcher_build(bad[i].name, &bad[i].s, &out, &err);
        CHECK(rc == -CPARSL_ECONFIG && strstr(err.text, bad[i].words) &&
                  out == NULL,
              "%s: %d '%s'", bad[i].name, rc, err.text);
    }
    char *out = NULL;
    cparsl_error_t err;
    CHECK(cparsl_launcher_build(NULL, &bad[0].s, &out, &err) < 0 &&
              strstr(err.text, "known: simple"),
          "no name: %s", err.text);
}

static const check_case_t cases[] = {
    TEST_ENTRY(golden),
    TEST_ENTRY(quoting),
    TEST_ENTRY(bad_spec),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    if (argc > 2)
        golden_dir = argv[2];
    return check_main(argc > 1 ? 2 : argc, argv, cases);
}
