#!/usr/bin/python3
"""Opens many idle PostgreSQL client connections and holds them, for bench/idle_clients.sh.

    idle_clients.py HOST PORT N [--user postgres] [--database bench] [--window 500]
                    [--timeout 120] [--hold 600]

Every connection sends a StartupMessage (protocol 3.0) and reads until ReadyForQuery ('Z'),
so the server (pgturbo) has done all the work a real idle client costs it. Only `--window`
handshakes are in flight at once: firing all N connects together would overflow the listen
backlog and turn the run into SYN retransmission timeouts. One thread, non-blocking sockets and
`selectors`, Python's standard library only.

When every connection has finished (or `--timeout` seconds passed) it prints one line to stdout,

    completed=N failed=F seconds=S

then holds the completed connections open until SIGTERM/SIGINT or `--hold` seconds, and at the
end prints `dropped=D` (connections the server closed while held). The first few errors go to
stderr. Exit status: 0 if every connection completed, 1 otherwise.
"""

import argparse
import errno
import selectors
import signal
import socket
import struct
import sys
import time

PROTOCOL_3_0 = 196608


def startup_message(user, database):
    """Returns a StartupMessage: length, protocol 3.0, then name/value pairs and a final NUL."""
    params = b""
    for name, value in (("user", user), ("database", database),
                        ("application_name", "idle_clients")):
        params += name.encode() + b"\0" + value.encode() + b"\0"
    body = struct.pack("!I", PROTOCOL_3_0) + params + b"\0"
    return struct.pack("!I", len(body) + 4) + body


class Client:
    """One connection: its socket, bytes still to send, bytes received and not yet parsed."""

    __slots__ = ("sock", "out", "inbuf", "ready")

    def __init__(self, sock, out):
        self.sock = sock
        self.out = out
        self.inbuf = b""
        self.ready = False


def error_text(payload):
    """Returns the message ('M') field of an ErrorResponse body, with its SQLSTATE ('C')."""
    fields = {}
    for part in payload.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return "%s (SQLSTATE %s)" % (fields.get("M", "?"), fields.get("C", "?"))


def parse(client):
    """Consumes whole messages from client.inbuf. Returns None while the handshake goes on,
    "ready" on ReadyForQuery, or an error string."""
    buf = client.inbuf
    pos = 0
    result = None
    while len(buf) - pos >= 5:
        kind = buf[pos:pos + 1]
        (length,) = struct.unpack_from("!I", buf, pos + 1)
        if length < 4:
            result = "bad message length %d" % length
            break
        if len(buf) - pos < 1 + length:
            break
        payload = buf[pos + 5:pos + 1 + length]
        pos += 1 + length
        if kind == b"R":  # Authentication*: only AuthenticationOk (0) is expected (trust)
            (code,) = struct.unpack_from("!I", payload, 0)
            if code != 0:
                result = "server asks for authentication (code %d); trust expected" % code
                break
        elif kind == b"E":  # ErrorResponse
            result = error_text(payload)
            break
        elif kind == b"Z":  # ReadyForQuery
            result = "ready"
            break
        # 'S' ParameterStatus, 'K' BackendKeyData, 'N' NoticeResponse: nothing to do.
    client.inbuf = buf[pos:]
    return result


def main():
    ap = argparse.ArgumentParser(description="Open and hold N idle PostgreSQL connections.")
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("n", type=int)
    ap.add_argument("--user", default="postgres")
    ap.add_argument("--database", default="bench")
    ap.add_argument("--window", type=int, default=500, help="handshakes in flight at once")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to open them all")
    ap.add_argument("--hold", type=float, default=600.0, help="seconds to hold them at most")
    args = ap.parse_args()

    stop = False

    def on_signal(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    message = startup_message(args.user, args.database)
    sel = selectors.DefaultSelector()
    started = completed = failed = in_flight = dropped = 0
    errors_shown = 0
    held = []

    def fail(client, why):
        nonlocal failed, in_flight, errors_shown
        sel.unregister(client.sock)
        client.sock.close()
        failed += 1
        in_flight -= 1
        if errors_shown < 5:
            print("idle_clients: connection failed: %s" % why, file=sys.stderr)
            errors_shown += 1

    def watch_held(sock):
        """Reads from a held connection; returns 1 if the server closed it, else 0."""
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return 0
        except OSError:
            data = b""
        if data:
            return 0
        sel.unregister(sock)
        sock.close()
        return 1

    begin = time.monotonic()
    deadline = begin + args.timeout
    while completed + failed < args.n and time.monotonic() < deadline and not stop:
        while in_flight < args.window and started < args.n:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            started += 1
            in_flight += 1
            err = sock.connect_ex((args.host, args.port))
            client = Client(sock, message)
            sel.register(sock, selectors.EVENT_WRITE, client)
            if err not in (0, errno.EINPROGRESS):
                fail(client, "connect: %s" % errno.errorcode.get(err, err))
        for key, mask in sel.select(timeout=0.2):
            client = key.data
            if client.ready:
                dropped += watch_held(key.fileobj)
                continue
            if mask & selectors.EVENT_WRITE:
                err = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(client, "connect: %s" % errno.errorcode.get(err, err))
                    continue
                try:
                    sent = client.sock.send(client.out)
                except OSError as e:
                    fail(client, "send: %s" % e)
                    continue
                client.out = client.out[sent:]
                if not client.out:
                    sel.modify(client.sock, selectors.EVENT_READ, client)
                continue
            try:
                data = client.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                fail(client, "recv: %s" % e)
                continue
            if not data:
                fail(client, "server closed the connection during the handshake")
                continue
            client.inbuf += data
            result = parse(client)
            if result == "ready":
                client.ready = True
                client.inbuf = b""
                completed += 1
                in_flight -= 1
                held.append(client)
            elif result is not None:
                fail(client, result)

    print("completed=%d failed=%d seconds=%.1f"
          % (completed, args.n - completed, time.monotonic() - begin), flush=True)

    # Hold: only watch for the server closing a held connection.
    for key in list(sel.get_map().values()):
        if not key.data.ready:
            sel.unregister(key.fileobj)
            key.fileobj.close()
    hold_end = time.monotonic() + args.hold
    while not stop and time.monotonic() < hold_end:
        for key, _ in sel.select(timeout=0.5):
            dropped += watch_held(key.fileobj)
    print("dropped=%d" % dropped, flush=True)
    for client in held:
        client.sock.close()
    return 0 if completed == args.n else 1


if __name__ == "__main__":
    sys.exit(main())
