"""Python `websockets` client check for Portico's system tests.

Usage: python ws_client.py URL
Sends a text and a binary message, expects both echoed with their type kept, then closes
with 1000 and expects a clean close handshake. Prints `ws_client OK ...` and exits 0 only
if every check passes. Bounded: every step has a timeout.
"""

import sys
import time

from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import connect


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: ws_client.py URL", file=sys.stderr)
        return 2
    url = sys.argv[1]
    t0 = time.monotonic()
    binary = bytes((i * 13 + 5) & 0xFF for i in range(64 * 1024))
    with connect(url, open_timeout=5, close_timeout=5, max_size=None) as ws:
        ws.send("hello-python")
        got = ws.recv(timeout=5)
        if got != "hello-python":
            print(f"FAIL text echo: {got!r}", file=sys.stderr)
            return 1
        ws.send(binary)
        got = ws.recv(timeout=5)
        if not isinstance(got, bytes) or got != binary:
            print("FAIL binary echo", file=sys.stderr)
            return 1
        ws.close(1000, "done")
        # After our close frame, the next recv must report a clean (1000) closure.
        try:
            ws.recv(timeout=5)
            print("FAIL message after close", file=sys.stderr)
            return 1
        except ConnectionClosedOK as e:
            rcvd = e.rcvd.code if e.rcvd else None
            if rcvd != 1000:
                print(f"FAIL close code from peer: {rcvd}", file=sys.stderr)
                return 1
    print(f"ws_client OK ({int((time.monotonic() - t0) * 1000)} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
