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
// for anything else; ctx has { conn, url, query, headers, socket,
// send(obj), log(obj) } (headers: the handshake's, as node gives them;
// socket: the TLS socket under the WebSocket).
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
//     {"tool_call": {"name": "end_call", "arguments": "{}",
//                    "call_id": "call_1", "item_id": "item_fc1",
//                    "response_id": "resp_fc1", "previous_item_id": null,
//                    "status": "completed"|"cancelled"|"incomplete",
//                    "arg_chunks": 2, "done_delay_ms": 0,
//                    "audio_before": {"n": 3, "bytes": 1600,
//                                     "item_id": "item_msg1"}}}
//                                         a whole response as the Realtime
//                                         API (GA) streams a function call:
//                                         response.created, [an assistant
//                                         audio item: output_item.added,
//                                         conversation.item.added,
//                                         content_part.added, n deltas,
//                                         output_audio.done,
//                                         content_part.done,
//                                         output_item.done,
//                                         conversation.item.done], the
//                                         function_call item
//                                         (output_item.added {item: {id,
//                                         type, object, status:
//                                         "in_progress", name, call_id,
//                                         arguments: ""}},
//                                         conversation.item.added,
//                                         arg_chunks x
//                                         function_call_arguments.delta,
//                                         .done, output_item.done,
//                                         conversation.item.done), then,
//                                         done_delay_ms later, response.done
//                                         with that status (its
//                                         status_details: turn_detected /
//                                         max_output_tokens) and the output
//                                         items; every function-call event
//                                         carries name, call_id, item_id,
//                                         response_id and output_index
//     {"transcript": {"who": "caller"|"assistant", "item_id": "item_u1",
//                     "text": "...", "response_id": "resp_1",
//                     "previous_item_id": "item_x"|null}}
//                                         caller: conversation.item.input_
//                                         audio_transcription.completed
//                                         {item_id, content_index, transcript};
//                                         assistant: response.output_audio_
//                                         transcript.done {item_id,
//                                         response_id, output_index,
//                                         content_index, transcript}; with
//                                         a previous_item_id key (even null),
//                                         first conversation.item.added
//                                         {previous_item_id, item} for it
//     {"item_added": {"id": "item_u1", "previous_item_id": null,
//                     "role": "user"|"assistant"}}
//                                         conversation.item.added alone
//     {"pause": ms | true}                stop reading this connection's
//                                         socket (its kernel buffers, then
//                                         the module's, fill up); resumed
//                                         after ms, or, with true, by a
//                                         "resume" or SIGUSR2
//     {"resume": true}                    read again (this connection, or
//                                         with "conn": N another one)
//   It is logged as {"ev":"ctl","conn":N,"actions":[...]} (besides the
//   "message" line of the append itself).  Pauses are logged as
//   {"ev":"paused","conn":N} and {"ev":"resumed","conn":N,"by":"timer"|
//   "ctl"|"signal"}; SIGUSR2 resumes every paused connection.  The "ready"
//   line carries this server's "pid" for that.
//
// - What the WebSocket parsers saw: the `ws` package's "close" (code, as
//   ws reports it: 1006 when no close frame came) and "error" events
//   ({"ev":"error","conn":N,"error":message,"code":"WS_ERR_..."}, e.g.
//   "Invalid WebSocket frame: ..."), and, when the TLS connection ends,
//   what a frame parser of its own saw on the wire (bytes after TLS):
//   {"ev":"wire","conn":N,"bytes":B,"frames":F (whole frames),
//    "close_code":C (of the first close frame, null if none),
//    "after_close":B (bytes after that close frame),
//    "partial":B (bytes of a last frame the connection ended inside),
//    "bad":"..." (a header a client may not send: RSV bits, an unknown
//    opcode, no mask, a fragmented or long control frame; null if none)}.
//   A close frame written inside a frame that was cut short shows as
//   "partial" with no close_code, or as "bad".
//
// - quiet=N in the query: appends whose audio is longer than N characters
//   are only counted (floods: megabytes of them are read in a few
//   milliseconds), {"ev":"quieted","conn":N,"count":C} before the close.

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

// A frame parser of the bytes a client sent (after TLS), independent of
// the `ws` package: how the stream is framed, and the first close frame.
function wireTracker() {
  const st = { bytes: 0, frames: 0, close_code: null, after_close: 0,
               partial: 0, bad: null };
  let buf = Buffer.alloc(0);
  const header = (b) => {      // [header length, payload length] or null
    if (b.length < 2) return null;
    let len = b[1] & 0x7f;
    let hl = 2;
    if (len === 126) {
      if (b.length < 4) return null;
      len = b.readUInt16BE(2);
      hl = 4;
    } else if (len === 127) {
      if (b.length < 10) return null;
      len = Number(b.readBigUInt64BE(2));
      hl = 10;
    }
    return [hl + ((b[1] & 0x80) ? 4 : 0), len];
  };
  st.feed = (chunk) => {
    st.bytes += chunk.length;
    if (st.close_code !== null || st.bad) {
      st.after_close += st.close_code !== null ? chunk.length : 0;
      return;
    }
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      const h = header(buf);
      if (!h || buf.length < h[0] + h[1]) break;
      const op = buf[0] & 0x0f;
      if (buf[0] & 0x70) st.bad = 'RSV bits set';
      else if (![0, 1, 2, 8, 9, 10].includes(op)) st.bad = `opcode ${op}`;
      else if (!(buf[1] & 0x80)) st.bad = 'unmasked frame';
      else if (op >= 8 && (!(buf[0] & 0x80) || h[1] > 125)) {
        st.bad = 'bad control frame';
      }
      if (st.bad) {
        buf = Buffer.alloc(0);
        return;
      }
      st.frames++;
      const frame = buf.subarray(0, h[0] + h[1]);
      buf = buf.subarray(h[0] + h[1]);
      if (op === 8) {
        const mask = frame.subarray(h[0] - 4, h[0]);
        const p = Buffer.from(frame.subarray(h[0]));
        for (let i = 0; i < p.length; i++) p[i] ^= mask[i & 3];
        st.close_code = p.length >= 2 ? p.readUInt16BE(0) : 1005;
        st.after_close = buf.length;
        buf = Buffer.alloc(0);
        return;
      }
    }
  };
  st.summary = () => ({ bytes: st.bytes, frames: st.frames,
                        close_code: st.close_code,
                        after_close: st.after_close, partial: buf.length,
                        bad: st.bad });
  return st;
}

// Paused sockets by connection number (the "pause" action).
const paused = new Map();

function resumeConn(conn, by) {
  const p = paused.get(conn);
  if (!p) return;
  paused.delete(conn);
  clearTimeout(p.timer);
  p.socket.resume();
  log({ ev: 'resumed', conn, by });
}

process.on('SIGUSR2', () => {
  for (const conn of [...paused.keys()]) resumeConn(conn, 'signal');
});

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
    } else if (a.tool_call) {
      await toolCall(ctx, a.tool_call);
    } else if (a.transcript) {
      transcript(ctx, a.transcript);
    } else if (a.item_added) {
      itemAdded(ctx, a.item_added);
    } else if (a.close !== undefined) {
      ws.close(a.close, a.reason || '');
    } else if (a.terminate) {
      ws.terminate();
    } else if (a.pause !== undefined) {
      if (!paused.has(ctx.conn)) {
        ctx.socket.pause();
        paused.set(ctx.conn, { socket: ctx.socket, timer: null });
        log({ ev: 'paused', conn: ctx.conn });
      }
      if (typeof a.pause === 'number' && a.pause > 0) {
        const p = paused.get(ctx.conn);
        clearTimeout(p.timer);
        p.timer = setTimeout(() => resumeConn(ctx.conn, 'timer'), a.pause);
      }
    } else if (a.resume !== undefined) {
      resumeConn(a.conn === undefined ? ctx.conn : +a.conn, 'ctl');
    }
  }
}

// --- function calls and transcripts (ctl actions tool_call, transcript,
// item_added), as the Realtime API (GA) sends them -----------------------

let evSeq = 0;
function evId() {
  return 'evt_fk' + (++evSeq);
}

// conversation.item.added: an item joined the conversation after another
function itemAdded(ctx, o) {
  const role = o.role || 'user';
  ctx.send({
    type: 'conversation.item.added', event_id: evId(),
    previous_item_id: o.previous_item_id === undefined
      ? null : o.previous_item_id,
    item: { id: o.id, type: 'message', object: 'realtime.item',
            status: 'completed', role,
            content: [role === 'user'
              ? { type: 'input_audio', transcript: null }
              : { type: 'output_audio', transcript: null }] },
  });
}

function transcript(ctx, o) {
  if (o.previous_item_id !== undefined) {
    itemAdded(ctx, { id: o.item_id, previous_item_id: o.previous_item_id,
                     role: o.who === 'assistant' ? 'assistant' : 'user' });
  }
  if (o.who === 'assistant') {
    ctx.send({ type: 'response.output_audio_transcript.done',
               event_id: evId(), response_id: o.response_id || 'resp_1',
               item_id: o.item_id, output_index: 0, content_index: 0,
               transcript: o.text });
  } else {
    ctx.send({ type: 'conversation.item.input_audio_transcription.completed',
               event_id: evId(), item_id: o.item_id, content_index: 0,
               transcript: o.text,
               usage: { type: 'duration', seconds: 1 } });
  }
}

// One response that calls a function, maybe after some audio.
async function toolCall(ctx, o) {
  const status = o.status || 'completed';
  const respId = o.response_id || 'resp_fc1';
  const name = o.name || 'end_call';
  const args = o.arguments === undefined ? '{}' : o.arguments;
  const callId = o.call_id || 'call_1';
  const fcId = o.item_id || 'item_fc1';
  const itemStatus = status === 'completed' ? 'completed' : 'incomplete';
  const response = (st, output) => ({
    object: 'realtime.response', id: respId, status: st,
    status_details: st === 'cancelled'
      ? { type: 'cancelled', reason: 'turn_detected' }
      : st === 'incomplete'
        ? { type: 'incomplete', reason: 'max_output_tokens' } : null,
    output, conversation_id: 'conv_1', output_modalities: ['audio'],
    max_output_tokens: 'inf',
    audio: { output: { format: { type: 'audio/pcmu' }, voice: 'alloy' } },
    usage: st === 'in_progress' ? null
      : { total_tokens: 60, input_tokens: 40, output_tokens: 20 },
    metadata: null,
  });
  const output = [];
  let previous = o.previous_item_id === undefined ? null
                                                  : o.previous_item_id;

  ctx.send({ type: 'response.created', event_id: evId(),
             response: response('in_progress', []) });

  const ab = o.audio_before;
  if (ab) {
    const msgId = ab.item_id || 'item_msg1';
    const index = output.length;
    const part = { type: 'output_audio', transcript: '' };
    const item = { id: msgId, type: 'message', object: 'realtime.item',
                   status: 'in_progress', role: 'assistant', content: [] };
    const common = { response_id: respId, item_id: msgId,
                     output_index: index, content_index: 0 };
    ctx.send({ type: 'response.output_item.added', event_id: evId(),
               response_id: respId, output_index: index, item });
    ctx.send({ type: 'conversation.item.added', event_id: evId(),
               previous_item_id: previous, item });
    ctx.send(Object.assign({ type: 'response.content_part.added',
                             event_id: evId() }, common, { part }));
    for (let i = 0; i < (ab.n || 1); i++) {
      ctx.send(Object.assign({ type: 'response.output_audio.delta',
                               event_id: evId() }, common, {
        delta: require('crypto').randomBytes(ab.bytes || 160)
          .toString('base64') }));
    }
    ctx.send(Object.assign({ type: 'response.output_audio.done',
                             event_id: evId() }, common));
    ctx.send(Object.assign({ type: 'response.content_part.done',
                             event_id: evId() }, common, { part }));
    const done = Object.assign({}, item, { status: itemStatus,
                                           content: [part] });
    ctx.send({ type: 'response.output_item.done', event_id: evId(),
               response_id: respId, output_index: index, item: done });
    ctx.send({ type: 'conversation.item.done', event_id: evId(),
               previous_item_id: previous, item: done });
    output.push(done);
    previous = msgId;
  }

  const index = output.length;
  const fc = { id: fcId, type: 'function_call', object: 'realtime.item',
               status: 'in_progress', name, call_id: callId, arguments: '' };
  const ids = { response_id: respId, item_id: fcId, output_index: index,
                call_id: callId, name };
  ctx.send({ type: 'response.output_item.added', event_id: evId(),
             response_id: respId, output_index: index, item: fc });
  ctx.send({ type: 'conversation.item.added', event_id: evId(),
             previous_item_id: previous, item: fc });
  const chunks = Math.max(1, o.arg_chunks || 2);
  const size = Math.ceil(args.length / chunks) || 1;
  for (let i = 0; i < args.length; i += size) {
    ctx.send(Object.assign({ type: 'response.function_call_arguments.delta',
                             event_id: evId() }, ids,
                           { delta: args.slice(i, i + size) }));
  }
  ctx.send(Object.assign({ type: 'response.function_call_arguments.done',
                           event_id: evId() }, ids, { arguments: args }));
  const fcDone = Object.assign({}, fc, { status: itemStatus,
                                         arguments: args });
  ctx.send({ type: 'response.output_item.done', event_id: evId(),
             response_id: respId, output_index: index, item: fcDone });
  ctx.send({ type: 'conversation.item.done', event_id: evId(),
             previous_item_id: previous, item: fcDone });
  output.push(fcDone);

  if (o.done_delay_ms) await sleep(+o.done_delay_ms);
  ctx.send({ type: 'response.done', event_id: evId(),
             response: response(status, output) });
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
    const wire = wireTracker();
    // before ws's own listener: ws unmasks payloads in place
    socket.prependListener('data', wire.feed);
    socket.on('close', () => {
      paused.delete(conn);
      log(Object.assign({ ev: 'wire', conn }, wire.summary()));
    });
    const quiet = url.searchParams.get('quiet');   // null: all logged
    let quieted = 0;

    const ctx = {
      conn, url: req.url, query: url.searchParams, headers: req.headers,
      log, socket,
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
      if (quiet !== null && typeof msg.audio === 'string'
          && msg.audio.length > +quiet) {
        quieted++;
      } else {
        log({ ev: 'message', conn, msg });
      }

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
      if (quiet !== null) log({ ev: 'quieted', conn, count: quieted });
      log({ ev: 'close', conn, code, reason: reason.toString() });
    });

    ws.on('error', (e) => log({ ev: 'error', conn, error: e.message,
                                code: e.code || null }));

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

server.listen(+port, '127.0.0.1', () => log({ ev: 'ready', port: +port,
                                                 pid: process.pid }));
