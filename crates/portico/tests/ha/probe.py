# The client-side probe of the HA upgrade tests (`upgrade.rs`), run inside the client
# namespace: for DURATION seconds it
# - sends `GET /` to VIP:PORT on a new TCP connection every 10 ms (1 s timeout) and records
#   each answer (ok = status 200 and the body names EXPECT), and
# - records every VRRP advert seen on the segment (raw socket, protocol 112, group
#   224.0.0.18 joined on the client's address): time, source, VRID, priority.
# Then prints one JSON object: {"http": [[t, ok, seconds, detail]], "adverts": [[t, src,
# vrid, priority]]}. Times are the wall clock (epoch seconds).
import json
import socket
import struct
import sys
import threading
import time

vip, port, expect, local, duration = (
    sys.argv[1],
    int(sys.argv[2]),
    sys.argv[3],
    sys.argv[4],
    float(sys.argv[5]),
)
end = time.time() + duration
adverts = []
http = []


def sniff():
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
    mreq = struct.pack("4s4s", socket.inet_aton("224.0.0.18"), socket.inet_aton(local))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    s.settimeout(0.2)
    while time.time() < end:
        try:
            pkt = s.recv(2048)
        except socket.timeout:
            continue
        t = time.time()
        ihl = (pkt[0] & 0x0F) * 4
        src = socket.inet_ntoa(pkt[12:16])
        vrrp = pkt[ihl:]
        if len(vrrp) >= 3:
            adverts.append([t, src, vrrp[1], vrrp[2]])


sniffer = threading.Thread(target=sniff)
sniffer.start()
request = b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
while time.time() < end:
    t = time.time()
    try:
        with socket.create_connection((vip, port), timeout=1.0) as c:
            c.settimeout(1.0)
            c.sendall(request)
            data = b""
            while True:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
        text = data.decode("latin-1")
        ok = text.startswith("HTTP/1.1 200") and expect in text
        detail = text.split("\r\n", 1)[0]
    except OSError as e:
        ok, detail = False, repr(e)
    http.append([t, ok, time.time() - t, detail])
    time.sleep(0.01)
sniffer.join()
print(json.dumps({"http": http, "adverts": adverts}))
