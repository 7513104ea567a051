// A stand-in for the OpenAI Realtime API for the tests: a real TLS
// WebSocket server (node's https + the `ws` package) with a certificate
// the test made.  Usage:
//
//   node t/lib/fake-openai.js PORT CERT KEY [SCRIPT.js]
//
// Prints "ready" once listening, then one JSON line per thing it sees:
//   {"ev":"connect","url":...,"headers":{...},"conn":N}
//   {"ev":"message","conn":N,"msg":{...}}       (each client message)
//   {"ev":"close","conn":N,"code":1000,"reason":"..."}
//
// Default behaviour, per connection: sends session.created at once, and
// answers session.update with session.updated.  The query string of the
// URL the module connects to picks a behaviour per location:
//   status=401        refuse the handshake with that HTTP status
//   hang=1            accept TCP+TLS but never answer the handshake
//   nocreated=1       do not send session.created
// SCRIPT.js may export { onConnect(ws, ctx), onMessage(ws, msg, ctx) }
// for anything else; ctx has { conn, url, query, send(obj), log(obj) }.

'use strict';

const fs = require('fs');
const https = require('https');
const { WebSocketServer } = require('ws');

const [port, cert, key, script] = process.argv.slice(2);
const hooks = script ? require(require('path').resolve(script)) : {};

function log(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const server = https.createServer({
  cert: fs.readFileSync(cert),
  key: fs.readFileSync(key),
});

const wss = new WebSocketServer({ noServer: true });
let conns = 0;

server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'https://fake.test');
  const status = url.searchParams.get('status');
  const conn = ++conns;

  log({ ev: 'connect', url: req.url, headers: req.headers, conn });

  if (status) {
    socket.end(`HTTP/1.1 ${status} Refused\r\nContent-Length: 0\r\n` +
               'Connection: close\r\n\r\n');
    return;
  }

  if (url.searchParams.get('hang')) {
    return;
  }

  wss.handleUpgrade(req, socket, head, (ws) => {
    const ctx = {
      conn, url: req.url, query: url.searchParams, log,
      send: (obj) => ws.send(typeof obj === 'string' ? obj
                                                     : JSON.stringify(obj)),
    };

    ws.on('message', (data, isBinary) => {
      let msg;
      try {
        msg = JSON.parse(data.toString());
      } catch (e) {
        msg = { unparsed: data.toString(), binary: isBinary };
      }
      log({ ev: 'message', conn, msg });

      if (msg.type === 'session.update' && !hooks.noSessionUpdated) {
        ctx.send({ type: 'session.updated', event_id: 'evt_su',
                   session: msg.session });
      }

      if (hooks.onMessage) {
        hooks.onMessage(ws, msg, ctx);
      }
    });

    ws.on('close', (code, reason) => {
      log({ ev: 'close', conn, code, reason: reason.toString() });
    });

    ws.on('error', (e) => log({ ev: 'error', conn, error: e.message }));

    if (!url.searchParams.get('nocreated')) {
      ctx.send({ type: 'session.created', event_id: 'evt_sc',
                 session: { type: 'realtime', model: 'gpt-realtime' } });
    }

    if (hooks.onConnect) {
      hooks.onConnect(ws, ctx);
    }
  });
});

server.listen(+port, '127.0.0.1', () => log({ ev: 'ready', port: +port }));
