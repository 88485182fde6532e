#!/usr/bin/python3
"""Blocks from providers, end to end: blocks_app (an htex executor whose
only workers come from the provider's blocks) against a real Slurm, the
local provider, or the PBS/Torque/Cobalt stand-ins (tests/standins), and
its run file read back with h5py.

    check_blocks.py PROVIDER CASE BLOCKS_APP WORKDIR [STANDINS_DIR]

PROVIDER: slurm (SLURM_CONF from the test cluster's env), local, pbs,
torque, cobalt.  CASE:

  tasks_in_blocks  every task runs inside a block's job; request to first
                   task timed; scripts 0700 without the secret; nothing
                   left running after finalize
  scale_out_in     0 blocks -> 2 under load -> 0 when idle: both blocks
                   drain and end on their own before finalize
  cancel_block     the scheduler cancels block 1 mid-run (scancel/qdel, or
                   a signal for local): its tries are retried, a new block
                   is asked for, every answer is right
  block_failure    block 1's worker_init fails: it is counted failed and
                   block 2 does the work; then a run whose every block
                   fails gives up after block_error_threshold with the
                   reason, instead of hanging
  cmd_errors       (stand-ins) qsub failing, qstat answering garbage,
                   qstat hanging past cmd_timeout: named in errors/log
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

try:
    import h5py
except ImportError:
    sys.stderr.write("check_blocks: h5py missing (apt-get install "
                     "python3-h5py)\n")
    sys.exit(77)


def fail(msg):
    sys.stderr.write("check_blocks: FAIL: %s\n" % msg)
    sys.exit(1)


def log(msg):
    sys.stdout.write("check_blocks: %s\n" % msg)
    sys.stdout.flush()


PROVIDER, CASE, APP, WORK = sys.argv[1:5]
APP, WORK = os.path.abspath(APP), os.path.abspath(WORK)
STANDINS = os.path.abspath(sys.argv[5]) if len(sys.argv) > 5 else None
SCHED = {"slurm": "slurm", "local": "local", "pbs": "pbs", "torque": "pbs",
         "cobalt": "cobalt"}[PROVIDER]


def environment():
    env = dict(os.environ)
    if PROVIDER in ("pbs", "torque", "cobalt"):
        sub = "pbs" if SCHED == "pbs" else "cobalt"
        env["PATH"] = os.path.join(STANDINS, sub) + ":" + env["PATH"]
        env["CPARSL_STANDIN_DIR"] = os.path.join(WORK, "standin")
        os.makedirs(env["CPARSL_STANDIN_DIR"], exist_ok=True)
        if PROVIDER == "torque":
            env["CPARSL_STANDIN_DIALECT"] = "torque"
    return env


ENV = None


def config(name, provider, workers=2, strategy="htex_auto_scale",
           threshold=3, extra=""):
    p = {"type": SCHED, "walltime": "00:10:00", "cmd_timeout": 10,
         "connect_timeout": 60}
    if SCHED == "slurm":
        p["exclusive"] = False
    if SCHED == "local":
        p["launcher"] = "single_node"
    if SCHED == "cobalt":
        p["launcher"] = "single_node"
    if PROVIDER == "torque":
        p["dialect"] = "torque"
    p.update(provider)
    lines = ["run_dir: %s/%s.runinfo" % (WORK, name),
             "store: {type: hdf5}",
             "retries: 3",
             "executors:",
             "  - type: htex",
             "    label: htex",
             "    workers_per_manager: %d" % workers,
             "    heartbeat_period: 0.5",
             "    heartbeat_threshold: %g" % threshold,
             "    max_idletime: 2",
             "    strategy: %s" % strategy,
             "    strategy_period: 0.5",
             "    provider:"]
    for k, v in p.items():
        lines.append("      %s: %s" % (k, json.dumps(v)))
    path = os.path.join(WORK, name + ".yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n" + extra)
    return path


class Run:
    """blocks_app running: its lines, its run dir."""

    def __init__(self, cfg, ntasks, sleep_ms, hold_s, expect="ok",
                 launcher=()):
        self.t0 = time.time()
        self.p = subprocess.Popen(
            list(launcher) +
            [APP, cfg, str(ntasks), str(sleep_ms), str(hold_s), expect],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=ENV, cwd=WORK)
        line = self.p.stdout.readline()
        if not line.startswith("RUN_DIR "):
            self.p.kill()
            out, err = self.p.communicate()
            fail("blocks_app did not start: %r %s %s" % (line, out, err))
        self.run_dir = os.path.join(WORK, line.split()[1])
        self.result = None
        self.error = None

    def finish(self, timeout=150):
        try:
            out, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate()
            fail("blocks_app hung past %d s: %s\n%s\nlog:\n%s" % (
                timeout, out, err, self.log()[-3000:]))
        for line in out.splitlines():
            if line.startswith("RESULT "):
                self.result = dict(kv.split("=", 1)
                                   for kv in line.split()[1:])
            if line.startswith("ERROR "):
                self.error = line[6:]
        self.stdout, self.stderr = out, err
        self.seconds = time.time() - self.t0
        return self.p.returncode

    def log(self):
        try:
            with open(os.path.join(self.run_dir, "cparsl.log")) as f:
                return f.read()
        except OSError:
            return ""

    def expect_ok(self, rc, ntasks):
        if rc != 0 or not self.result or int(self.result["ok"]) != ntasks:
            fail("run failed (exit %s): result %r, error %r\nstderr: %s\n"
                 "log:\n%s" % (rc, self.result, self.error, self.stderr,
                               self.log()[-4000:]))
        if SCHED != "local" and int(self.result["in_job"]) != ntasks:
            fail("only %s of %d tasks ran inside a scheduler job" % (
                self.result["in_job"], ntasks))


def read_blocks(run_dir, swmr=True):
    path = os.path.join(run_dir, "results.h5")
    with h5py.File(path, "r", libver="latest", swmr=swmr) as f:
        b = f["blocks"][()]
        heap = f["heap"][()].tobytes()
        tasks = f["tasks"][()]
    hs = lambda off, n: heap[off:off + n].decode()
    ev = []
    for r in b:
        if int(r["event_off"]) + int(r["event_len"]) > len(heap):
            continue  # not yet written
        ev.append({"t": int(r["t_ns"]), "block": int(r["block"]),
                   "event": hs(int(r["event_off"]), int(r["event_len"])),
                   "job": hs(int(r["job_off"]), int(r["job_len"])),
                   "workers": int(r["workers"])})
    return ev, tasks


def events_of(ev, block):
    return [e["event"] for e in ev if e["block"] == block]


def wait_for(pred, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    fail("timed out waiting for " + what)


def live_blocks(run):
    try:
        ev, _ = read_blocks(run.run_dir)
    except (OSError, KeyError):
        return None
    return ev


def scheduler_jobs_left():
    """Jobs of ours the scheduler still runs or queues."""
    if SCHED == "slurm":
        out = subprocess.run(["squeue", "--noheader", "--format=%i %j %T"],
                             capture_output=True, text=True, env=ENV).stdout
        return [l for l in out.splitlines() if "cparsl." in l]
    if SCHED == "local":
        left = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/environ" % pid, "rb") as f:
                    env = f.read()
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if b"CPARSL_BLOCK_ID=" in env and WORK.encode() in cmd + env:
                left.append(pid)
        return left
    # stand-ins: their job files say whether the process still runs
    out = subprocess.run(["qstat"], capture_output=True, text=True,
                         env=ENV).stdout
    return [l for l in out.splitlines()
            if re.search(r"\b(R|Q|running|queued)\b", l)]


def check_scripts(run):
    secret = open(os.path.join(run.run_dir, "htex.htex.secret")).read().strip()
    scripts = [f for f in os.listdir(run.run_dir) if f.endswith(".sh")]
    if not scripts:
        fail("no block scripts in " + run.run_dir)
    for s in scripts:
        path = os.path.join(run.run_dir, s)
        mode = os.stat(path).st_mode & 0o777
        if mode != 0o700:
            fail("%s has mode %o, not 700" % (s, mode))
        if secret in open(path).read():
            fail("%s holds the run's secret" % s)


def case_tasks_in_blocks():
    n = 60
    run = Run(config("tib", {"init_blocks": 1, "max_blocks": 1}), n, 20, 0)
    rc = run.finish()
    run.expect_ok(rc, n)
    if run.result["blocks"] != "1:%d" % n:
        fail("tasks by block: %s (expected all in block 1)" %
             run.result["blocks"])
    check_scripts(run)
    ev, tasks = read_blocks(run.run_dir, swmr=False)
    e1 = events_of(ev, 1)
    for want in ("requested", "running", "joined"):
        if want not in e1:
            fail("block 1 events %r lack %s" % (e1, want))
    if e1[-1] not in ("completed", "cancelled", "missing"):
        fail("block 1 did not end: %r" % e1)
    tool = os.environ.get("CPARSL_TOOL")
    if tool:  # cparsl inspect reads the same rows
        out = subprocess.run([tool, "inspect",
                              os.path.join(run.run_dir, "results.h5"),
                              "--json"], capture_output=True, text=True)
        got = [(b["block"], b["event"], b["job"])
               for b in json.loads(out.stdout)["blocks"]]
        want = [(e["block"], e["event"], e["job"]) for e in ev]
        if got != want:
            fail("cparsl inspect's blocks %r differ from h5py's %r" % (
                got, want))
    t_req = [e["t"] for e in ev if e["block"] == 1 and
             e["event"] == "requested"][0]
    t_first = min(int(t["t_start"]) for t in tasks if int(t["t_start"]) > 0)
    log("FIGURE %s request_to_first_task_s=%.3f run_s=%.1f" % (
        PROVIDER, (t_first - t_req) / 1e9, run.seconds))
    left = scheduler_jobs_left()
    if left:
        fail("jobs left after finalize: %r" % left)


def case_scale_out_in():
    n = 16
    cfg = config("soi", {"init_blocks": 0, "min_blocks": 0, "max_blocks": 2},
                 workers=1)
    run = Run(cfg, n, 600, 10)
    rc = run.finish()
    run.expect_ok(rc, n)
    per = dict(kv.split(":") for kv in run.result["blocks"].split(","))
    if set(per) != {"1", "2"}:
        fail("tasks by block: %s (expected blocks 1 and 2)" %
             run.result["blocks"])
    ev, _ = read_blocks(run.run_dir, swmr=False)
    t0 = ev[0]["t"]
    for b in (1, 2):
        e = events_of(ev, b)
        if "draining" not in e or e[-1] != "completed" or "cancel" in e:
            fail("block %d was not given back idle: %r" % (b, e))
    if any(e["block"] > 2 for e in ev):
        fail("more than 2 blocks: %r" % ev)
    log("FIGURE %s timeline (s since start: block event workers):" %
        PROVIDER)
    for e in ev:
        log("  %6.2f  %d %-10s %d" % ((e["t"] - t0) / 1e9, e["block"],
                                      e["event"], e["workers"]))
    left = scheduler_jobs_left()
    if left:
        fail("jobs left after finalize: %r" % left)


def cancel_job(job):
    if SCHED == "slurm":
        subprocess.run(["scancel", job], check=True, env=ENV)
    elif SCHED == "local":
        os.killpg(int(job), signal.SIGTERM)
    else:
        subprocess.run(["qdel", job], check=True, env=ENV)


def case_scale_simple():
    """The simple strategy: two blocks under load; once the executor has
    been idle for max_idletime, both go back at once (min_blocks 0)."""
    n = 16
    cfg = config("ss", {"init_blocks": 0, "min_blocks": 0, "max_blocks": 2},
                 workers=1, strategy="simple")
    run = Run(cfg, n, 500, 8)
    rc = run.finish()
    run.expect_ok(rc, n)
    ev, _ = read_blocks(run.run_dir, swmr=False)
    drains = [e["t"] for e in ev if e["event"] == "draining"]
    if len(drains) != 2 or any(events_of(ev, b)[-1] != "completed"
                               for b in (1, 2)):
        fail("simple: both blocks should drain and complete: %r" % ev)
    if drains[1] - drains[0] > 0.6e9:
        fail("simple gives idle blocks back together, not %.2f s apart" %
             ((drains[1] - drains[0]) / 1e9))


def case_connect_timeout():
    """Blocks that run but never connect fail after connect_timeout and
    are cancelled; with every block like that the executor gives up."""
    n = 5
    cfg = config("ct", {"init_blocks": 1, "max_blocks": 1,
                        "connect_timeout": 2, "block_error_threshold": 2,
                        "worker_init": "sleep 600"})
    run = Run(cfg, n, 10, 0, expect="fail")
    rc = run.finish(timeout=90)
    if rc != 0 or "no manager joined" not in (run.error or ""):
        fail("connect_timeout: exit %d, error %r" % (rc, run.error))
    ev, _ = read_blocks(run.run_dir, swmr=False)
    for b in (1, 2):
        e = events_of(ev, b)
        if "cancel" not in e or "joined" in e:
            fail("block %d should be cancelled unjoined: %r" % (b, e))
    left = scheduler_jobs_left()
    if left:
        fail("jobs left after finalize: %r" % left)


def case_cancel_block():
    n = 30
    cfg = config("cb", {"init_blocks": 1, "max_blocks": 1}, threshold=2)
    run = Run(cfg, n, 300, 0)

    def joined():
        ev = live_blocks(run)
        if ev is None:
            return None
        j = [e for e in ev if e["block"] == 1 and e["event"] == "joined"]
        return j and j[0]
    j = wait_for(joined, 60, "block 1 to join")
    time.sleep(1.0)
    log("cancelling block 1 (job %s)" % j["job"])
    cancel_job(j["job"])
    rc = run.finish()
    run.expect_ok(rc, n)
    ev, _ = read_blocks(run.run_dir, swmr=False)
    e1, e2 = events_of(ev, 1), events_of(ev, 2)
    if not (set(e1) & {"cancelled", "failed", "missing"}):
        fail("block 1 events %r: no end seen" % e1)
    if "joined" not in e2:
        fail("no block 2 took over: %r" % e2)
    if "lost" not in run.log() and "lost its managers" not in run.log():
        fail("the log does not say block 1's managers were lost")
    left = scheduler_jobs_left()
    if left:
        fail("jobs left after finalize: %r" % left)


def case_block_failure():
    n = 20
    init = ('if [ "$CPARSL_BLOCK_ID" = 1 ]; then echo "block 1 refuses" >&2;'
            ' exit 3; fi')
    cfg = config("bf", {"init_blocks": 1, "max_blocks": 1,
                        "worker_init": init})
    run = Run(cfg, n, 20, 0)
    rc = run.finish()
    run.expect_ok(rc, n)
    ev, _ = read_blocks(run.run_dir, swmr=False)
    e1, e2 = events_of(ev, 1), events_of(ev, 2)
    if "joined" in e1 or not (set(e1) & {"failed", "missing", "completed"}):
        fail("block 1 should have failed: %r" % e1)
    if "joined" not in e2:
        fail("block 2 should have done the work: %r" % e2)
    if "block 1 refuses" not in run.log():
        fail("the log does not quote block 1's error output")
    # Every block fails: the executor gives up after 2, naming why.
    cfg = config("bf_all", {"init_blocks": 1, "max_blocks": 1,
                            "block_error_threshold": 2,
                            "worker_init": 'echo "no workers here" >&2; '
                                           'exit 3'})
    run = Run(cfg, n, 20, 0, expect="fail")
    rc = run.finish(timeout=90)
    if rc != 0:
        fail("all-failing run: exit %d, result %r, error %r\nlog:\n%s" % (
            rc, run.result, run.error, run.log()[-3000:]))
    for words in ("gave up", "2 blocks in a row failed", "no workers here"):
        if words not in (run.error or ""):
            fail("the tasks' error lacks %r: %r" % (words, run.error))
    log("all-failing run gave up in %.1f s: %s" % (run.seconds, run.error))
    left = scheduler_jobs_left()
    if left:
        fail("jobs left after finalize: %r" % left)


def case_walltime_drain():
    """A block is drained drain_margin before its walltime: its tasks
    finish (none retried), and a second block takes over the rest."""
    n = 24
    cfg = config("wd", {"init_blocks": 1, "max_blocks": 1,
                        "walltime": "00:00:08", "drain_margin": 5})
    run = Run(cfg, n, 400, 0)
    rc = run.finish()
    run.expect_ok(rc, n)
    ev, tasks = read_blocks(run.run_dir, swmr=False)
    e1, e2 = events_of(ev, 1), events_of(ev, 2)
    if "draining" not in e1 or "joined" not in e2:
        fail("block 1 should drain near its walltime and block 2 take "
             "over: %r / %r" % (e1, e2))
    t_run = [e["t"] for e in ev if e["block"] == 1 and e["event"] == "joined"]
    t_drain = [e["t"] for e in ev if e["block"] == 1 and
               e["event"] == "draining"]
    if not t_run or not t_drain or not 2.5e9 < t_drain[0] - t_run[0] < 5e9:
        fail("block 1 drained %s s after it joined, expected about 3" % (
            (t_drain[0] - t_run[0]) / 1e9 if t_run and t_drain else "?"))
    retried = [int(t["id"]) for t in tasks if int(t["tries"]) > 1]
    if retried:
        fail("tasks were retried (killed mid-run?): %r" % retried)


def case_pilot_grows():
    """An MPI pilot (extreme_scale under mpiexec -n 2) that grows by a
    provider's block: tasks run on its MPI worker rank and in the block,
    whose script must not pass the pilot's MPI variables on."""
    n = 40
    p = {"type": SCHED, "walltime": "00:10:00", "init_blocks": 1,
         "max_blocks": 1, "connect_timeout": 60}
    if SCHED == "slurm":
        p["exclusive"] = False
    lines = ["run_dir: %s/pg.runinfo" % WORK,
             "store: {type: hdf5}",
             "executors:",
             "  - type: extreme_scale",
             "    label: pilot",
             "    workers_per_rank: 1",
             "    prefetch: 0",
             "    isolation: none",
             "    heartbeat_period: 0.5",
             "    heartbeat_threshold: 5",
             "    join_providers: [shm]",
             "    strategy_period: 0.5",
             "    provider:"]
    for k, v in p.items():
        lines.append("      %s: %s" % (k, json.dumps(v)))
    cfg = os.path.join(WORK, "pg.yaml")
    with open(cfg, "w") as f:
        f.write("\n".join(lines) + "\n")
    mpiexec = shutil.which("mpiexec")
    run = Run(cfg, n, 100, 0, launcher=(mpiexec, "--allow-run-as-root",
                                        "--oversubscribe", "-n", "2"))
    rc = run.finish()
    if rc != 0 or not run.result or int(run.result["ok"]) != n:
        fail("pilot run failed (exit %s): %r %r\n%s\nlog:\n%s" % (
            rc, run.result, run.error, run.stderr, run.log()[-3000:]))
    per = dict(kv.split(":") for kv in run.result["blocks"].split(","))
    if set(per) != {"0", "1"}:
        fail("tasks should run on the MPI rank (0) and block 1: %s" %
             run.result["blocks"])
    ev, _ = read_blocks(run.run_dir, swmr=False)
    if "joined" not in events_of(ev, 1):
        fail("block 1 never joined the pilot: %r" % events_of(ev, 1))
    left = scheduler_jobs_left()
    if left:
        fail("jobs left after finalize: %r" % left)


def case_cmd_errors():
    sdir = ENV["CPARSL_STANDIN_DIR"]
    n = 10
    # qsub fails: the blocks fail to submit, the executor gives up
    # naming the command and what it printed.
    with open(os.path.join(sdir, "fail.qsub"), "w") as f:
        f.write("qsub: Bad UID for job execution\n")
    cfg = config("qsub_fails", {"init_blocks": 1, "max_blocks": 1,
                                "block_error_threshold": 2})
    run = Run(cfg, n, 10, 0, expect="fail")
    rc = run.finish(timeout=60)
    os.unlink(os.path.join(sdir, "fail.qsub"))
    if rc != 0 or "'qsub' failed" not in (run.error or "") or \
            "Bad UID" not in run.error:
        fail("failing qsub: exit %d, error %r" % (rc, run.error))
    # qstat answers garbage, then hangs: states are unknown (logged, named)
    # but the blocks' managers still join and the work is done.
    for what, content, expect in (
            ("garbage", "<html>Service Unavailable</html>\n",
             "unexpected format"),
            ("hang", "", "did not finish within 1 s")):
        path = os.path.join(sdir, "%s.qstat" % what)
        with open(path, "w") as f:
            f.write(content)
        cfg = config("qstat_" + what, {"init_blocks": 1, "max_blocks": 1,
                                       "cmd_timeout": 1})
        run = Run(cfg, n, 10, 0)
        rc = run.finish()
        os.unlink(path)
        run.expect_ok(rc, n)
        logtext = run.log()
        if expect not in logtext or "qstat" not in logtext:
            fail("qstat %s: the log does not name it:\n%s" % (
                what, logtext[-2000:]))


def main():
    global ENV
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    ENV = environment()
    {"tasks_in_blocks": case_tasks_in_blocks,
     "scale_out_in": case_scale_out_in,
     "cancel_block": case_cancel_block,
     "block_failure": case_block_failure,
     "walltime_drain": case_walltime_drain,
     "pilot_grows": case_pilot_grows,
     "scale_simple": case_scale_simple,
     "connect_timeout": case_connect_timeout,
     "cmd_errors": case_cmd_errors}[CASE]()
    log("%s %s: ok" % (PROVIDER, CASE))


if __name__ == "__main__":
    main()
