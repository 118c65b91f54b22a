#!/usr/bin/env python3
"""Full TLS handshakes for scripts/bench.sh (phases hs, hsrsa): PROCS processes, each a loop of
new TCP + TLS connections for SECS seconds. No session is ever offered for resumption, so
every connection is a full handshake whatever the server allows. Each connection sends SNI,
one `GET / HTTP/1.1` with Host and `Connection: close`, and reads the answer to the end; a
connection counts when the status line is `HTTP/1.1 200`, else it is an error.

usage: tls-hs-client.py HOST PORT SNI SECS [PROCS=8]
prints one JSON line: {"handshakes": N, "errors": E, "secs": S, "hs_per_s": R}
"""
import json
import multiprocessing
import socket
import ssl
import sys
import time


def worker(host, port, sni, secs, out):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # self-signed bench certificates
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    request = ("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % sni).encode()
    ok = errors = 0
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname=sni) as s:
                    s.sendall(request)
                    data = b""
                    while True:
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        data += chunk
            if data.startswith(b"HTTP/1.1 200"):
                ok += 1
            else:
                errors += 1
        except (OSError, ssl.SSLError):
            errors += 1
    out.put((ok, errors))


def main():
    host, port, sni, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    procs = int(sys.argv[5]) if len(sys.argv) > 5 else 8
    out = multiprocessing.Queue()
    start = time.monotonic()
    ps = [multiprocessing.Process(target=worker, args=(host, port, sni, secs, out)) for _ in range(procs)]
    for p in ps:
        p.start()
    results = [out.get() for _ in ps]
    for p in ps:
        p.join()
    elapsed = time.monotonic() - start
    ok = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    print(json.dumps({"handshakes": ok, "errors": errors, "secs": round(elapsed, 3),
                      "hs_per_s": round(ok / elapsed, 1)}))


if __name__ == "__main__":
    main()
