"""HTTP/2 client that never reads: huge flow-control windows (2^31-1 per stream and for the
connection, so flow control never stops the server), as many streams as the server allows
(at most N) asking for PATH, then no reads and no WINDOW_UPDATE for HOLD seconds. Prints
one JSON line when the streams are sent (`opened`), then exits after HOLD.

usage: h2_never_read.py HOST PORT N PATH HOLD
"""
import json
import sys
import time

import h2.events
import h2.exceptions
import h2.settings

import h2_tls_client

host, port, n, path, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
sock, conn = h2_tls_client.connect(host, port)
conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
conn.increment_flow_control_window(2**31 - 1 - 65535)
sock.sendall(conn.data_to_send())
# The server's SETTINGS (its stream limit) before opening streams.
settled = False
while not settled:
    for ev in conn.receive_data(sock.recv(65536)):
        if isinstance(ev, h2.events.RemoteSettingsChanged):
            settled = True
    sock.sendall(conn.data_to_send())
headers = [(":method", "GET"), (":path", path), (":scheme", "https"), (":authority", "localhost")]
opened = 0
for _ in range(n):
    try:
        conn.send_headers(conn.get_next_available_stream_id(), headers, end_stream=True)
    except h2.exceptions.TooManyStreamsError:
        break
    opened += 1
sock.sendall(conn.data_to_send())
print(json.dumps({"opened": opened}), flush=True)
time.sleep(hold)
