"""check_tools.py - the cparsl command (tools/cparsl.c) on real run files.

  check_tools.py CASE CPARSL RUNFILE_DRIVER BENCH DIR

CPARSL is build/tools/cparsl, RUNFILE_DRIVER tests/test_runfile (its cases
say what it writes), BENCH cparsl-bench, DIR a scratch directory.  Cases:

  inspect   inspect --json of a finished run: counts, states, errors
  live      inspect of a run that is still going, and of a killed one
  bad       missing, not HDF5, truncated, not ours, newer: exit 1, a
            message naming the file and the problem; bad usage: exit 2
  report    report of a finished run and of a 20,000-task run: self-
            contained, and rendered by Debian's chromium (headless) into
            a screenshot that is not blank, with no console errors
"""
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib

import h5py
import numpy as np


def fail(msg):
    sys.stderr.write("check_tools: FAIL: %s\n" % msg)
    sys.exit(1)


def run(args, expect=0, **kw):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=120, **kw)
    if p.returncode != expect:
        fail("%s exited %d, expected %d:\n%s%s" % (
            " ".join(args), p.returncode, expect, p.stdout, p.stderr))
    return p


def inspect_json(tool, path):
    return json.loads(run([tool, "inspect", path, "--json"]).stdout)


def wait_for(path, proc, timeout=60):
    end = time.time() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None:
            fail("the driver exited before %s" % path)
        if time.time() > end:
            proc.kill()
            fail("no %s" % path)
        time.sleep(0.02)


def case_inspect(tool, drv, bench, d):
    f = d + "/run.h5"
    run([drv, "write", f])
    j = inspect_json(tool, f)
    if j["tasks"] != 59 or j["live"]:
        fail("tasks %r live %r" % (j["tasks"], j["live"]))
    want = {"exec_done": 57, "failed": 1, "dep_fail": 1}
    for s, n in j["states"].items():
        if n != want.get(s, 0):
            fail("state %s: %d, expected %d" % (s, n, want.get(s, 0)))
    if "pending" not in j["states"] or "memo_done" not in j["states"]:
        fail("every state name is a key: %r" % j["states"])
    errs = {e["app"]: e["error"] for e in j["failed"]}
    if errs.get("rf_fail") != "boom: on purpose" or \
            "rf_fail" not in errs.get("rf_add", ""):
        fail("failed tasks: %r" % j["failed"])
    if j["apps"]["rf_square"]["count"] != 52:
        fail("apps: %r" % j["apps"])
    if sum(j["throughput"]["finished"]) != 59:
        fail("throughput buckets: %r" % j["throughput"])
    text = run([tool, "inspect", f, "--failed"]).stdout
    if "boom: on purpose" not in text or "exec_done" not in text:
        fail("text output:\n" + text)


def case_live(tool, drv, bench, d):
    f, ready, go = d + "/live.h5", d + "/ready", d + "/go"
    p = subprocess.Popen([drv, "live", f, ready, go])
    wait_for(ready, p)
    j = inspect_json(tool, f)
    open(go, "w").close()
    p.wait(60)
    if not j["live"] or j["tasks"] < 20:
        fail("during the run: live %r, %d tasks" % (j["live"], j["tasks"]))
    f, ready = d + "/kill.h5", d + "/ready2"
    p = subprocess.Popen([drv, "kill", f, ready])
    wait_for(ready, p)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    j = inspect_json(tool, f)
    if not j["live"] or j["tasks"] < 30:
        fail("after SIGKILL: live %r, %d tasks" % (j["live"], j["tasks"]))


def case_bad(tool, drv, bench, d):
    def refused(path, *words):
        p = run([tool, "inspect", path], expect=1)
        for w in words:
            if w not in p.stderr:
                fail("%s: %r not in %r" % (path, w, p.stderr))
        if p.stderr.count("\n") != 1:
            fail("not one line: %r" % p.stderr)

    refused(d + "/missing.h5", "missing.h5", "No such file")
    junk = d + "/junk.h5"
    open(junk, "wb").write(b"not an HDF5 file\n" * 200)
    refused(junk, "junk.h5", "not an HDF5 file")
    good = d + "/good.h5"
    run([drv, "write", good])
    data = open(good, "rb").read()
    cut = d + "/cut.h5"
    open(cut, "wb").write(data[:len(data) // 2])
    p = run([tool, "inspect", cut], expect=1)
    if "cut.h5" not in p.stderr:
        fail("truncated: %r" % p.stderr)
    other = d + "/other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    refused(other, "other.h5", "not a cparsl run file")
    newer = d + "/newer.h5"
    shutil.copy(good, newer)
    with h5py.File(newer, "r+") as f:
        f["meta"].attrs.modify("layout_version", np.int32(7))
    refused(newer, "newer.h5", "newer cparsl", "layout version 7")
    run([tool], expect=2)
    run([tool, "inspect"], expect=2)
    run([tool, "frobnicate", good], expect=2)
    run([tool, "report", good], expect=2)


def png_nonwhite(path):
    """Count the non-white bytes of a PNG's decoded scanlines."""
    raw = open(path, "rb").read()
    if raw[:8] != b"\x89PNG\r\n\x1a\n":
        fail("%s is not a PNG" % path)
    pos, idat = 8, b""
    while pos < len(raw):
        (n,) = struct.unpack(">I", raw[pos:pos + 4])
        kind = raw[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += raw[pos + 8:pos + 8 + n]
        pos += 12 + n
    data = zlib.decompress(idat)
    return sum(1 for b in data[::7] if b not in (0xff, 0, 1, 2, 3, 4))


def render(html, d, tag):
    chromium = shutil.which("chromium")
    if not chromium:
        fail("chromium is not installed: run scripts/deps")
    shot = "%s/%s.png" % (d, tag)
    args = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--user-data-dir=%s/chrome-%s" % (d, tag),
            "--enable-logging=stderr", "--v=0", "--window-size=1200,2400"]
    p = subprocess.run(args + ["--screenshot=" + shot, "file://" + html],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=90)
    if p.returncode != 0 or not os.path.exists(shot):
        fail("chromium failed (%d):\n%s" % (p.returncode, p.stderr[-3000:]))
    bad = [l for l in p.stderr.splitlines()
           if "CONSOLE" in l or "Uncaught" in l]
    if bad:
        fail("console errors rendering %s:\n%s" % (html, "\n".join(bad)))
    if png_nonwhite(shot) < 1000:
        fail("the screenshot of %s is blank" % html)
    dom = subprocess.run(args + ["--dump-dom", "file://" + html],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, timeout=90).stdout
    if dom.count("<svg") < 3 or dom.count("<rect") < 10:
        fail("the rendered page has %d svg and %d rect elements" % (
            dom.count("<svg"), dom.count("<rect")))


def self_contained(html):
    text = open(html).read()
    for bad in ("<script", "<link", "src=", "href=", "@import", "url("):
        if bad in text:
            fail("%s is not self-contained: it has %r" % (html, bad))
    if "<svg" not in text or "</html>" not in text:
        fail("%s is incomplete" % html)


def case_report(tool, drv, bench, d):
    f = d + "/run.h5"
    run([drv, "write", f])
    html = d + "/small.html"
    run([tool, "report", f, "-o", html])
    self_contained(html)
    text = open(html).read()
    if "boom: on purpose" not in text or "rf_square" not in text:
        fail("the report lacks the failure or the apps")
    render(html, d, "small")
    # A bigger run: 20,000 tasks from the bench.
    big = d + "/bench"
    os.makedirs(big)
    run([bench, "throughput", "--tasks", "20000", "--repeat", "1",
         "--warmup", "0", "--store", "hdf5"], cwd=big)
    files = [os.path.join(r, n) for r, _, ns in os.walk(big) for n in ns
             if n == "results.h5"]
    if len(files) != 1:
        fail("the bench wrote %r" % files)
    j = inspect_json(tool, files[0])
    if j["tasks"] < 20000:
        fail("bench run: %d tasks" % j["tasks"])
    html = d + "/big.html"
    run([tool, "report", files[0], "-o", html])
    self_contained(html)
    if os.path.getsize(html) > 8 << 20:
        fail("the report of 20,000 tasks is %d bytes" % os.path.getsize(html))
    render(html, d, "big")


CASES = {"inspect": case_inspect, "live": case_live, "bad": case_bad,
         "report": case_report}


def main():
    if len(sys.argv) != 6 or sys.argv[1] not in CASES:
        sys.stderr.write(__doc__)
        return 2
    case, tool, drv, bench, d = sys.argv[1:]
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    CASES[case](tool, drv, bench, d)
    print("check_tools %s: ok" % case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
