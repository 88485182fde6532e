"""check_checkpoint.py - checkpoints and resume, checked from the run files.

  check_checkpoint.py CASE DRIVER DIR

DRIVER is tests/test_checkpoint (its header says what it runs); DIR a
scratch directory.  Every count comes from the HDF5 files, read with h5py
in SWMR-read mode as docs/run-file.md describes, and from the number of
bodies the driver says it ran.  Cases:

  kill_resume   task_exit: SIGKILL midway, rerun with the file; only the
                unfinished calls run again and every answer is the same
  periodic      periodic: entries reach the disk on the period alone
  manual        manual: only what cparsl_checkpoint() wrote is there
  dfk_exit      dfk_exit: nothing before the end, everything after it
  errors        failures are never checkpointed; a rerun runs them again
  versions      another app version reuses nothing; the same one all;
                the default version is the program's GNU build-id
  latest        checkpoint_files: latest chains runs through run_dir
  bad_input     files that are missing, not HDF5, not ours, or newer,
                and configs that cannot checkpoint, give clear errors
"""
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time

import h5py
import numpy as np

N = 200


def fail(msg):
    sys.stderr.write("check_checkpoint: FAIL: %s\n" % msg)
    sys.exit(1)


def decode_int(b):
    if len(b) != 9 or b[0] != 2:
        fail("result bytes %r are not an int" % bytes(b))
    return struct.unpack_from("<q", b, 1)[0]


class RunFile:
    """The parts of a run file these tests look at."""

    def __init__(self, path):
        with h5py.File(path, "r", libver="latest", swmr=True) as f:
            self.tasks = f["tasks"][()]
            self.ckpt = f["checkpoint"][()]
            self.heap = f["heap"][()].tobytes()
            self.blocks = f["blocks"][()]
            self.workers = f["workers"][()]
            enum = h5py.check_enum_dtype(f["tasks"].dtype["state"])
        names = {v: k for k, v in enum.items()}
        self.state = {int(r["id"]): names[int(r["state"])] for r in self.tasks}
        self.result = {}
        for r in self.tasks:
            if r["result_len"]:
                off, n = int(r["result_off"]), int(r["result_len"])
                self.result[int(r["id"])] = decode_int(self.heap[off:off + n])

    def ids(self, state):
        return {i for i, s in self.state.items() if s == state}

    def ckpt_ids(self):
        return [int(r["task_id"]) for r in self.ckpt]

    def ckpt_values(self):
        out = {}
        for r in self.ckpt:
            off, n = int(r["result_off"]), int(r["result_len"])
            out[int(r["task_id"])] = decode_int(self.heap[off:off + n])
        return out


def run(args, expect=0, timeout=120):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, text=True)
    if p.returncode != expect:
        fail("%s exited %d, expected %d:\n%s%s" % (
            " ".join(args), p.returncode, expect, p.stdout, p.stderr))
    return p


def executed(p):
    m = re.search(r"^executed (\d+)$", p.stdout, re.M)
    if not m:
        fail("no 'executed' line in:\n" + p.stdout)
    return int(m.group(1))


def run_and_kill(args, ready, timeout=120):
    """Start the driver, wait for READY, SIGKILL it."""
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    end = time.time() + timeout
    while not os.path.exists(ready):
        if p.poll() is not None:
            out, err = p.communicate()
            fail("the driver exited (%d) before %s:\n%s%s" % (
                p.returncode, ready, out, err))
        if time.time() > end:
            p.kill()
            fail("no %s after %d s" % (ready, timeout))
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.communicate()


def expect_answers(rf, what, n=N):
    """Every call i (task i + 1) finished with i * i + 7."""
    for i in range(n):
        tid = i + 1
        if rf.state.get(tid) not in ("exec_done", "memo_done"):
            fail("%s: task %d is %s" % (what, tid, rf.state.get(tid)))
        if rf.result.get(tid) != i * i + 7:
            fail("%s: task %d's result %r, want %d" % (
                what, tid, rf.result.get(tid), i * i + 7))


def case_kill_resume(drv, d):
    old, new, ready = d + "/old.h5", d + "/new.h5", d + "/ready"
    run_and_kill([drv, old, "task_exit", str(N), "--sleep-ms", "20",
                  "--kill-after", str(N // 2), ready], ready)
    rf_old = RunFile(old)
    saved = rf_old.ckpt_ids()
    # task_exit: every call answered before READY is on disk, with no
    # flush but the checkpoint's own (the flush interval is 30 s).
    if len(saved) < N // 2 or len(saved) >= N:
        fail("the killed run checkpointed %d calls, expected %d..%d" % (
            len(saved), N // 2, N - 1))
    if len(set(saved)) != len(saved):
        fail("a call was checkpointed twice: %r" % saved)
    for tid, v in rf_old.ckpt_values().items():
        if v != (tid - 1) ** 2 + 7:
            fail("checkpoint of task %d holds %d" % (tid, v))
    p = run([drv, new, "task_exit", str(N), "--resume", old])
    rf = RunFile(new)
    expect_answers(rf, "resumed run")
    memo, ran = rf.ids("memo_done"), rf.ids("exec_done")
    if memo != set(saved):
        fail("resumed run: memo_done %d tasks, checkpointed %d; differ: %r" % (
            len(memo), len(saved), sorted(memo ^ set(saved))[:10]))
    if ran != set(range(1, N + 1)) - set(saved):
        fail("resumed run: exec_done %d tasks, expected the %d others" % (
            len(ran), N - len(saved)))
    if executed(p) != N - len(saved):
        fail("resumed run ran %d bodies, expected %d" % (
            executed(p), N - len(saved)))
    for r in rf.tasks:
        if rf.state[int(r["id"])] == "memo_done" and r["tries"] != 0:
            fail("memo_done task %d launched" % r["id"])
    # The resumed run's file holds every call again: a third run from it
    # alone runs nothing.
    p = run([drv, d + "/third.h5", "task_exit", str(N), "--resume", new])
    if executed(p) != 0:
        fail("a run resumed from the complete file ran %d bodies" %
             executed(p))
    print("kill_resume: %d checkpointed before the kill, %d ran again" % (
        len(saved), N - len(saved)))


def case_periodic(drv, d):
    f, ready = d + "/periodic.h5", d + "/ready"
    run_and_kill([drv, f, "periodic", str(N), "--period", "00:00:01",
                  "--kill-after", str(N), ready, "--wait", "1.8"], ready)
    got = len(RunFile(f).ckpt_ids())
    if got != N:
        fail("periodic: %d entries on disk after 1.8 s, expected %d" % (got, N))
    # An idle DFK still checkpoints on time; then a clean run ends with
    # everything.
    p = run([drv, d + "/periodic2.h5", "periodic", str(N), "--period",
             "00:00:01"])
    if len(RunFile(d + "/periodic2.h5").ckpt_ids()) != N:
        fail("periodic: a finished run did not checkpoint everything")
    del p


def case_manual(drv, d):
    f, ready = d + "/manual.h5", d + "/ready"
    k = 60
    run_and_kill([drv, f, "manual", str(N), "--manual", str(k),
                  "--kill-after", str(N), ready], ready)
    ids = sorted(RunFile(f).ckpt_ids())
    if ids != list(range(1, k + 1)):
        fail("manual: checkpointed %d entries (%r...), expected tasks 1..%d"
             % (len(ids), ids[:5], k))
    run([drv, d + "/manual2.h5", "manual", str(N), "--manual", str(k)])
    if len(RunFile(d + "/manual2.h5").ckpt_ids()) != N:
        fail("manual: finalize did not write the rest")


def case_dfk_exit(drv, d):
    f, ready = d + "/exit.h5", d + "/ready"
    run_and_kill([drv, f, "dfk_exit", str(N), "--kill-after", str(N), ready,
                  "--wait", "0.5"], ready)
    got = len(RunFile(f).ckpt_ids())
    if got != 0:
        fail("dfk_exit: %d entries before the end" % got)
    run([drv, d + "/exit2.h5", "dfk_exit", str(N)])
    rf = RunFile(d + "/exit2.h5")
    if sorted(rf.ckpt_ids()) != list(range(1, N + 1)):
        fail("dfk_exit: %d entries after the end" % len(rf.ckpt_ids()))


def case_errors(drv, d):
    a, b = d + "/errs.h5", d + "/errs2.h5"
    p = run([drv, a, "task_exit", str(N), "--fail-odd"])
    if executed(p) != N:
        fail("errors: ran %d, expected %d" % (executed(p), N))
    ids = sorted(RunFile(a).ckpt_ids())
    if ids != list(range(1, N + 1, 2)):  # even arguments: odd task ids
        fail("errors: checkpointed %r..., expected only the successes" %
             ids[:6])
    p = run([drv, b, "task_exit", str(N), "--resume", a])
    if executed(p) != N // 2:
        fail("errors: the rerun ran %d bodies, expected the %d failed ones"
             % (executed(p), N // 2))
    expect_answers(RunFile(b), "errors rerun")


def case_versions(drv, d):
    a = d + "/v1.h5"
    run([drv, a, "task_exit", str(N), "--version", "one"])
    p = run([drv, d + "/v2.h5", "task_exit", str(N), "--version", "two",
             "--resume", a])
    if executed(p) != N:
        fail("versions: another version reused %d results" % (N - executed(p)))
    p = run([drv, d + "/v3.h5", "task_exit", str(N), "--version", "one",
             "--resume", a])
    if executed(p) != 0:
        fail("versions: the same version ran %d bodies" % executed(p))
    # The default version: the driver's GNU build-id, as readelf sees it.
    base = d + "/bid.h5"
    run([drv, base, "task_exit", "3"])
    notes = subprocess.run(["readelf", "-n", drv], stdout=subprocess.PIPE,
                           text=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", notes)
    if not m:
        fail("readelf finds no build-id in %s" % drv)
    log = open(base + ".runinfo/000/cparsl.log").read()
    if "version build:%s" % m.group(1) not in log:
        fail("versions: the log does not key ck_square by build-id %s:\n%s"
             % (m.group(1), log))


def case_latest(drv, d):
    rd = d + "/runs"
    p = run([drv, "-", "task_exit", str(N), "--run-dir", rd, "--fail-odd"])
    p = run([drv, "-", "task_exit", str(N), "--run-dir", rd, "--resume",
             "latest"])
    if executed(p) != N // 2:
        fail("latest: second run ran %d, expected %d" % (executed(p), N // 2))
    rf = RunFile(rd + "/001/results.h5")
    if len(rf.ckpt_ids()) != N:
        fail("latest: the second run re-recorded %d entries, expected %d"
             % (len(rf.ckpt_ids()), N))
    p = run([drv, "-", "task_exit", str(N), "--run-dir", rd, "--resume",
             "latest"])
    if executed(p) != 0:
        fail("latest: third run ran %d bodies" % executed(p))
    # 'all' reads every earlier run; a first run has none to read.
    p = run([drv, "-", "task_exit", "4", "--run-dir", d + "/fresh",
             "--resume", "all"])
    if executed(p) != 4:
        fail("all: a first run ran %d of 4" % executed(p))
    blocks = rf.blocks
    if len(blocks) != 1 or blocks[0]["workers"] != 2:
        fail("blocks: %r" % (blocks,))
    ws = sorted(int(w["worker"]) for w in rf.workers)
    if not ws or len(ws) > 2 or any(w < 0 for w in ws):
        fail("workers: %r" % (rf.workers,))


def case_bad_input(drv, d):
    def refused(args, *words):
        p = run([drv, d + "/x.h5", "task_exit", "3"] + args, expect=3)
        for w in words:
            if w not in p.stderr:
                fail("bad input %r: %r not in the error:\n%s" % (
                    args, w, p.stderr))

    missing = d + "/no-such-file.h5"
    refused(["--resume", missing], "no-such-file.h5", "No such file")
    junk = d + "/junk.h5"
    with open(junk, "wb") as f:
        f.write(b"this is not HDF5\n" * 100)
    refused(["--resume", junk], "junk.h5", "cannot open it as an HDF5 file")
    # A real run file cut in half.
    good = d + "/good.h5"
    run([drv, good, "task_exit", "20"])
    data = open(good, "rb").read()
    cut = d + "/cut.h5"
    with open(cut, "wb") as f:
        f.write(data[:len(data) // 2])
    refused(["--resume", cut], "cut.h5")
    other = d + "/other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.arange(10)
    refused(["--resume", other], "other.h5", "not a cparsl run file")
    newer = d + "/newer.h5"
    shutil.copy(good, newer)
    with h5py.File(newer, "r+") as f:
        f["meta"].attrs.modify("layout_version", np.int32(99))
    refused(["--resume", newer], "newer.h5", "layout version 99",
            "newer cparsl")
    refused(["--store", "null"], "checkpoint_mode", "keeps no checkpoints")
    p = run([drv, d + "/y.h5", "periodic", "3"], expect=3)
    if "checkpoint_period" not in p.stderr:
        fail("periodic without a period: %s" % p.stderr)
    p = run([drv, d + "/y.h5", "task_exit", "3", "--resume-raw", "newest"],
            expect=3)
    if "'latest' or 'all'" not in p.stderr:
        fail("checkpoint_files: newest: %s" % p.stderr)
    p = run([drv, d + "/y.h5", "task_exit", "3", "--resume-raw", "{a: 1}"],
            expect=3)
    if "expected a list of files" not in p.stderr:
        fail("checkpoint_files: {a: 1}: %s" % p.stderr)


CASES = {
    "kill_resume": case_kill_resume,
    "periodic": case_periodic,
    "manual": case_manual,
    "dfk_exit": case_dfk_exit,
    "errors": case_errors,
    "versions": case_versions,
    "latest": case_latest,
    "bad_input": case_bad_input,
}


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in CASES:
        sys.stderr.write(__doc__)
        return 2
    case, drv, d = sys.argv[1:]
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    CASES[case](drv, d)
    print("check_checkpoint %s: ok" % case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
