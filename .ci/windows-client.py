"""Checks an echo server running under Wine from the Linux side.

    windows-client.py PORT [--suffix _SB] [--serial] [--no-limit]

The same checks for every server that runs on Windows:

- two clients at once send several lines each, interleaved, and each gets
  its lines back upper-cased, in order (with --serial, a server that serves
  one client at a time: the second gets nothing until the first leaves,
  then everything);
- a pipelined batch in one write comes back as one batch of replies, and
  so do 1000 lines in one write;
- a line sent a few bytes at a time gets nothing back before its newline,
  then one reply;
- a client that resets mid-line does not disturb the server;
- a client that half-closes still gets every reply it is owed, its last
  unterminated fragment answered as a line, then the close;
- a line one byte over the 64 KiB limit gets `ERR line too long` and the
  close, and the server serves the next client (not with --no-limit: an
  article's one-file program has no limits, and answers it as a line).

Prints one line per check; exits 1 on any difference.
"""
import argparse
import socket
import struct
import sys

TIMEOUT = 10
LIMIT = 64 * 1024

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("--suffix", default="")
parser.add_argument("--serial", action="store_true")
parser.add_argument("--no-limit", action="store_true")
args = parser.parse_args()
failures = 0


def connect():
    s = socket.create_connection(("127.0.0.1", args.port), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def reply(line):
    return line.upper() + args.suffix.encode() + b"\n"


def read_line(s):
    line = b""
    while not line.endswith(b"\n"):
        chunk = s.recv(1)
        if not chunk:
            raise AssertionError("closed after %r" % line)
        line += chunk
    return line


def read_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise AssertionError("closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


def read_to_end(s):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def silent_for(s, seconds):
    s.settimeout(seconds)
    try:
        s.recv(1)  # data, or the close: either way not silent
        return False
    except socket.timeout:
        return True
    finally:
        s.settimeout(TIMEOUT)


def check(what, got, expected):
    global failures
    ok = got == expected
    failures += not ok
    shown = got if len(repr(got)) < 100 else repr(got)[:90] + "..."
    print("%s: %s (got %s%s)" % ("ok" if ok else "FAIL", what, shown,
                                 "" if ok else ", expected %r" % (expected,)))


def run():
    if args.serial:
        a = connect()
        a.sendall(b"first client\n")
        check("the first client", read_line(a), reply(b"first client"))
        b = connect()
        b.sendall(b"second client\n")
        check("the second client waits while the first is served", silent_for(b, 1.0), True)
        a.close()
        check("the second client once the first leaves", read_line(b), reply(b"second client"))
        b.close()
    else:
        a, b = connect(), connect()
        for i in range(5):
            for name, s in (("a", a), ("b", b)):
                s.sendall(b"client %s line %d, mixed Case!\n" % (name.encode(), i))
            for name, s in (("a", a), ("b", b)):
                want = reply(b"client %s line %d, mixed Case!" % (name.encode(), i))
                check("concurrent client %s line %d" % (name, i), read_line(s), want)
        a.close()
        b.close()

    c = connect()
    c.sendall(b"one\ntwo\nthree\n")
    got = read_line(c) + read_line(c) + read_line(c)
    check("pipelined batch", got, reply(b"one") + reply(b"two") + reply(b"three"))
    c.close()

    many = [b"line %d of many" % i for i in range(1000)]
    c = connect()
    c.sendall(b"".join(line + b"\n" for line in many))
    expected = b"".join(reply(line) for line in many)
    check("1000 lines in one write: 1000 replies, in order", read_exact(c, len(expected)) == expected, True)
    c.close()

    c = connect()
    for piece in (b"sp", b"lit acr", b"oss writes"):
        c.sendall(piece)
    check("a line in pieces: nothing before its newline", silent_for(c, 0.5), True)
    c.sendall(b"\n")
    check("a line in pieces: one reply", read_line(c), reply(b"split across writes"))
    c.close()

    reset = connect()
    reset.sendall(b"half a li")
    reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    reset.close()
    print("ok: a client reset mid-line")
    after = connect()
    after.sendall(b"after the reset\n")
    check("a new client after the reset", read_line(after), reply(b"after the reset"))
    after.close()

    half = connect()
    half.sendall(b"first\nsecond\nno newline")
    half.shutdown(socket.SHUT_WR)
    check("half-close: every owed reply, then the close", read_to_end(half),
          reply(b"first") + reply(b"second") + reply(b"no newline"))
    half.close()

    if not args.no_limit:
        over = connect()
        over.sendall(b"x" * (LIMIT + 1))
        check("over-long line: the error", read_line(over), b"ERR line too long\n")
        check("over-long line: then the close", read_to_end(over), b"")
        over.close()

    last = connect()
    last.sendall(b"one more client\n")
    check("a new client after that", read_line(last), reply(b"one more client"))
    last.close()


try:
    run()
except Exception as e:  # a timeout or a reset is a failure, reported as one
    failures += 1
    print("FAIL: %s: %s" % (type(e).__name__, e))
sys.exit(1 if failures else 0)
