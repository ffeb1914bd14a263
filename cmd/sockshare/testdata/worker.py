#!/usr/bin/env python3
"""A foreign worker for sockshare's integration tests: no sockshare code.

It takes its sockets the systemd way (LISTEN_FDS, LISTEN_PID, fds 3..3+n-1)
and serves every one of them from a single thread:

  * a stream socket as a tiny HTTP/1.1 server: one request per connection,
    answered with "Connection: close" and the body
    "worker=<SOCKSHARE_WORKER_ID> slot=<SOCKSHARE_SLOT> pid=<pid>
    listen_pid=<LISTEN_PID>\\n" (also in an X-Worker header: the id).
    GET /sleep/<ms> waits that long before answering (a request in flight
    for drain tests); GET /exit/<code> answers, then exits with that status
    (a crash for restart tests).
  * a datagram socket as an echo server: each datagram comes back prefixed
    with "worker=<id> ".

With $NOTIFY_SOCKET set (sd_notify; a leading '@' is Linux's abstract
namespace) it sends READY=1 once it can serve, and STOPPING=1 when it
starts to stop.

SIGTERM or SIGINT: stop accepting, finish the request in hand, exit 0.
A connection already accepted is always answered. Connections still in a
listening socket's queue are left there for the other workers (the
socket is shared) or the slot's next worker.

Exit status 3, with a message on stderr, when the environment does not
hand this process any socket (LISTEN_PID is not its pid, or LISTEN_FDS is
not a positive number).
"""

import errno
import os
import select
import signal
import socket
import sys
import time

SD_LISTEN_FDS_START = 3
REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request
MAX_REQUEST = 64 * 1024


def fail(msg):
    print("worker.py: " + msg, file=sys.stderr, flush=True)
    sys.exit(3)


def listen_fds():
    """Returns the inherited sockets, as sd_listen_fds(3) would."""
    pid = os.environ.get("LISTEN_PID", "")
    if pid != str(os.getpid()):
        fail("LISTEN_PID is %r, not this process (%d): no sockets were passed to it"
             % (pid, os.getpid()))
    try:
        n = int(os.environ.get("LISTEN_FDS", ""))
    except ValueError:
        n = 0
    if n < 1:
        fail("LISTEN_FDS is %r: want a positive number of sockets"
             % os.environ.get("LISTEN_FDS"))
    socks = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + n):
        try:
            s = socket.socket(fileno=fd)  # family and type read from the fd
        except OSError as e:
            fail("fd %d: not a socket: %s" % (fd, e))
        # Shared sockets: another worker may take the connection or the
        # datagram between select and accept; never block on them.
        s.setblocking(False)
        socks.append(s)
    return socks


def notify(state):
    """Sends one sd_notify message; a missing socket is not an error."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(state.encode(), path)
    except OSError as e:
        print("worker.py: sd_notify %s: %s" % (state, e), file=sys.stderr, flush=True)


class Worker:
    def __init__(self, socks):
        self.socks = socks
        self.id = os.environ.get("SOCKSHARE_WORKER_ID", "")
        self.slot = os.environ.get("SOCKSHARE_SLOT", "")
        self.stopping = False
        self.exit_code = None
        # The handler only sets a flag; the wakeup fd makes select return
        # so the loop sees it at once (PEP 475 would otherwise resume the
        # select).
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)

    def on_signal(self, signum, frame):
        self.stopping = True

    def body(self):
        return "worker=%s slot=%s pid=%d listen_pid=%s\n" % (
            self.id, self.slot, os.getpid(), os.environ.get("LISTEN_PID", ""))

    def run(self):
        notify("READY=1")
        while not self.stopping and self.exit_code is None:
            try:
                ready, _, _ = select.select(self.socks + [self.wake_r], [], [])
            except InterruptedError:
                continue
            if self.wake_r in ready:
                try:
                    os.read(self.wake_r, 512)
                except BlockingIOError:
                    pass
            for s in ready:
                if s is self.wake_r:
                    continue
                if s.type == socket.SOCK_DGRAM:
                    self.echo(s)
                else:
                    self.accept(s)
                # One connection or datagram at a time; a stop asked for
                # meanwhile ends the loop before the next one is taken.
                if self.stopping or self.exit_code is not None:
                    break
        if self.stopping:
            notify("STOPPING=1")
            return 0
        return self.exit_code

    def echo(self, s):
        try:
            data, addr = s.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return  # another worker read it
        try:
            s.sendto(("worker=%s " % self.id).encode() + data, addr)
        except OSError as e:
            print("worker.py: echo to %s: %s" % (addr, e), file=sys.stderr, flush=True)

    def accept(self, s):
        try:
            conn, _ = s.accept()
        except (BlockingIOError, InterruptedError):
            return  # another worker accepted it
        except OSError as e:
            if e.errno in (errno.ECONNABORTED, errno.EPROTO):
                return
            raise
        with conn:
            conn.settimeout(REQUEST_TIMEOUT)
            try:
                self.serve(conn)
            except OSError as e:
                print("worker.py: connection: %s" % e, file=sys.stderr, flush=True)

    def serve(self, conn):
        req = b""
        while b"\r\n\r\n" not in req and b"\n\n" not in req:
            chunk = conn.recv(4096)
            if not chunk:
                break
            req += chunk
            if len(req) > MAX_REQUEST:
                break
        line = req.split(b"\n", 1)[0].decode("latin-1").strip()
        parts = line.split()
        path = parts[1] if len(parts) >= 2 else "/"
        if path.startswith("/sleep/"):
            try:
                time.sleep(int(path[len("/sleep/"):]) / 1000.0)
            except ValueError:
                pass
        body = self.body().encode()
        head = ("HTTP/1.1 200 OK\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n"
                "Content-Length: %d\r\n"
                "X-Worker: %s\r\n"
                "Connection: close\r\n\r\n") % (len(body), self.id)
        conn.sendall(head.encode() + body)
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if path.startswith("/exit/"):
            try:
                self.exit_code = int(path[len("/exit/"):])
            except ValueError:
                self.exit_code = 1


def main():
    socks = listen_fds()
    code = Worker(socks).run()
    for s in socks:
        s.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
