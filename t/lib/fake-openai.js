// A stand-in for the OpenAI Realtime API for the tests: a real TLS
// WebSocket server (node's https + the `ws` package) with a certificate
// the test made.  Usage:
//
//   node t/lib/fake-openai.js PORT CERT KEY [SCRIPT.js]
//
// Prints "ready" once listening, then one JSON line per thing it sees:
//   {"ev":"connect","url":...,"headers":{...},"conn":N,"sni":...}
//   {"ev":"message","conn":N,"msg":{...}}       (each client message)
//   {"ev":"close","conn":N,"code":1000,"reason":"..."}
//
// Default behaviour, per connection: sends session.created at once, and
// answers session.update with session.updated.  The query string of the
// URL the module connects to picks a behaviour per location:
//   status=401        refuse the handshake with that HTTP status
//   hang=1            accept TCP+TLS but never answer the handshake
//   nocreated=1       do not send session.created
//   created_delay_ms=N   send session.created N ms after the handshake
//   updated_delay_ms=N   answer session.update N ms late
//   ctl=1             in-band control, see below
//   nopong=1          do not answer pings: with nothing else sent after
//                     session.updated, the module sees a dead OpenAI
//   flood=N           right after session.update, send N
//                     response.output_audio.delta events at once, each with
//                     `size` (default 8192) base64 characters of audio;
//                     logged as {"ev":"flooded","conn":N,"count":N,
//                     "bytes":B}
// Each ping the module sends is logged: {"ev":"ping","conn":N,"data":...}
// (the `ws` package answers it with a pong by itself, unless nopong=1).
// SCRIPT.js may export { onConnect(ws, ctx), onMessage(ws, msg, ctx) }
// for anything else; ctx has { conn, url, query, send(obj), log(obj) }.
//
// Also (additions for t/100-call.t and friends, off unless asked for):
//
// - With FAKE_OPENAI_LOG=FILE in the environment, every line printed is
//   also appended to FILE with "t" (ms since the epoch) and "port" added,
//   so a test can read what this server saw per block.  Messages this
//   server sends are logged too: {"ev":"sent","conn":N,"msg":{...}}.
//
// - With ctl=1 in the query, an input_audio_buffer.append whose audio is
//   the base64 of "FAKECTL " + JSON array of actions is a command from the
//   test (sent in-band by t/lib/twilio-call.js as a Twilio media payload,
//   so it is ordered with everything else the caller sent).  Actions run in
//   order:
//     {"send": {...} | "raw text"}        send one message
//     {"sleep": ms}                       wait before the next action
//     {"deltas": {"n":3, "bytes":1600, "item_id":"item_A",
//                 "response_id":"resp_A", "order":"delta_first"|"delta_last"}}
//                                         n response.output_audio.delta
//                                         events of random audio
//     {"close": code, "reason": "..."}   WebSocket close
//     {"terminate": true}                 drop the TCP connection
//   It is logged as {"ev":"ctl","conn":N,"actions":[...]} (besides the
//   "message" line of the append itself).

'use strict';

const fs = require('fs');
const https = require('https');
const { WebSocketServer } = require('ws');

const [port, cert, key, script] = process.argv.slice(2);
const hooks = script ? require(require('path').resolve(script)) : {};

const logFile = process.env.FAKE_OPENAI_LOG;
const CTL_PREFIX = 'FAKECTL ';

function log(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
  if (logFile) {
    fs.appendFileSync(logFile, JSON.stringify(
      Object.assign({ t: Date.now(), port: +port }, obj)) + '\n');
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// The actions of an in-band control message (see the header comment).
async function runCtl(ws, ctx, actions) {
  for (const a of actions) {
    if (ws.readyState !== ws.OPEN) return;
    if (a.send !== undefined) {
      ctx.send(a.send);
    } else if (a.sleep !== undefined) {
      await sleep(+a.sleep);
    } else if (a.big !== undefined) {
      // an event the relay drops, larger than voice_max_message_size
      ctx.send({ type: 'conversation.item.done',
                 item: { type: 'function_call_output',
                         output: 'x'.repeat(+a.big) } });
    } else if (a.deltas) {
      const d = a.deltas;
      for (let i = 0; i < (d.n || 1); i++) {
        const audio = require('crypto').randomBytes(d.bytes || 160)
          .toString('base64');
        const ev = d.order === 'delta_first'
          ? { type: 'response.output_audio.delta', delta: audio,
              event_id: `evt_d${i}`, response_id: d.response_id || 'resp_1',
              item_id: d.item_id || 'item_1', output_index: 0,
              content_index: 0 }
          : { type: 'response.output_audio.delta', event_id: `evt_d${i}`,
              response_id: d.response_id || 'resp_1',
              item_id: d.item_id || 'item_1', output_index: 0,
              content_index: 0, delta: audio };
        ctx.send(ev);
        if (d.interval_ms) await sleep(d.interval_ms);
      }
    } else if (a.close !== undefined) {
      ws.close(a.close, a.reason || '');
    } else if (a.terminate) {
      ws.terminate();
    }
  }
}

// n audio deltas at once, not logged one by one (megabytes of them)
function floodDeltas(ws, ctx, n, size) {
  const delta = Buffer.alloc(size / 4 * 3, 0x7f).toString('base64');
  let queued = 0;
  for (let i = 0; i < n; i++) {
    const ev = JSON.stringify({
      type: 'response.output_audio.delta', event_id: 'evt_d' + i,
      response_id: 'resp_1', item_id: 'item_1', output_index: 0,
      content_index: 0, delta,
    });
    queued += ev.length;
    ws.send(ev);
  }
  ctx.log({ ev: 'flooded', conn: ctx.conn, count: n, bytes: queued });
}

function ctlOf(msg) {
  if (msg.type !== 'input_audio_buffer.append'
      || typeof msg.audio !== 'string') {
    return null;
  }
  const text = Buffer.from(msg.audio, 'base64').toString();
  if (!text.startsWith(CTL_PREFIX)) return null;
  try {
    return JSON.parse(text.slice(CTL_PREFIX.length));
  } catch (e) {
    return null;
  }
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

  log({ ev: 'connect', url: req.url, headers: req.headers, conn,
        sni: req.socket.servername || null });

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
      send: (obj) => {
        if (ws.readyState !== ws.OPEN) return;
        log({ ev: 'sent', conn, msg: obj });
        ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
      },
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
        const updated = { type: 'session.updated', event_id: 'evt_su',
                          session: msg.session };
        const later = +(url.searchParams.get('updated_delay_ms') || 0);
        if (later) setTimeout(() => ctx.send(updated), later);
        else ctx.send(updated);
      }

      const flood = +(url.searchParams.get('flood') || 0);
      if (msg.type === 'session.update' && flood) {
        floodDeltas(ws, ctx, flood, +(url.searchParams.get('size') || 8192));
      }

      const actions = url.searchParams.get('ctl') ? ctlOf(msg) : null;
      if (actions) {
        log({ ev: 'ctl', conn, actions });
        runCtl(ws, ctx, actions)
          .catch((e) => log({ ev: 'error', conn, error: e.message }));
      }

      if (hooks.onMessage) {
        hooks.onMessage(ws, msg, ctx);
      }
    });

    ws.on('close', (code, reason) => {
      log({ ev: 'close', conn, code, reason: reason.toString() });
    });

    ws.on('error', (e) => log({ ev: 'error', conn, error: e.message }));

    ws.on('ping', (data) => log({ ev: 'ping', conn, data: data.toString() }));
    if (url.searchParams.get('nopong')) {
      ws._autoPong = false;     // ws 8 internals: no automatic pong
    }

    const created = () => ctx.send({
      type: 'session.created', event_id: 'evt_sc',
      session: { type: 'realtime', model: 'gpt-realtime' } });
    const delay = +(url.searchParams.get('created_delay_ms') || 0);
    if (url.searchParams.get('nocreated')) {
      // nothing
    } else if (delay > 0) {
      setTimeout(created, delay);
    } else {
      created();
    }

    if (hooks.onConnect) {
      hooks.onConnect(ws, ctx);
    }
  });
});

server.listen(+port, '127.0.0.1', () => log({ ev: 'ready', port: +port }));
