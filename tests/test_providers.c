/*
 * test_providers.c - the providers' configuration and block scripts
 * (providers/provider.c and one file per provider).
 *
 *   golden      each provider's script for one block, pinned by
 *               tests/golden/providers/<name>.sh (CPARSL_UPDATE_GOLDEN=1
 *               rewrites them); every script is mode 0700, and sh -n
 *               reads it
 *   bad_config  unknown keys, malformed walltimes, values a scheduler
 *               cannot express: refused, naming the key
 *   states      the local provider: a block that exits 0 is completed,
 *               one that exits 3 failed, one cancelled is cancelled,
 *               an id never submitted is missing
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cparsl/config.h>
#include <cparsl/provider.h>

#include "check.h"

static const char *golden_dir = "tests/golden/providers";

static cparsl_provider_t *configure(const char *yaml, cparsl_error_t *err)
{
    cparsl_config_t *cfg = NULL;
    if (cparsl_config_load_string(&cfg, yaml, "provider.yaml", err) < 0)
        return NULL;
    cparsl_provider_t *p = NULL;
    const cparsl_cnode_t *root = cparsl_config_root(cfg);
    if (cparsl_provider_configure(cparsl_cnode_get(root, "provider"), &p, err) <
        0)
        p = NULL;
    cparsl_config_destroy(cfg);
    return p;
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return strdup(buf);
}

static const struct {
    const char *name, *yaml;
} goldens[] = {
    {"local", "provider: {type: local, walltime: '1:00:00'}\n"},
    {"slurm", "provider: {type: slurm, nodes_per_block: 2, cpus_per_node: 8,\n"
              "  walltime: '00:30:00', partition: debug, account: proj,\n"
              "  qos: normal, constraint: haswell, exclusive: false,\n"
              "  scheduler_options: '#SBATCH --mem=0',\n"
              "  worker_init: 'module load mpi', launcher: srun}\n"},
    {"pbs", "provider: {type: pbs, nodes_per_block: 2, cpus_per_node: 64,\n"
            "  walltime: '2:00:00', queue: debug, account: proj,\n"
            "  constraint: 'mem=200gb', scheduler_options: '#PBS -l "
            "filesystems=home',\n"
            "  worker_init: 'source env.sh', launcher: mpiexec}\n"},
    {"torque", "provider: {type: pbs, dialect: torque, nodes_per_block: 2,\n"
               "  cpus_per_node: 16, walltime: '01:00:00', queue: batch}\n"},
    {"cobalt",
     "provider: {type: cobalt, nodes_per_block: 4, walltime: '00:45:00',\n"
     "  queue: debug-cache-quad, account: proj, constraint: "
     "'mcdram=cache:numa=quad',\n"
     "  launcher: {type: aprun, overrides: '-d 64'}}\n"},
};

TEST_CASE(golden)
{
    bool update = getenv("CPARSL_UPDATE_GOLDEN") &&
                  strcmp(getenv("CPARSL_UPDATE_GOLDEN"), "1") == 0;
    char dir[] = "/tmp/cparsl-providers-XXXXXX";
    REQUIRE(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
    static const char *const env[] = {
        "CPARSL_HTEX_JOIN=/run/000/htex.htex.addr", "CPARSL_BLOCK_ID=3",
        "ODD=it's $HOME", NULL};
    static const char *const argv[] = {"/opt/app/bin/sim", "--steps", "10",
                                       NULL};
    for (size_t i = 0; i < sizeof goldens / sizeof goldens[0]; i++) {
        cparsl_error_t err;
        cparsl_provider_t *p = configure(goldens[i].yaml, &err);
        CHECK(p, "%s: %s", goldens[i].name, err.text);
        if (!p)
            continue;
        char script[512];
        snprintf(script, sizeof script, "%s/%s.sh", dir, goldens[i].name);
        cparsl_block_req_t b = {
            .label = "htex",
            .block = 3,
            .name = "cparsl.htex.3",
            .script = script,
            .out = "/run/000/block.htex.3.out",
            .err = "/run/000/block.htex.3.err",
            .prefix = "/run/000/block.htex.3",
        };
        int rc = cparsl_provider_write_script(p, &b, "/home/user/work", env,
                                              argv, &err);
        CHECK(rc == 0, "%s: %s", goldens[i].name, err.text);
        struct stat st;
        CHECK(stat(script, &st) == 0 && (st.st_mode & 0777) == 0700,
              "%s: mode %o", goldens[i].name, st.st_mode & 0777);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "sh -n '%s'", script);
        CHECK(system(cmd) == 0, "%s: sh -n refuses it", goldens[i].name);
        char *got = slurp(script);
        char path[512];
        snprintf(path, sizeof path, "%s/%s.sh", golden_dir, goldens[i].name);
        if (update && got) {
            FILE *fp = fopen(path, "w");
            REQUIRE(fp, "cannot write %s", path);
            fputs(got, fp);
            fclose(fp);
        }
        char *want = slurp(path);
        CHECK(got && want && strcmp(got, want) == 0,
              "%s differs from %s:\n--- golden\n%s--- got\n%s", goldens[i].name,
              path, want ? want : "(none)\n", got ? got : "(none)\n");
        free(got);
        free(want);
        unlink(script);
        cparsl_provider_destroy(p);
    }
    rmdir(dir);
}

TEST_CASE(bad_config)
{
    static const struct {
        const char *yaml, *words;
    } bad[] = {
        {"provider: {type: slurm, nodes_per_blok: 2}\n", "nodes_per_blok"},
        {"provider: {type: slurm, walltime: '1:2:3:4'}\n", "walltime"},
        {"provider: {type: slurm, walltime: '00:61:00'}\n", "walltime"},
        {"provider: {type: slurm, walltime: soon}\n", "walltime"},
        {"provider: {type: lsf}\n", "unknown provider 'lsf'"},
        {"provider: {nodes_per_block: 2}\n", "needs a type"},
        {"provider: slurm\n", "expected a map"},
        {"provider: {type: slurm, min_blocks: 3, max_blocks: 2}\n",
         "max_blocks"},
        {"provider: {type: slurm, init_blocks: 3, max_blocks: 2}\n",
         "max_blocks"},
        {"provider: {type: slurm, queue: a, partition: b}\n",
         "either queue or partition"},
        {"provider: {type: slurm, parallelism: 2}\n", "parallelism"},
        {"provider: {type: slurm, nodes_per_block: 0}\n", "nodes_per_block"},
        {"provider: {type: slurm, launcher: warp}\n", "warp"},
        {"provider: {type: slurm, launcher: {type: srun, colour: red}}\n",
         "colour"},
        {"provider: {type: slurm, account: \"a\\nb\"}\n", "one line"},
        {"provider: {type: pbs, qos: high}\n", "PBS has no qos"},
        {"provider: {type: pbs, dialect: lsf}\n", "dialect"},
        {"provider: {type: pbs, constraint: 'a b'}\n", "constraint"},
        {"provider: {type: cobalt, qos: high}\n", "Cobalt has no qos"},
        {"provider: {type: slurm, dialect: torque}\n", "dialect"},
        {"provider: {type: local, nodes_per_block: 2}\n", "nodes_per_block"},
        {"provider: {type: slurm, cmd_timeout: 0}\n", "cmd_timeout"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cparsl_error_t err = {0};
        cparsl_provider_t *p = configure(bad[i].yaml, &err);
        CHECK(!p && strstr(err.text, bad[i].words),
              "%s: expected an error naming '%s', got '%s'", bad[i].yaml,
              bad[i].words, err.text);
        cparsl_provider_destroy(p);
    }
}

static cparsl_block_state_t state_of(cparsl_provider_t *p, const char *id)
{
    const char *ids[1] = {id};
    cparsl_block_state_t st = CPARSL_BLOCK_STATE_COUNT;
    cparsl_error_t err;
    for (int i = 0; i < 500; i++) {
        CHECK(p->ops->status(p, ids, 1, &st, &err) == 0, "status: %s",
              err.text);
        if (cparsl_block_state_final(st))
            break;
        usleep(10000);
    }
    return st;
}

TEST_CASE(states)
{
    cparsl_error_t err;
    cparsl_provider_t *p = configure("provider: {type: local}\n", &err);
    REQUIRE(p, "%s", err.text);
    char dir[] = "/tmp/cparsl-local-XXXXXX";
    REQUIRE(mkdtemp(dir), "mkdtemp");
    static const struct {
        const char *body;
        bool cancel;
        cparsl_block_state_t want;
    } jobs[] = {
        {"exit 0\n", false, CPARSL_BLOCK_COMPLETED},
        {"echo oops >&2; exit 3\n", false, CPARSL_BLOCK_FAILED},
        {"sleep 30\n", true, CPARSL_BLOCK_CANCELLED},
    };
    for (size_t i = 0; i < sizeof jobs / sizeof jobs[0]; i++) {
        char script[256], out[256], errp[256], id[64];
        snprintf(script, sizeof script, "%s/%zu.sh", dir, i);
        snprintf(out, sizeof out, "%s/%zu.out", dir, i);
        snprintf(errp, sizeof errp, "%s/%zu.err", dir, i);
        FILE *fp = fopen(script, "w");
        REQUIRE(fp, "cannot write %s", script);
        fputs(jobs[i].body, fp);
        fclose(fp);
        cparsl_block_req_t b = {.label = "t",
                                .block = (int64_t)i,
                                .name = "t",
                                .script = script,
                                .out = out,
                                .err = errp,
                                .prefix = script};
        REQUIRE(p->ops->submit(p, &b, id, sizeof id, &err) == 0, "submit: %s",
                err.text);
        if (jobs[i].cancel) {
            const char *ids[1] = {id};
            CHECK(p->ops->cancel(p, ids, 1, &err) == 0, "cancel: %s", err.text);
        }
        cparsl_block_state_t st = state_of(p, id);
        CHECK(st == jobs[i].want, "job %zu: %s, expected %s", i,
              cparsl_block_state_name(st),
              cparsl_block_state_name(jobs[i].want));
        unlink(script);
        unlink(out);
        unlink(errp);
    }
    const char *ids[1] = {"999999999"};
    cparsl_block_state_t st;
    CHECK(p->ops->status(p, ids, 1, &st, &err) == 0 &&
              st == CPARSL_BLOCK_MISSING,
          "an unknown id is missing: %s", cparsl_block_state_name(st));
    cparsl_provider_destroy(p);
    rmdir(dir);
}

static const check_case_t cases[] = {
    TEST_ENTRY(golden),
    TEST_ENTRY(bad_config),
    TEST_ENTRY(states),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    if (argc > 2)
        golden_dir = argv[2];
    return check_main(argc > 1 ? 2 : argc, argv, cases);
}
