#!/usr/bin/env python3
"""Time from starting a server to its port accepting TCP connections (bench/run.sh, S7).

    startup_time.py RUNS LOG_STEM -- COMMAND [ARG...]

In COMMAND, "{port}" is replaced by a free port on 127.0.0.1 (a new one each run) and "{run}"
by the run's number (1..RUNS). Each run: take the time, spawn COMMAND, then try a TCP connect to
127.0.0.1:PORT every millisecond until one succeeds; the time from just before the spawn to that
success is the run's start-up time. Then the server gets SIGTERM and must exit with status 0
(SIGKILL after 15 s). Its stdout and stderr go to LOG_STEM-RUN.stdout and LOG_STEM-RUN.stderr.

Prints one line per run and a last line:

    startup-summary runs=N ok=N median_ms=M min_ms=M max_ms=M bad_exit=N

Exits 1 if any run failed (never accepted within 10 s, exited early, or a bad exit status).
"""

import signal
import socket
import statistics
import subprocess
import sys
import time

ACCEPT_TIMEOUT = 10.0
STOP_GRACE = 15.0

child = None


def on_term(signum, _frame):
    raise SystemExit(128 + signum)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def one_run(run, stem, template):
    global child
    port = free_port()
    argv = [a.replace("{port}", str(port)).replace("{run}", str(run)) for a in template]
    with open("%s-%d.stdout" % (stem, run), "wb") as out, open("%s-%d.stderr" % (stem, run), "wb") as err:
        t0 = time.perf_counter()
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        accepted = None
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    accepted = time.perf_counter()
                    break
            if child.poll() is not None:
                break
            if time.perf_counter() - t0 > ACCEPT_TIMEOUT:
                break
            time.sleep(0.001)
        early = child.poll()
        status = stop(child)
        child = None
    if accepted is None:
        why = "exited with status %s first" % early if early is not None else "no connect within %gs" % ACCEPT_TIMEOUT
        print("run %d: port %d never accepted (%s)" % (run, port, why))
        return None, status
    ms = (accepted - t0) * 1000.0
    print("run %d: %.1f ms to accepting on port %d; exit status %d after SIGTERM" % (run, ms, port, status))
    return ms, status


def main():
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        sys.exit("usage: startup_time.py RUNS LOG_STEM -- COMMAND [ARG...]")
    runs, stem, template = int(sys.argv[1]), sys.argv[2], sys.argv[4:]
    signal.signal(signal.SIGTERM, on_term)
    times, bad_exit, failed = [], 0, 0
    try:
        for run in range(1, runs + 1):
            ms, status = one_run(run, stem, template)
            if ms is None:
                failed += 1
            else:
                times.append(ms)
            if status != 0:
                bad_exit += 1
    finally:
        if child is not None:
            stop(child)
    if times:
        print("startup-summary runs=%d ok=%d median_ms=%.1f min_ms=%.1f max_ms=%.1f bad_exit=%d"
              % (runs, len(times), statistics.median(times), min(times), max(times), bad_exit))
    else:
        print("startup-summary runs=%d ok=0 median_ms=- min_ms=- max_ms=- bad_exit=%d" % (runs, bad_exit))
    sys.exit(1 if failed or bad_exit else 0)


if __name__ == "__main__":
    main()
