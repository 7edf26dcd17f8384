#!/usr/bin/env python3
"""Socket activation for the tests, as systemd does it: bind listening sockets, put them at
file descriptors 3, 4, ... and exec the program with LISTEN_FDS, LISTEN_PID (this process's id,
which exec keeps) and LISTEN_FDNAMES set.

usage: socket_activate.py [--wrong-pid] SPEC... -- PROGRAM [ARG...]
  SPEC  NAME=HOST:PORT   a listening TCP socket (port 0: any free one), e.g. tls=127.0.0.1:0
        NAME=file:PATH   a regular file instead of a socket, to test the refusal
  --wrong-pid            set LISTEN_PID to another process's id: the sockets are not for us

Before exec it prints one line to stderr: "socket_activate: NAME=ADDR ...".
"""
import os
import socket
import sys


def main():
    args = sys.argv[1:]
    wrong_pid = "--wrong-pid" in args
    args = [a for a in args if a != "--wrong-pid"]
    sep = args.index("--")
    specs, argv = args[:sep], args[sep + 1:]
    objects, names, shown = [], [], []
    for spec in specs:
        name, where = spec.split("=", 1)
        if where.startswith("file:"):
            f = open(where[5:], "a+")
            objects.append(f)
            shown.append(f"{name}={where}")
        else:
            host, port = where.rsplit(":", 1)
            host = host.strip("[]")
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, int(port)))
            s.listen(128)
            objects.append(s)
            addr = s.getsockname()
            shown.append(f"{name}=[{addr[0]}]:{addr[1]}" if family == socket.AF_INET6 else f"{name}={addr[0]}:{addr[1]}")
        names.append(name)
    # Out of the way first (they may already sit at 3, 4, ...), then into place, in order.
    import fcntl
    high = [fcntl.fcntl(o.fileno(), fcntl.F_DUPFD, 100) for o in objects]
    for o in objects:
        o.close()
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i, inheritable=True)
        os.close(fd)
    env = dict(os.environ)
    env["LISTEN_FDS"] = str(len(high))
    env["LISTEN_PID"] = str(os.getpid() + (1 if wrong_pid else 0))
    env["LISTEN_FDNAMES"] = ":".join(names)
    print("socket_activate: " + " ".join(shown), file=sys.stderr, flush=True)
    os.execve(argv[0], argv, env)


if __name__ == "__main__":
    main()
