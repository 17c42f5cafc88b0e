"""Checks iocp-accept.exe running under Wine: windows-client.py PORT.

Two clients at once send several lines each, interleaved, and must get each
line back upper-cased, in order. Then a client resets mid-line, and one more
client must still be served. Exits 1 on any difference.
"""
import socket
import struct
import sys

port = int(sys.argv[1])
TIMEOUT = 10


def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_line(s):
    line = b""
    while not line.endswith(b"\n"):
        chunk = s.recv(1)
        if not chunk:
            raise AssertionError("closed after %r" % line)
        line += chunk
    return line


failures = 0


def check(what, got, expected):
    global failures
    ok = got == expected
    failures += not ok
    print("%s: %s (got %r%s)" % ("ok" if ok else "FAIL", what, got,
                                 "" if ok else ", expected %r" % expected))


a, b = connect(), connect()
for i in range(5):
    for name, s in (("a", a), ("b", b)):
        line = ("client %s line %d, mixed Case!\n" % (name, i)).encode()
        s.sendall(line)
    for name, s in (("a", a), ("b", b)):
        expected = ("CLIENT %s LINE %d, MIXED CASE!\n" % (name.upper(), i)).encode()
        check("concurrent client %s line %d" % (name, i), read_line(s), expected)
# A batch in one write comes back as one batch of replies.
a.sendall(b"one\ntwo\nthree\n")
check("pipelined batch", read_line(a) + read_line(a) + read_line(a), b"ONE\nTWO\nTHREE\n")

reset = connect()
reset.sendall(b"half a li")
reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
reset.close()
print("ok: a client reset mid-line")

check("client a after the reset", (a.sendall(b"still there\n"), read_line(a))[1], b"STILL THERE\n")
late = connect()
late.sendall(b"one more client\n")
check("a new client after the reset", read_line(late), b"ONE MORE CLIENT\n")
for s in (a, b, late):
    s.close()
sys.exit(1 if failures else 0)
