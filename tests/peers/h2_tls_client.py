"""The client side of an HTTP/2 connection over TLS for the attack peers (h2_rapid_reset.py,
h2_never_read.py): a TLS connection that takes any certificate, offers only `h2` by ALPN
and must get it, with an `h2` client connection on it whose preface is not sent yet.
"""
import socket
import ssl

import h2.config
import h2.connection


def connect(host, port):
    """(TLS socket, h2 client connection) to HOST:PORT, 10 s connect timeout."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    sock = ctx.wrap_socket(socket.create_connection((host, port), timeout=10), server_hostname="localhost")
    assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    return sock, conn
