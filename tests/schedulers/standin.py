#!/usr/bin/env python3
"""Stand-ins for PBS Pro / Torque and Cobalt's qsub, qstat and qdel.

Neither scheduler can be installed on Debian 12, so the providers are
tested against these.  They check what they are given against the
schedulers' documented syntax, run each job as a local process (so the
job really runs and its managers really join), and answer in the
documented output formats.

The directory a command is called through says which scheduler it is
(pbs/ or cobalt/, each holding qsub, qstat and qdel as links to this
file); CPARSL_STANDIN_DIALECT=torque turns pbs/ into Torque.

Sources (man pages; see README.md for what is and is not modelled):
  PBS Pro:  openpbs/openpbs doc/man1/qsub.1B (directives, -l select=
            [N:]chunk[+...], place=[arrangement][:sharing][:grouping],
            STANDARD OUTPUT "sequence_number.servername", EXIT STATUS),
            doc/man1/qstat.1B and src/cmds/qstat.c (default table header,
            -f "Job Id:" then "attr = value", -x for finished jobs),
            doc/man1/qdel.1B.
  Torque:   qsub(1) -l nodes=N[:ppn=P], -n node-exclusive; qstat(1) state
            C for completed jobs (as Debian's slurm-wlm-torque shows).
  Cobalt:   ido/cobalt man/POSIX/qsub.1 ("The only thing printed to
            STDOUT is the jobid"; -n, -t minutes or HH:MM:SS, -A, -q, -O,
            --mode script, --attrs, --env), man/POSIX/qstat.1 (--header,
            fields joined by ':'), src/lib/Util.py printTabular (columns
            joined by two spaces, a line of '=' under the header).

State lives in $CPARSL_STANDIN_DIR (one JSON file per job); every call
is appended to calls.log there.  Fault injection: fail.<cmd> (print it
to stderr, exit 1), garbage.<cmd> (print it to stdout, exit 0),
hang.<cmd> (sleep an hour).
"""
import fcntl
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time

SCHED = os.path.basename(os.path.dirname(os.path.abspath(sys.argv[0])))
CMD = os.path.basename(sys.argv[0])
TORQUE = SCHED == "pbs" and os.environ.get("CPARSL_STANDIN_DIALECT") == \
    "torque"
SERVER = os.environ.get("CPARSL_STANDIN_SERVER", "standin")
HOST = socket.gethostname()
USER = "root" if os.geteuid() == 0 else os.environ.get("USER", "user")


def die(msg, status=1):
    sys.stderr.write(msg.rstrip("\n") + "\n")
    sys.exit(status)


STATE = os.environ.get("CPARSL_STANDIN_DIR")
if not STATE:
    die("%s: CPARSL_STANDIN_DIR is not set" % CMD, 2)
os.makedirs(STATE, exist_ok=True)
with open(os.path.join(STATE, "calls.log"), "a") as _f:
    _f.write(json.dumps([SCHED, CMD] + sys.argv[1:]) + "\n")
for _kind in ("fail", "garbage", "hang"):
    _p = os.path.join(STATE, "%s.%s" % (_kind, CMD))
    if os.path.exists(_p):
        _text = open(_p).read()
        if _kind == "fail":
            die(_text, 1)
        if _kind == "garbage":
            sys.stdout.write(_text)
            sys.exit(0)
        time.sleep(3600)


# ---- the job store ---------------------------------------------------------

class Lock:
    def __enter__(self):
        self.f = open(os.path.join(STATE, "lock"), "w")
        fcntl.flock(self.f, fcntl.LOCK_EX)

    def __exit__(self, *a):
        self.f.close()


def job_path(seq):
    return os.path.join(STATE, "job.%d.json" % seq)


def save(job):
    tmp = job_path(job["seq"]) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(job, f)
    os.replace(tmp, job_path(job["seq"]))


def load(seq):
    try:
        with open(job_path(seq)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def all_jobs():
    out = []
    for name in sorted(os.listdir(STATE)):
        m = re.match(r"job\.(\d+)\.json$", name)
        if m:
            j = load(int(m.group(1)))
            if j:
                out.append(j)
    return sorted(out, key=lambda j: j["seq"])


def next_seq():
    path = os.path.join(STATE, "seq")
    n = int(open(path).read()) + 1 if os.path.exists(path) else 1
    with open(path, "w") as f:
        f.write(str(n))
    return n


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def start(job, env_extra):
    env = dict(os.environ)
    env.update(env_extra)
    for k in list(env):
        if k.startswith("CPARSL_STANDIN"):
            del env[k]
    exitfile = job_path(job["seq"]) + ".exit"
    out = open(job["out"], "ab")
    err = open(job["err"], "ab")
    p = subprocess.Popen(
        ["/bin/sh", "-c", '/bin/sh "$1"; echo $? > "$2"', "sh",
         job["script"], exitfile],
        stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=job["run_cwd"],
        env=env, start_new_session=True)
    job["pid"] = p.pid
    job["t_start"] = time.time()
    job["exitfile"] = exitfile


def refresh(job):
    """The job's state now: 'Q', 'R' or 'F' (with job['exit'])."""
    if job.get("exit") is not None:
        return "F"
    if os.path.exists(job["exitfile"]):
        try:
            job["exit"] = int(open(job["exitfile"]).read().strip() or "-1")
        except ValueError:
            return "R"  # being written
        save(job)
        return "F"
    if alive(job["pid"]):
        if job["walltime_s"] and time.time() - job["t_start"] > \
                job["walltime_s"]:
            kill_group(job["pid"], signal.SIGKILL)
            # JOB_EXEC_KILL_WALLTIME: -29 in PBS Pro, -11 in Torque
            job["exit"] = -11 if TORQUE else -29
            save(job)
            return "F"
        return "R"
    # gone without writing its status: killed (256 + the signal, as PBS
    # reports a job ended by a signal; qdel sends SIGTERM)
    job["exit"] = 256 + signal.SIGTERM if job.get("deleted") else 256 + 9
    save(job)
    return "F"


def kill_group(pid, sig):
    try:
        os.killpg(pid, sig)
    except OSError:
        pass


def delete(job):
    job["deleted"] = True
    save(job)
    kill_group(job["pid"], signal.SIGTERM)
    if os.fork() == 0:  # SIGKILL what is left after 2 s, detached
        os.setsid()
        time.sleep(2)
        kill_group(job["pid"], signal.SIGKILL)
        os._exit(0)


def hms(s):
    s = int(s)
    return "%02d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60)


# ---- PBS ---------------------------------------------------------------------

PBS_ARG = set("aAcCeJjklmMNopPqrRSuvWG")
PBS_FLAG = set("fhIVXz") | ({"n"} if TORQUE else set())
USAGE = ("usage: qsub [-a date_time] [-A account_string] [-c interval] "
         "[-C directive_prefix] [-e path] [-f] [-h] [-I [-X]] [-j oe|eo] "
         "[-J X-Y[:Z]] [-k keep] [-l resource_list] [-m mail_options] "
         "[-M user_list] [-N jobname] [-o path] [-p priority] [-P project] "
         "[-q queue] [-r y|n] [-R o|e|oe] [-S path] [-u user_list] "
         "[-W otherattributes=value...] [-v variable_list] [-V ] [-z] "
         "[script | -- command [arg1 ...]]")


def pbs_walltime(v):
    # [[hours:]minutes:]seconds[.milliseconds]
    m = re.fullmatch(r"(?:(?:(\d+):)?(\d+):)?(\d+)(?:\.\d+)?", v)
    if not m:
        return None
    h, mi, s = (int(x) if x else 0 for x in m.groups())
    return h * 3600 + mi * 60 + s


def pbs_select(v):
    # [N:]chunk[+[N:]chunk ...], chunk = res=value[:res=value ...]
    nodes = 0
    for part in v.split("+"):
        items = part.split(":")
        n = 1
        if items and re.fullmatch(r"\d+", items[0]):
            n = int(items[0])
            items = items[1:]
        if n < 1 or not items:
            return None
        for it in items:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*=[^:+=\s]+", it):
                return None
        nodes += n
    return nodes


def pbs_place(v):
    arr = {"free", "pack", "scatter", "vscatter"}
    share = {"excl", "shared", "exclhost"}
    if v.startswith(":") or not v:
        return False
    seen = set()
    for it in v.split(":"):
        kind = "a" if it in arr else "s" if it in share else \
            "g" if re.fullmatch(r"group=[A-Za-z_][A-Za-z0-9_]*", it) else None
        if kind is None or kind in seen:
            return False
        seen.add(kind)
    return True


def torque_nodes(v):
    # N[:ppn=P][:property...][+...]
    nodes = 0
    for part in v.split("+"):
        items = part.split(":")
        if not re.fullmatch(r"\d+", items[0]) or int(items[0]) < 1:
            return None
        for it in items[1:]:
            if not re.fullmatch(r"ppn=\d+|gpus=\d+|[A-Za-z][A-Za-z0-9_-]*",
                                it):
                return None
        nodes += int(items[0])
    return nodes


def pbs_resources(job, value):
    if value.startswith("select="):
        if TORQUE:
            die("qsub: Unknown resource type  Resource_List.select")
        n = pbs_select(value[7:])
        if n is None:
            die("qsub: Illegal attribute or resource value "
                "Resource_List.select")
        job["nodes"] = n
        job["select"] = value[7:]
        return
    if value.startswith("place="):
        if TORQUE:
            die("qsub: Unknown resource type  Resource_List.place")
        if not pbs_place(value[6:]):
            die("qsub: Illegal attribute or resource value "
                "Resource_List.place")
        job["place"] = value[6:]
        return
    for item in value.split(","):
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_.]*)=(.+)", item)
        if not m:
            die("qsub: illegal -l value")
        k, v = m.groups()
        if k == "walltime":
            s = pbs_walltime(v)
            if s is None:
                die("qsub: Illegal attribute or resource value "
                    "Resource_List.walltime")
            job["walltime_s"] = s
        elif k == "nodes":
            n = torque_nodes(v)
            if n is None:
                die("qsub: Illegal attribute or resource value "
                    "Resource_List.nodes")
            job["nodes"] = n
            job["nodes_spec"] = v


def pbs_options(job, argv, where):
    """getopt-style parsing, as qsub does for its command line and for
    each #PBS line.  Returns the operands."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--" or not a.startswith("-") or a == "-":
            return argv[i:]
        j = 1
        while j < len(a):
            c = a[j]
            if c in PBS_FLAG:
                job.setdefault("flags", []).append(c)
                j += 1
                continue
            if c not in PBS_ARG:
                die("qsub: invalid option -- '%s'\n%s" % (c, USAGE), 2)
            val = a[j + 1:]
            if not val:
                i += 1
                if i >= len(argv):
                    die("qsub: option requires an argument -- '%s'\n%s" %
                        (c, USAGE), 2)
                val = argv[i]
            pbs_option(job, c, val, where)
            break
        i += 1
    return []


def pbs_option(job, c, v, where):
    if c == "N":
        ok = (len(v) <= 236 and v[:1].isalpha() and
              not re.search(r"\s", v) and v.isprintable()) if not TORQUE \
            else bool(v) and not re.search(r"\s", v)
        if not ok:
            die("qsub: illegal -N value")
        job["name"] = v
    elif c == "l":
        pbs_resources(job, v)
    elif c == "q":
        job["queue"] = v
    elif c == "A":
        job["account"] = v
    elif c == "o":
        job["out"] = v
    elif c == "e":
        job["err"] = v
    elif c == "j" and v not in ("oe", "eo", "n"):
        die("qsub: illegal -j value")
    elif c == "r" and v not in ("y", "n"):
        die("qsub: illegal -r value")
    elif c == "m" and not re.fullmatch(r"n|[abej]+", v):
        die("qsub: illegal -m value")


def pbs_directives(script):
    """The #PBS lines before the first line that is neither blank nor a
    comment (the shell specification, the directives, then the tasks)."""
    lines = []
    with open(script, errors="replace") as f:
        for n, line in enumerate(f):
            s = line.strip()
            if n == 0 and s.startswith("#!"):
                continue
            if s.startswith("#PBS"):
                lines.append(s[4:])
            elif s and not s.startswith("#"):
                break
    return lines


def pbs_qsub(argv):
    def fresh():
        return {"sched": "pbs", "torque": TORQUE, "nodes": 1,
                "walltime_s": 0, "queue": "batch" if TORQUE else "workq",
                "name": None}
    ops = pbs_options(fresh(), argv, "command line")
    if not ops or ops[0] in ("-", "--"):
        die("qsub: the stand-in takes a script file")
    script = ops[0]
    if not os.path.isfile(script):
        die("qsub: script file:: No such file or directory")
    job = fresh()
    for d in pbs_directives(script):
        try:
            words = shlex.split(d)
        except ValueError:
            die("qsub: directive error: #PBS%s" % d)
        pbs_options(job, words, "directive")
    # options on the command line take precedence over directives
    pbs_options(job, argv, "command line")
    if "select" in job and "nodes_spec" in job:
        die("qsub: \"-lresource=\" cannot be used with \"select\" or "
            "\"place\", resource is: nodes")
    with Lock():
        seq = next_seq()
        jid = "%d.%s" % (seq, SERVER)
        name = job["name"] or os.path.basename(script)[:15]
        job.update({"seq": seq, "id": jid, "name": name,
                    "script": os.path.abspath(script),
                    "submit_cwd": os.getcwd(),
                    "run_cwd": os.environ.get("HOME", "/"),
                    "out": os.path.abspath(job.get("out") or
                                           "%s.o%d" % (name, seq)),
                    "err": os.path.abspath(job.get("err") or
                                           "%s.e%d" % (name, seq))})
        nodefile = job_path(seq) + ".nodes"
        with open(nodefile, "w") as f:
            f.write((HOST + "\n") * job["nodes"])
        start(job, {"PBS_JOBID": jid, "PBS_JOBNAME": name,
                    "PBS_O_WORKDIR": job["submit_cwd"],
                    "PBS_NODEFILE": nodefile, "PBS_QUEUE": job["queue"],
                    "PBS_ENVIRONMENT": "PBS_BATCH"})
        save(job)
    if "z" not in job.get("flags", []):
        print(jid)


def find_pbs(jid):
    m = re.fullmatch(r"(\d+)(?:\.(.+))?", jid)
    if not m or (m.group(2) and m.group(2) != SERVER):
        return None
    return load(int(m.group(1)))


def pbs_letter(job):
    st = refresh(job)
    if st == "F":
        return "C" if TORQUE else "F"
    return st


def pbs_qstat(argv):
    full = "-f" in argv
    hist = "-x" in argv
    ids = [a for a in argv if not a.startswith("-")]
    for a in argv:
        if a.startswith("-") and a not in ("-f", "-x"):
            die("qstat: invalid option -- '%s'" % a.lstrip("-")[:1], 2)
    if TORQUE and hist:
        die("qstat: invalid option -- 'x'", 2)
    status = 0
    with Lock():
        if ids:
            jobs = []
            for i in ids:
                j = find_pbs(i)
                if not j:
                    sys.stderr.write("qstat: Unknown Job Id %s\n" % i)
                    status = 153
                    continue
                letter = pbs_letter(j)
                if letter == "F" and not hist:
                    sys.stderr.write(
                        "qstat: %s Job has finished, use -x or -H to "
                        "obtain historical job information\n" % j["id"])
                    status = 35
                    continue
                jobs.append((j, letter))
        else:
            jobs = [(j, pbs_letter(j)) for j in all_jobs()]
            jobs = [(j, s) for j, s in jobs if s != "F" or hist]
    if full:
        for j, s in jobs:
            print("Job Id: %s" % j["id"])
            print("    Job_Name = %s" % j["name"])
            print("    Job_Owner = %s@%s" % (USER, HOST))
            print("    job_state = %s" % s)
            print("    queue = %s" % j["queue"])
            if j.get("walltime_s"):
                print("    Resource_List.walltime = %s" %
                      hms(j["walltime_s"]))
            if j.get("select"):
                print("    Resource_List.select = %s" % j["select"])
            if j.get("nodes_spec"):
                print("    Resource_List.nodes = %s" % j["nodes_spec"])
            if j.get("place"):
                print("    Resource_List.place = %s" % j["place"])
            if s in ("F", "C"):
                print("    %s = %d" % ("exit_status" if TORQUE else
                                       "Exit_status", j["exit"]))
            print("")
    elif jobs:
        print("Job id            Name             User              Time Use "
              "S Queue")
        print("----------------  ---------------- ----------------  -------- "
              "- -----")
        for j, s in jobs:
            print("%-17s %-16s %-16s  %8s %s %s" % (
                j["id"][:17], j["name"][:16], USER[:16], "0", s,
                j["queue"][:16]))
    sys.exit(status)


def pbs_qdel(argv):
    if not argv:
        die("usage: qdel [-W force|suppress_email=X] [-x] job_identifier...",
            2)
    status = 0
    with Lock():
        for i in argv:
            j = find_pbs(i)
            if not j or refresh(j) == "F":
                sys.stderr.write("qdel: Unknown Job Id %s\n" % i)
                status = 153
                continue
            delete(j)
    sys.exit(status)


# ---- Cobalt ------------------------------------------------------------------

COBALT_USAGE = "Usage: qsub [options] <executable> [<excutable options>]"


def cobalt_time(v):
    if re.fullmatch(r"\d+", v):
        return int(v) * 60
    m = re.fullmatch(r"(\d+):([0-5]\d):([0-5]\d)", v)
    if m:
        h, mi, s = map(int, m.groups())
        return h * 3600 + mi * 60 + s
    return None


COBALT_ARG = {"-n": "nodecount", "--nodecount": "nodecount", "-t": "time",
              "--time": "time", "-q": "queue", "--queue": "queue",
              "-A": "project", "--project": "project", "-O": "outputprefix",
              "--outputprefix": "outputprefix", "--mode": "mode",
              "--attrs": "attrs", "--env": "env", "-e": "error",
              "--error": "error", "-o": "output", "--output": "output",
              "--jobname": "jobname", "--cwd": "cwd", "-M": "notify",
              "--dependencies": "dependencies", "--debuglog": "debuglog",
              "--proccount": "proccount", "-c": "proccount"}


def cobalt_error(msg):
    die("%s\n\nqsub: error: %s" % (COBALT_USAGE, msg), 2)


def cobalt_options(opts, argv):
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-"):
            return argv[i:]
        key, eq, val = a.partition("=")
        if key not in COBALT_ARG:
            cobalt_error("no such option: %s" % key)
        if not eq:
            i += 1
            if i >= len(argv):
                cobalt_error("%s option requires an argument" % key)
            val = argv[i]
        name = COBALT_ARG[key]
        if name == "nodecount" and not (re.fullmatch(r"\d+", val) and
                                         int(val) > 0):
            cobalt_error("node count out of realistic range")
        if name == "time" and cobalt_time(val) in (None, 0):
            cobalt_error("time value must be minutes or HH:MM:SS: '%s'" %
                         val)
        if name == "attrs" and not re.fullmatch(
                r"[A-Za-z_]\w*=[^:=\s]+(:[A-Za-z_]\w*=[^:=\s]+)*", val):
            cobalt_error("attrs must be key=value[:key=value]: '%s'" % val)
        if name == "env" and not re.fullmatch(
                r"[A-Za-z_]\w*=[^:]*(:[A-Za-z_]\w*=[^:]*)*", val):
            cobalt_error("env must be VAR=value[:VAR=value]: '%s'" % val)
        opts[name] = val
        i += 1
    return []


def cobalt_qsub(argv):
    opts = {}
    ops = cobalt_options(opts, argv)
    if not ops:
        cobalt_error("No executable or script specified")
    script = ops[0]
    if opts.get("mode") == "script":
        # script mode: #COBALT lines at the top hold more options
        with open(script, errors="replace") as f:
            for n, line in enumerate(f):
                s = line.strip()
                if n == 0 and s.startswith("#!"):
                    continue
                if s.startswith("#COBALT"):
                    more = {}
                    cobalt_options(more, shlex.split(s[7:]))
                    for k, v in more.items():
                        opts.setdefault(k, v)
                elif s and not s.startswith("#"):
                    break
    for need in ("nodecount", "time"):
        if need not in opts:
            cobalt_error("'%s' not provided" % need)
    if not os.path.isfile(script) or not os.access(script, os.X_OK):
        cobalt_error("command %s not found, or is not a file, or is not "
                     "executable" % script)
    if opts.get("mode", "script") != "script":
        cobalt_error("the stand-in runs --mode script jobs only")
    with Lock():
        seq = next_seq()
        prefix = opts.get("outputprefix") or os.path.join(os.getcwd(),
                                                          str(seq))
        job = {"sched": "cobalt", "seq": seq, "id": str(seq),
               "nodes": int(opts["nodecount"]),
               "walltime_s": cobalt_time(opts["time"]),
               "queue": opts.get("queue", "default"),
               "account": opts.get("project"),
               "name": opts.get("jobname", "N/A"),
               "script": os.path.abspath(script),
               "run_cwd": opts.get("cwd", os.getcwd()),
               "out": prefix + ".output", "err": prefix + ".error",
               "log": prefix + ".cobaltlog"}
        env = {"COBALT_JOBID": str(seq), "COBALT_PARTNAME": HOST,
               "COBALT_JOBSIZE": str(job["nodes"])}
        nodefile = job_path(seq) + ".nodes"
        with open(nodefile, "w") as f:
            f.write((HOST + "\n") * job["nodes"])
        env["COBALT_NODEFILE"] = nodefile
        for kv in filter(None, opts.get("env", "").split(":")):
            k, _, v = kv.partition("=")
            env[k] = v
        with open(job["log"], "w") as f:
            f.write("Jobid: %d\nqsub %s\n" % (seq, " ".join(argv)))
        start(job, env)
        save(job)
    print(seq)


def cobalt_state(job):
    st = refresh(job)
    if st == "F":
        if not job.get("logged"):
            with open(job["log"], "a") as f:
                f.write("Info: task completed normally with an exit code "
                        "of %d; initiating job cleanup and removal\n" %
                        job["exit"])
            job["logged"] = True
            save(job)
        return None
    return "killing" if job.get("deleted") else "running"


def cobalt_qstat(argv):
    header = os.environ.get("QSTAT_HEADER",
                            "JobID:User:WallTime:Nodes:State:Location")
    ids = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--header":
            i += 1
            if i >= len(argv):
                die("qstat: error: --header option requires an argument", 2)
            header = argv[i]
        elif a.startswith("--header="):
            header = a.split("=", 1)[1]
        elif a.startswith("-"):
            die("Usage: qstat [options] [<jobids>]\n\nqstat: error: no "
                "such option: %s" % a, 2)
        else:
            ids.append(a)
        i += 1
    fields = header.split(":")
    known = {"jobid": "JobID", "user": "User", "walltime": "WallTime",
             "nodes": "Nodes", "state": "State", "location": "Location",
             "queue": "Queue", "jobname": "JobName"}
    for fl in fields:
        if fl.lower() not in known:
            die("qstat: error: unknown header field %s" % fl, 2)
    rows = []
    with Lock():
        for j in all_jobs():
            if j.get("sched") != "cobalt" or (ids and j["id"] not in ids):
                continue
            st = cobalt_state(j)
            if st is None:
                continue  # finished jobs leave qstat
            vals = {"jobid": j["id"], "user": USER,
                    "walltime": hms(j["walltime_s"]),
                    "nodes": str(j["nodes"]), "state": st,
                    "location": HOST, "queue": j["queue"],
                    "jobname": j["name"]}
            rows.append([vals[fl.lower()] for fl in fields])
    if not rows:
        return
    head = [known[fl.lower()] for fl in fields]
    widths = [max(len(r[c]) for r in rows + [head])
              for c in range(len(head))]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths))
    print(line.rstrip())
    print("=" * len(line.rstrip()))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


def cobalt_qdel(argv):
    if not argv:
        die("Usage: qdel <jobid> <jobid>", 2)
    deleted = []
    with Lock():
        for i in argv:
            j = load(int(i)) if re.fullmatch(r"\d+", i) else None
            if j and j.get("sched") == "cobalt" and refresh(j) != "F":
                delete(j)
                deleted.append(j["id"])
    if deleted:
        print("      Deleted Jobs")
        w = max(len("JobID"), *(len(d) for d in deleted))
        print("%s  User" % "JobID".ljust(w))
        print("=" * (w + 6))
        for d in deleted:
            print("%s  %s" % (d.ljust(w), USER))


def main():
    table = {("pbs", "qsub"): pbs_qsub, ("pbs", "qstat"): pbs_qstat,
             ("pbs", "qdel"): pbs_qdel, ("cobalt", "qsub"): cobalt_qsub,
             ("cobalt", "qstat"): cobalt_qstat,
             ("cobalt", "qdel"): cobalt_qdel}
    fn = table.get((SCHED, CMD))
    if not fn:
        die("standin: called as %s/%s: expected pbs/ or cobalt/ qsub, "
            "qstat or qdel" % (SCHED, CMD), 2)
    fn(sys.argv[1:])


if __name__ == "__main__":
    main()
