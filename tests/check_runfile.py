"""check_runfile.py - read cparsl's HDF5 run file as an outside reader
would, with h5py in SWMR-read mode and with h5dump, using nothing but
docs/run-file.md and docs/encoding.md.

  check_runfile.py final DRIVER DIR   a finished run, then h5dump
  check_runfile.py live DRIVER DIR    read while the run goes on
  check_runfile.py kill DRIVER DIR    read after SIGKILL of the run

DRIVER is tests/test_runfile (its cases say what it submits); DIR a scratch
directory.  Exits 77 (CTest's SKIP_RETURN_CODE) when h5py is missing:
scripts/deps installs python3-h5py.
"""
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

try:
    import h5py
except ImportError:
    sys.stderr.write("check_runfile: skipped: no h5py "
                     "(apt-get install python3-h5py)\n")
    sys.exit(77)

FINAL = ("exec_done", "memo_done", "failed", "dep_fail")


def fail(msg):
    sys.stderr.write("check_runfile: FAIL: %s\n" % msg)
    sys.exit(1)


# ---- the canonical value encoding (docs/encoding.md) ---------------------

def decode(buf, pos=0):
    """One value from buf at pos: (value, next pos)."""
    tag = buf[pos]
    pos += 1
    if tag == 0:
        return None, pos
    if tag == 1:
        return buf[pos] == 1, pos + 1
    if tag == 2:
        return struct.unpack_from("<q", buf, pos)[0], pos + 8
    if tag == 3:
        return struct.unpack_from("<d", buf, pos)[0], pos + 8
    if tag in (4, 5, 8):
        (n,) = struct.unpack_from("<Q", buf, pos)
        pos += 8
        if pos + n > len(buf):
            raise ValueError("string runs past its bytes")
        raw = bytes(buf[pos:pos + n])
        return (raw if tag == 5 else raw.decode()), pos + n
    if tag in (6, 7):
        (n,) = struct.unpack_from("<Q", buf, pos)
        pos += 8
        fmt = "<%d%s" % (n, "q" if tag == 6 else "d")
        return list(struct.unpack_from(fmt, buf, pos)), pos + 8 * n
    if tag == 9:
        (n,) = struct.unpack_from("<Q", buf, pos)
        pos += 8
        out = []
        for _ in range(n):
            v, pos = decode(buf, pos)
            out.append(v)
        return out, pos
    raise ValueError("unknown tag %d" % tag)


# ---- reading the file ---------------------------------------------------

class Run:
    """A snapshot of a run file: rows as dicts with their strings and
    decoded result; a row whose bytes lie past the visible heap is left
    out (not yet written)."""

    def __init__(self, path):
        with h5py.File(path, "r", libver="latest", swmr=True) as f:
            meta = f["meta"].attrs
            if int(meta["layout_version"]) != 1:
                fail("layout_version %r" % meta["layout_version"])
            self.meta = {k: meta[k] for k in meta}
            tasks = f["tasks"]
            self.states = {v: k for k, v in
                           h5py.check_enum_dtype(
                               tasks.dtype["state"]).items()}
            rows = tasks[()]
            heap = f["heap"][()].tobytes()
            self.deps = [tuple(int(x) for x in e) for e in f["deps"][()]]
        self.rows, self.unwritten = [], 0
        for r in rows:
            d = {name: r[name] for name in rows.dtype.names}
            d["state"] = self.states[int(r["state"])]
            ok = True
            for col in ("app", "executor", "host", "error", "result"):
                off, n = int(r[col + "_off"]), int(r[col + "_len"])
                if off + n > len(heap):
                    ok = False
                d[col] = heap[off:off + n]
            if not ok:
                self.unwritten += 1
                continue
            for col in ("app", "executor", "host", "error"):
                d[col] = d[col].decode()
            d["value"] = decode(d["result"])[0] if d["result"] else None
            self.rows.append(d)
        self.by_id = {int(r["id"]): r for r in self.rows}


def check_squares(run, n, what):
    """The first n rf_square tasks of a run (ids 1..n) are all there."""
    for i in range(n):
        r = run.by_id.get(i + 1)
        if r is None:
            fail("%s: task %d has no row (%d rows)" % (what, i + 1,
                                                       len(run.rows)))
        if r["app"] != "rf_square" or r["state"] != "exec_done":
            fail("%s: task %d is %s %s" % (what, i + 1, r["app"],
                                           r["state"]))
        if r["value"] != i * i:
            fail("%s: task %d's result is %r, expected %d" % (
                what, i + 1, r["value"], i * i))
        if r["tries"] != 1 or r["result_type"] != 2:
            fail("%s: task %d: tries %d, result_type %d" % (
                what, i + 1, r["tries"], r["result_type"]))
        ts = [r["t_pending"], r["t_launched"],
              r["t_start"], r["t_end"], r["t_final"]]
        if not all(ts) or ts != sorted(ts):
            fail("%s: task %d's timestamps %r" % (what, i + 1, ts))
        if r["executor"] != "threadpool":
            fail("%s: task %d's executor %r" % (what, i + 1, r["executor"]))


def run_driver(args, **kw):
    return subprocess.Popen(args, **kw)


def wait_for(path, proc, timeout=60):
    end = time.time() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None:
            fail("the driver exited (%d) before %s" % (proc.returncode,
                                                        path))
        if time.time() > end:
            proc.kill()
            fail("no %s after %d s" % (path, timeout))
        time.sleep(0.02)


def h5dump_count(path):
    p = subprocess.run(["h5dump", "-H", "-d", "/tasks", path],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    if p.returncode != 0:
        return None, p.stderr + p.stdout
    for line in p.stdout.splitlines():
        if "DATASPACE" in line and "SIMPLE" in line:
            return int(line.split("(")[1].split(")")[0]), p.stdout
    return None, p.stdout


# ---- the cases -------------------------------------------------------------

def case_final(driver, d):
    path = os.path.join(d, "results.h5")
    p = subprocess.run([driver, "write", path])
    if p.returncode != 0:
        fail("the driver failed (%d)" % p.returncode)
    run = Run(path)
    if len(run.rows) != 59 or run.unwritten:
        fail("%d rows (%d unwritten), expected 59" % (len(run.rows),
                                                      run.unwritten))
    check_squares(run, 50, "final")
    by_app = {}
    for r in run.rows:
        by_app.setdefault(r["app"], []).append(r)
    counts = {}
    for r in run.rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    if counts != {"exec_done": 57, "failed": 1, "dep_fail": 1}:
        fail("states %r" % counts)
    want = {"rf_text": "hello run file", "rf_half": 2.5, "rf_nothing": None,
            "rf_big": "x" * 300000}
    for app, val in want.items():
        r = by_app[app][0]
        if r["value"] != val or r["state"] != "exec_done":
            fail("%s: %s %r, expected %r" % (app, r["state"], r["value"],
                                             val))
    if by_app["rf_nothing"][0]["result_type"] != 0:
        fail("a nil result's type is %d" % by_app["rf_nothing"][0][
            "result_type"])
    bad = by_app["rf_fail"][0]
    if bad["state"] != "failed" or "boom: on purpose" not in bad["error"] \
            or bad["error_code"] >= 0 or bad["result_len"] != 0:
        fail("the failed task: %s %r %d" % (bad["state"], bad["error"],
                                            bad["error_code"]))
    adds = sorted(by_app["rf_add"], key=lambda r: r["id"])
    total, depfail = adds
    if total["value"] != 25 or depfail["state"] != "dep_fail" \
            or depfail["tries"] != 0 or depfail["t_launched"] != 0:
        fail("rf_add rows: %r %r" % (total["value"], depfail["state"]))
    parents = sorted(int(r["id"]) for r in by_app["rf_square"]
                     if r["id"] > 50)
    want_deps = sorted([(int(total["id"]), parents[0]),
                        (int(total["id"]), parents[1]),
                        (int(depfail["id"]), int(bad["id"]))])
    if sorted(run.deps) != want_deps:
        fail("deps %r, expected %r" % (sorted(run.deps), want_deps))
    if b"type: hdf5" not in run.meta["config"]:
        fail("meta config %r" % run.meta["config"])
    # h5dump (no SWMR-read mode in 1.10) opens a cleanly closed file.
    n, out = h5dump_count(path)
    if n != 59:
        fail("h5dump -H -d /tasks says %r:\n%s" % (n, out))


def case_live(driver, d):
    path = os.path.join(d, "results.h5")
    ready, go = os.path.join(d, "ready"), os.path.join(d, "go")
    p = run_driver([driver, "live", path, ready, go])
    try:
        wait_for(ready, p)
        # The driver is alive and holds the file open for SWMR writing.
        run = Run(path)
        if len(run.rows) != 20 or run.unwritten:
            fail("during the run: %d rows (%d unwritten), expected 20" % (
                len(run.rows), run.unwritten))
        check_squares(run, 20, "during the run")
        if p.poll() is not None:
            fail("the driver was not running while we read")
        open(go, "w").close()
        if p.wait(60) != 0:
            fail("the driver failed (%d)" % p.returncode)
    finally:
        if p.poll() is None:
            p.kill()
    run = Run(path)
    if len(run.rows) != 40:
        fail("after the run: %d rows, expected 40" % len(run.rows))
    check_squares(run, 40, "after the run")


def case_kill(driver, d):
    path = os.path.join(d, "results.h5")
    ready = os.path.join(d, "ready")
    p = run_driver([driver, "kill", path, ready])
    try:
        wait_for(ready, p)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    if p.returncode != -signal.SIGKILL:
        fail("the driver ended with %d, not SIGKILL" % p.returncode)
    run = Run(path)
    # 30 squares finished before the flush; the sleeper never finished.
    if len(run.rows) != 30 or run.unwritten:
        fail("after SIGKILL: %d rows (%d unwritten), expected 30" % (
            len(run.rows), run.unwritten))
    check_squares(run, 30, "after SIGKILL")
    # h5dump 1.10 cannot open it until h5clear -s resets the writer's
    # mark (docs/run-file.md says so); then it can.
    copy = os.path.join(d, "cleared.h5")
    shutil.copyfile(path, copy)
    if shutil.which("h5clear"):
        c = subprocess.run(["h5clear", "-s", copy], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True)
        if c.returncode != 0:
            fail("h5clear -s: %s" % c.stdout)
        n, out = h5dump_count(copy)
        if n != 30:
            fail("h5dump after h5clear -s says %r:\n%s" % (n, out))


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("final", "live", "kill"):
        fail("usage: check_runfile.py final|live|kill DRIVER DIR")
    case, driver, d = sys.argv[1:]
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    globals()["case_" + case](driver, d)
    shutil.rmtree(d, ignore_errors=True)
    print("check_runfile %s: ok" % case)


main()
