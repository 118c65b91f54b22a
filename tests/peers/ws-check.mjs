// ws client checks for Portico's system tests. Exits 0 only if every check passes.
// Usage:
//   node ws-check.mjs echo URL          text echo, 1 MiB binary echo, ping/pong, close 1000
//   node ws-check.mjs whoami URL [N]    N sequential connections (default 1), each sends
//                                       `whoami` and prints the reply (`port:P`) on a line
// Every run is bounded (10 s per connection).
import WebSocket from 'ws';

const [mode, url, countArg] = process.argv.slice(2);
const fail = (m) => { console.error('FAIL', m); process.exit(1); };
if (!url || !['echo', 'whoami'].includes(mode)) fail('usage: node ws-check.mjs echo|whoami URL [N]');

function open(u) {
  const ws = new WebSocket(u, { rejectUnauthorized: false });
  const timer = setTimeout(() => fail(`timeout on ${u}`), 10000);
  ws.on('error', (e) => fail(e.message));
  ws.on('close', () => clearTimeout(timer));
  return ws;
}

function echoCheck() {
  const ws = open(url);
  const big = Buffer.alloc(1 << 20);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff;
  const t0 = Date.now();
  let step = 0;
  ws.on('open', () => ws.send('hello-ws'));
  ws.on('message', (data, isBinary) => {
    if (step === 0) {
      if (isBinary || data.toString() !== 'hello-ws') fail('text echo');
      step++; ws.send(big);
    } else if (step === 1) {
      if (!isBinary || !big.equals(data)) fail('binary echo (1 MiB)');
      step++; ws.ping('p1');
    } else fail(`unexpected message at step ${step}`);
  });
  ws.on('pong', (d) => {
    if (d.toString() !== 'p1') fail('pong payload');
    step++; ws.close(1000, 'bye');
  });
  ws.on('close', (code) => {
    if (code !== 1000 || step !== 3) fail(`close ${code} at step ${step}`);
    console.log(`ws-check echo OK (${Date.now() - t0} ms)`);
    process.exit(0);
  });
}

function whoami(left) {
  if (left === 0) process.exit(0);
  const ws = open(url);
  ws.on('open', () => ws.send('whoami'));
  ws.on('message', (data) => { console.log(data.toString()); ws.close(1000); });
  ws.on('close', (code) => {
    if (code !== 1000) fail(`close ${code}`);
    whoami(left - 1);
  });
}

if (mode === 'echo') echoCheck();
else whoami(Number(countArg ?? 1));
