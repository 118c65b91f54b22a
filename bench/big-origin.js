// Large-body origin for the `big` phase of scripts/bench.sh, on 127.0.0.1:PORT.
//   GET /big?bytes=N   answers N zero bytes with Content-Length (written from one reused
//                      256 KiB buffer, respecting back-pressure)
//   PUT /up (any path) reads the whole request body and answers its length in bytes
// Node's own http module only: no dependency.
const http = require('http');
const port = parseInt(process.env.PORT || '8012', 10);
const CHUNK = Buffer.alloc(256 * 1024);

function download(req, res, n) {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(n) });
  let left = n;
  const pump = () => {
    while (left > 0) {
      const k = Math.min(left, CHUNK.length);
      left -= k;
      if (!res.write(k === CHUNK.length ? CHUNK : CHUNK.subarray(0, k))) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET') {
    const m = /[?&]bytes=(\d+)/.exec(req.url);
    download(req, res, m ? parseInt(m[1], 10) : 0);
    return;
  }
  let n = 0;
  req.on('data', (c) => { n += c.length; });
  req.on('end', () => {
    const body = String(n);
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(body.length) });
    res.end(body);
  });
  req.on('error', () => {});
});
server.keepAliveTimeout = 300000;
server.requestTimeout = 0;
server.listen({ host: '127.0.0.1', port, backlog: 4096 }, () =>
  console.log(`big-body origin listening on 127.0.0.1:${port} pid ${process.pid}`));
