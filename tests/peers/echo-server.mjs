// WebSocket echo server for Portico's system tests (the `ws` README echo server, on loopback).
// Usage: node echo-server.mjs PORT [CERTFILE KEYFILE]
//   - every message is echoed back with its type (text/binary) kept;
//   - the text message `whoami` is answered with `port:PORT` (so a test can tell backends
//     apart), except with WS_CONFORMANCE=1, where the server is a pure echo;
//   - a plain HTTP GET answers `ws-echo PORT\n` (readiness / health probes);
//   - prints `ready PORT` on stdout once listening; exits on SIGTERM/SIGINT.
// WS_CONFORMANCE=1: enable permessage-deflate (Autobahn 12.*/13.*) and lift ws's DoS limits
// (ws 8.23 server defaults: maxFragments 16384 -> cases 9.3.1/9.4.1 get close 1008).
import { WebSocketServer } from 'ws';
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';

const [portArg, cert, key] = process.argv.slice(2);
const port = Number(portArg);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node echo-server.mjs PORT [CERTFILE KEYFILE]');
  process.exit(2);
}
const conformance = process.env.WS_CONFORMANCE === '1';
const extra = conformance ? { perMessageDeflate: true, maxFragments: 0, maxBufferedChunks: 0 } : {};

const onRequest = (req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`ws-echo ${port}\n`);
};
const server = cert
  ? https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, onRequest)
  : http.createServer(onRequest);
const wss = new WebSocketServer({ server, ...extra });

wss.on('connection', (ws) => {
  ws.on('error', (e) => console.error('ws error:', e.message));
  ws.on('message', (data, isBinary) => {
    if (!conformance && !isBinary && data.length === 6 && data.toString() === 'whoami') {
      ws.send(`port:${port}`);
      return;
    }
    ws.send(data, { binary: isBinary });
  });
});

server.on('error', (e) => {
  console.error(`listen 127.0.0.1:${port}: ${e.message}`);
  process.exit(1);
});
server.listen(port, '127.0.0.1', () => console.log(`ready ${port}`));

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
