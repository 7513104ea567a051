#!/usr/bin/env node
// The Twilio side of a call, for the ngx_voice tests: the webhook POST, then
// the Media Stream WebSocket as Twilio opens it, with the `ws` package (an
// independent WebSocket implementation, never the module's own codec) and
// signatures from the `twilio` package.
//
//   node t/lib/twilio-call.js SCENARIO.json | -      (- = stdin)
//
// SCENARIO is one call, or {"calls": [call, ...]} run concurrently.  It
// prints one JSON object: the transcript, or {"calls": [transcript, ...]}.
//
// A call:
//   port            nginx's port (required)
//   auth_token      "12345"; public_url "https://voice.example.com"
//   webhook_path    "/incoming-call"
//   call_sid, account_sid, stream_sid, from, to   (random / defaults)
//   token           skip the webhook and use this token
//   stream_url      sign this wss:// URL (default: from the TwiML)
//   sign_host       sign the Stream URL with this host instead
//   signature       send this X-Twilio-Signature; no_signature: send none
//   upgrade_delay_ms  wait between the webhook and the upgrade
//   echo_marks      "auto" (default: echo each mark when it arrives),
//                   "off" (hold them), or N (echo the first N, hold the rest)
//   timeout_ms      default for waits (5000)
//   wait_scale      multiplies every wait's timeout (t/lib/Test/VoiceCall.pm
//                   sets 3 under memcheck); sleeps stay as they are
//   steps           [step, ...], run in order:
//     {"send":"connected"}
//     {"send":"start", "call_sid":.., "stream_sid":.., "media_format":{..},
//      "start": {..fields merged into start..}}
//     {"send":"media", "count":N, "bytes":160, "interval_ms":20,
//      "payload":"<base64>"}       random payloads unless given
//     {"send":"mark", "name":".."}  {"send":"dtmf", "digit":"5"}
//     {"send":"stop"}  {"send":"json", "msg":{..}}  {"send":"raw", "text":".."}
//                                   (in raw text, $STREAM_SID and $CALL_SID
//                                   are replaced by this call's)
//     {"ctl":[actions]}             a media message carrying a command for
//                                   t/lib/fake-openai.js (ctl=1); not audio
//     {"wait":{partial message}, "count":N, "timeout_ms":T}
//                                   until N more received messages (after
//                                   the previous wait's match) match
//     {"echo_marks":"auto"|"off"|N}
//     {"echo_pending":N|"all"}      echo N held marks, oldest first
//     {"sleep":ms}
//     {"close":code, "reason":".." | "reason_b64":".."} close from our
//                                   side (code null: an empty close frame)
//     {"terminate":true}            drop the TCP connection, no close frame
//     {"wait_close":ms}             until the server's close
//   When the steps are done and the socket is still open, the driver closes
//   it with 1000 and waits up to 2 s for the close.
//
//
// The raw engine (engine "raw", or any of the steps or options below that
// need it): the handshake is written by hand on a TCP socket, client frames
// are built by hand (so they can be malformed on purpose), and the server's
// frames are decoded by the `ws` package's own Receiver.  Options:
//   engine          "ws" (default) or "raw"
//   pipeline        [send steps]: their messages go out in the same write()
//                   as the upgrade request
//   auto_pong       false: do not answer the server's pings (default true)
//   keep_payloads   false: received media messages keep payload_len, not
//                   their payload (for floods)
//   reply_close     false: do not answer the server's close frame
// and steps:
//     {"frame":{"opcode":1, "fin":1, "rsv":[1,0,0], "masked":true,
//               "mask_hex":"00000000", "length":N, "payload_b64":"..",
//               "split":N}}      one frame (or, with split, a message in
//                                fragments of N bytes); "length" announces
//                                another payload length than is sent
//     {"bytes_b64":".."}         bytes as they are
//     {"ping":"..", "count":N, "interval_ms":T, "until_close":true}
//     {"pong":".."}
//     {"wait_frame":"pong", "count":N, "timeout_ms":T}   N more control
//                                frames of that type from the server
//     {"chunked":N, "interval_ms":T}   later writes go out N bytes at a
//                                time, T ms apart (0: whole)
//     {"pause":true} {"resume":true}   stop / go on reading the socket
//     {"reset":true}             drop the TCP connection with an RST
// Both engines:
//     {"send":"text","text":".."} {"send":"binary","payload_b64":".."}
//     {"sync":"label", ...}      print {"sync":"label","call":I,...} and
//                                wait for a line {"go":I[,"error":".."]} on
//                                stdin (t/lib/Test/VoiceCall.pm answers)
//     {"await_session":true}     a media message with a fresh payload, then
//                                the sync "await_session" with it as "tag":
//                                the test waits until OpenAI got that audio
//                                (so session.update went out before it)
//   "media" and "ping" steps take "until_close": stop once closed.
//
// SCENARIO can also come as the first line of stdin (argument -); the lines
// after it answer the syncs.
//
// The transcript: {call_sid, stream_sid, token, twiml, webhook_status,
//   upgrade_status, upgrade_body, upgrade_t, engine, sent:[{t, msg, ctl?}],
//   received:[{t, msg} (msg is the parsed JSON, or {"text":..} /
//   {"binary":hex})], frames:[{t, type:"ping"|"pong", payload_b64}],
//   close_frame:{t, code, reason} (raw engine: the server's close frame),
//   close:{t, code, reason, by:"server"|"client", reset (raw engine: the
//   connection was reset)}, syncs:{label: t},
//   errors:[..]}; t is ms since the epoch.  close is when the TCP
//   connection ended; with the raw engine its code is the server's close
//   frame's (1006 if there was none).

'use strict';

const crypto = require('crypto');
const EventEmitter = require('events');
const fs = require('fs');
const http = require('http');
const net = require('net');
const querystring = require('querystring');
const readline = require('readline');
const WebSocket = require('ws');
const twilio = require('twilio');

const { Receiver, Sender } = WebSocket;

const CTL_PREFIX = 'FAKECTL ';
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const OPCODES = { continuation: 0, text: 1, binary: 2, close: 8, ping: 9,
                  pong: 10 };

// --- syncs with the test (stdin lines {"go":I}) ------------------------------

const goWaiters = {};     // call index -> [resolve, ...]
const goEarly = {};       // call index -> [reply, ...] that came first
let stdinLines = null;

function onStdinLine(line) {
  if (!line.trim()) return;
  let m;
  try {
    m = JSON.parse(line);
  } catch (e) {
    return;
  }
  const i = m.go;
  if (goWaiters[i] && goWaiters[i].length) {
    goWaiters[i].shift()(m);
  } else {
    (goEarly[i] = goEarly[i] || []).push(m);
  }
}

function syncWith(index, what) {
  process.stdout.write(JSON.stringify(Object.assign({ call: index }, what))
                       + '\n');
  return new Promise((resolve) => {
    if (goEarly[index] && goEarly[index].length) {
      resolve(goEarly[index].shift());
    } else if (stdinLines && stdinLines.closed) {
      resolve({ go: index, error: 'no answer: stdin is closed' });
    } else {
      (goWaiters[index] = goWaiters[index] || []).push(resolve);
    }
  });
}

// --- the raw engine ------------------------------------------------------------

// One frame, as bytes: anything RFC 6455 allows is built by ws's Sender;
// what it does not (RSV2/RSV3, no mask, a chosen mask or length) by hand.
function encodeFrame(f) {
  const payload = f.payload || Buffer.alloc(0);
  const opcode = typeof f.opcode === 'string' ? OPCODES[f.opcode] : f.opcode;
  const fin = f.fin === undefined ? true : !!f.fin;
  const rsv = f.rsv || [0, 0, 0];
  const masked = f.masked === undefined ? true : !!f.masked;
  if (masked && !rsv[1] && !rsv[2] && f.length === undefined
      && f.mask_hex === undefined) {
    return Buffer.concat(Sender.frame(Buffer.from(payload), {
      fin, opcode, mask: true, readOnly: false, rsv1: !!rsv[0],
    }));
  }
  const len = f.length === undefined ? payload.length : f.length;
  const head = [(fin ? 0x80 : 0) | (rsv[0] ? 0x40 : 0) | (rsv[1] ? 0x20 : 0)
                | (rsv[2] ? 0x10 : 0) | (opcode & 0x0f)];
  let ext = Buffer.alloc(0);
  if (len < 126) {
    head.push((masked ? 0x80 : 0) | len);
  } else if (len < 65536) {
    head.push((masked ? 0x80 : 0) | 126);
    ext = Buffer.alloc(2);
    ext.writeUInt16BE(len);
  } else {
    head.push((masked ? 0x80 : 0) | 127);
    ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(BigInt(len));
  }
  let body = Buffer.from(payload);
  let mask = Buffer.alloc(0);
  if (masked) {
    mask = f.mask_hex !== undefined ? Buffer.from(f.mask_hex, 'hex')
                                    : crypto.randomBytes(4);
    body = Buffer.from(body.map((b, i) => b ^ mask[i % 4]));
  }
  return Buffer.concat([Buffer.from(head), ext, mask, body]);
}

// A WebSocket client that does the handshake and writes frames itself; the
// server's frames are decoded by ws's Receiver.  Emits 'message' (data,
// isBinary), 'ping', 'pong', 'close-frame' (code, reason), 'close'.
class RawClient extends EventEmitter {
  constructor() {
    super();
    this.closeSent = false;
    this.closeReceived = null;
    this.ended = false;
    this.destroyed = false;
    this.chunk = 0;
    this.chunkInterval = 0;
    this.writing = Promise.resolve();
  }

  // Resolves {status, headers, body}; 101 = open.
  open(port, path, host, headers, prelude) {
    return new Promise((resolve) => {
      const key = crypto.randomBytes(16).toString('base64');
      const sock = net.connect({ host: '127.0.0.1', port });
      this.sock = sock;
      sock.setNoDelay(true);
      let head = Buffer.alloc(0);
      let done = false;
      const finish = (r) => {
        if (!done) {
          done = true;
          resolve(r);
        }
      };
      sock.on('connect', () => {
        const lines = [`GET ${path} HTTP/1.1`, `Host: ${host}`,
                       'Upgrade: websocket', 'Connection: Upgrade',
                       `Sec-WebSocket-Key: ${key}`,
                       'Sec-WebSocket-Version: 13'];
        Object.keys(headers).forEach((k) => lines.push(`${k}: ${headers[k]}`));
        sock.write(Buffer.concat([Buffer.from(lines.join('\r\n')
                                              + '\r\n\r\n'),
                                  prelude || Buffer.alloc(0)]));
      });
      const onHead = (d) => {
        head = Buffer.concat([head, d]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        const text = head.subarray(0, end).toString('latin1');
        const rest = head.subarray(end + 4);
        const [status, ...hl] = text.split('\r\n');
        const code = +(/^HTTP\/1\.1 (\d{3})/.exec(status) || [0, 0])[1];
        const h = {};
        hl.forEach((l) => {
          const m = /^([^:]+):\s*(.*)$/.exec(l);
          if (m) h[m[1].toLowerCase()] = m[2];
        });
        sock.removeListener('data', onHead);
        if (code !== 101) {
          let body = rest;
          const len = +(h['content-length'] || 0);
          const check = () => {
            if (body.length >= len) {
              sock.destroy();
              finish({ status: code, headers: h,
                       body: body.toString('latin1') });
            }
          };
          sock.on('data', (more) => {
            body = Buffer.concat([body, more]);
            check();
          });
          check();
          return;
        }
        const accept = crypto.createHash('sha1').update(key + WS_GUID)
          .digest('base64');
        if (h['sec-websocket-accept'] !== accept) {
          sock.destroy();
          finish({ status: code, headers: h,
                   error: `Sec-WebSocket-Accept is ${
                     h['sec-websocket-accept']}, not ${accept}` });
          return;
        }
        this.startReceiver(rest);
        finish({ status: 101, headers: h });
      };
      sock.on('data', onHead);
      sock.on('end', () => {
        this.ended = true;
      });
      sock.on('error', (e) => {
        if (!done) finish({ status: 0, error: e.message });
        else this.emit('error', e);
      });
      sock.on('close', () => {
        this.destroyed = true;
        if (!done) finish({ status: 0, error: 'connection closed' });
        else this.emit('close');
      });
    });
  }

  startReceiver(rest) {
    const rx = new Receiver({ isServer: false, maxPayload: 0 });
    this.rx = rx;
    rx.on('message', (data, isBinary) => this.emit('message', data, isBinary));
    rx.on('ping', (data) => {
      this.emit('ping', data);
      if (this.autoPong) this.sendFrame({ opcode: 'pong', payload: data });
    });
    rx.on('pong', (data) => this.emit('pong', data));
    rx.on('conclude', (code, reason) => {
      this.closeReceived = { code, reason: reason.toString() };
      this.emit('close-frame', code, reason.toString());
      if (!this.closeSent && this.replyClose) {
        this.close(code === 1005 ? undefined : code, '');
      }
    });
    rx.on('error', (e) => this.emit('error', e));
    this.sock.on('data', (d) => {
      if (!this.closeReceived) rx.write(d);
    });
    if (rest.length) rx.write(rest);
  }

  canSend() {
    return this.sock && !this.destroyed && this.sock.writable;
  }

  // Writes bytes, in chunks if asked; resolves once written.
  write(buf) {
    const chunk = this.chunk;
    const interval = this.chunkInterval;
    this.writing = this.writing.then(async () => {
      if (!chunk) {
        if (this.canSend()) this.sock.write(buf);
        return;
      }
      for (let i = 0; i < buf.length && this.canSend(); i += chunk) {
        if (i && interval) await sleep(interval);
        this.sock.write(buf.subarray(i, i + chunk));
      }
    });
    return this.writing;
  }

  sendFrame(f) {
    return this.write(encodeFrame(Object.assign({}, f, {
      payload: f.payload === undefined ? undefined : Buffer.from(f.payload),
    })));
  }

  send(text) {
    return this.sendFrame({ opcode: 'text', payload: Buffer.from(text) });
  }

  // who sent the first close frame: "client" (us) or "server"
  markCloseSent() {
    if (!this.closeSent) {
      this.closeBy = this.closeReceived ? 'server' : 'client';
    }
    this.closeSent = true;
  }

  close(code, reason) {
    this.markCloseSent();
    let payload = Buffer.alloc(0);
    if (code !== undefined) {
      payload = Buffer.alloc(2);
      payload.writeUInt16BE(code);
      payload = Buffer.concat([payload, Buffer.from(reason || '')]);
    }
    return this.sendFrame({ opcode: 'close', payload });
  }

  terminate() {
    if (this.sock) this.sock.destroy();
  }

  reset() {
    if (this.sock) this.sock.resetAndDestroy();
  }
}

function hex(n) {
  return crypto.randomBytes(n).toString('hex');
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Does `msg` contain everything in `pattern` (deeply)?
function matches(msg, pattern) {
  if (pattern === null || typeof pattern !== 'object') {
    return msg === pattern;
  }
  if (msg === null || typeof msg !== 'object') return false;
  return Object.keys(pattern).every((k) => matches(msg[k], pattern[k]));
}

function post(port, path, host, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port, path, method: 'POST', agent: false,
      headers: Object.assign({
        Host: host, 'Content-Length': Buffer.byteLength(body),
      }, headers),
    }, (res) => {
      let data = '';
      res.on('data', (d) => { data += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: data }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function runCall(sc, index) {
  const authToken = sc.auth_token || '12345';
  const publicUrl = sc.public_url || 'https://voice.example.com';
  const host = new URL(publicUrl).host;
  const tr = {
    call_sid: sc.call_sid || 'CA' + hex(16),
    account_sid: sc.account_sid || 'AC' + hex(16),
    stream_sid: sc.stream_sid || 'MZ' + hex(16),
    sent: [], received: [], frames: [], syncs: {}, errors: [],
  };
  // waits are upper bounds; wait_scale stretches them (under memcheck)
  const scale = sc.wait_scale || 1;
  const defTimeout = (sc.timeout_ms || 5000) * scale;
  let seq = 0;
  let chunk = 0;
  let ts = 0;

  // 1. the webhook
  let token = sc.token;
  let streamUrl = sc.stream_url;
  if (!token) {
    const params = {
      CallSid: tr.call_sid, AccountSid: tr.account_sid,
      From: sc.from || '+15551234567', To: sc.to || '+15557654321',
      CallStatus: 'ringing', Direction: 'inbound',
    };
    const path = sc.webhook_path || '/incoming-call';
    const sig = twilio.getExpectedTwilioSignature(authToken, publicUrl + path,
                                                  params);
    const res = await post(sc.port, path, host, {
      'Content-Type': 'application/x-www-form-urlencoded',
      'X-Twilio-Signature': sig,
    }, querystring.stringify(params));
    tr.webhook_status = res.status;
    tr.twiml = res.body;
    const m = /<Stream url="([^"]*)"/.exec(res.body);
    if (res.status !== 200 || !m) {
      tr.errors.push(`webhook: ${res.status} ${res.body}`);
      return tr;
    }
    streamUrl = streamUrl || m[1].replace(/&amp;/g, '&');
    token = m[1].split('/').pop();
  }
  tr.token = token;
  streamUrl = streamUrl || `wss://${host}/media-stream/${token}`;
  const signUrl = sc.sign_host
    ? streamUrl.replace(/^wss:\/\/[^/]*/, `wss://${sc.sign_host}`)
    : streamUrl;

  if (sc.upgrade_delay_ms) await sleep(sc.upgrade_delay_ms);

  // 2. the Media Stream, as Twilio opens it
  const headers = {};
  if (sc.signature !== undefined) {
    headers['X-Twilio-Signature'] = sc.signature;
  } else if (!sc.no_signature) {
    headers['X-Twilio-Signature'] =
      twilio.getExpectedTwilioSignature(authToken, signUrl, {});
  }
  const path = new URL(streamUrl).pathname;
  const raw = sc.engine === 'raw' || (sc.engine === undefined && needsRaw(sc));
  tr.engine = raw ? 'raw' : 'ws';

  let waiters = [];
  const notify = () => {
    const w = waiters;
    waiters = [];
    w.forEach((f) => f());
  };
  let closed = null;
  const held = [];
  let echo = sc.echo_marks === undefined ? 'auto' : sc.echo_marks;
  let echoed = 0;
  let ws;

  const canSend = () => (raw ? ws.canSend() && !ws.closeSent
                             : ws.readyState === WebSocket.OPEN);

  // A message as Twilio's JSON text, recorded in tr.sent; `now` sends it.
  const record = (msg, extra) => {
    const text = typeof msg === 'string' ? msg : JSON.stringify(msg);
    tr.sent.push(Object.assign({ t: Date.now(),
                                 msg: typeof msg === 'string' ? { raw: msg }
                                                              : msg },
                               extra || {}));
    return text;
  };

  const sendMsg = (msg, extra) => {
    if (!canSend()) {
      tr.errors.push(`send on a closed socket: ${JSON.stringify(msg)
        .slice(0, 200)}`);
      return undefined;
    }
    return ws.send(record(msg, extra));
  };

  const echoMark = (name) => {
    seq++;
    echoed++;
    sendMsg({ event: 'mark', sequenceNumber: String(seq),
              streamSid: tr.stream_sid, mark: { name } });
  };

  // The messages of the "send" steps (also for the pipeline).
  const messagesOf = (st) => {
    const out = [];
    if (st.send === 'connected') {
      out.push([{ event: 'connected', protocol: 'Call', version: '1.0.0' }]);
    } else if (st.send === 'start') {
      seq++;
      const sid = st.stream_sid || tr.stream_sid;
      const start = Object.assign({
        accountSid: tr.account_sid, streamSid: sid,
        callSid: st.call_sid || tr.call_sid, tracks: ['inbound'],
        mediaFormat: st.media_format
          || { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
        customParameters: {},
      }, st.start || {});
      out.push([{ event: 'start', sequenceNumber: String(seq), start,
                  streamSid: sid }]);
    } else if (st.send === 'media') {
      for (let k = 0; k < (st.count || 1); k++) out.push([mediaMsg(st)]);
    } else if (st.send === 'raw') {
      out.push([st.text.replace(/\$STREAM_SID/g, tr.stream_sid)
                       .replace(/\$CALL_SID/g, tr.call_sid)]);
    } else if (st.send === 'json') {
      out.push([st.msg]);
    }
    return out;
  };

  const mediaMsg = (st, payload) => {
    seq++;
    chunk++;
    const m = { event: 'media', sequenceNumber: String(seq),
                media: { track: 'inbound', chunk: String(chunk),
                         timestamp: String(ts),
                         payload: payload || st.payload
                           || crypto.randomBytes(st.bytes || 160)
                             .toString('base64') },
                streamSid: tr.stream_sid };
    ts += 20;
    return m;
  };

  const onMessage = (data, isBinary) => {
    let msg;
    if (isBinary) {
      msg = { binary: Buffer.from(data).toString('hex') };
    } else {
      try {
        msg = JSON.parse(data.toString());
      } catch (e) {
        msg = { text: data.toString() };
      }
    }
    if (sc.keep_payloads === false && msg && msg.media
        && typeof msg.media.payload === 'string') {
      // (megabytes of audio need not travel back in the transcript)
      msg.media.payload_len = msg.media.payload.length;
      delete msg.media.payload;
    }
    tr.received.push({ t: Date.now(), msg });
    if (msg && msg.event === 'mark' && msg.mark) {
      if (echo === 'auto' || (typeof echo === 'number' && echoed < echo)) {
        echoMark(msg.mark.name);
      } else {
        held.push(msg.mark.name);
      }
    }
    notify();
  };

  const onControl = (type) => (data) => {
    tr.frames.push({ t: Date.now(), type,
                     payload_b64: Buffer.from(data).toString('base64') });
    notify();
  };

  let opened;
  if (raw) {
    ws = new RawClient();
    ws.autoPong = sc.auto_pong === undefined ? true : !!sc.auto_pong;
    ws.replyClose = sc.reply_close === undefined ? true : !!sc.reply_close;
    const pre = [];
    for (const st of sc.pipeline || []) {
      messagesOf(st).forEach(([m]) => {
        pre.push(encodeFrame({ opcode: 'text',
                               payload: Buffer.from(record(m)) }));
      });
    }
    const r = await ws.open(sc.port, path, `127.0.0.1:${sc.port}`, headers,
                            Buffer.concat(pre));
    tr.upgrade_status = r.status || undefined;
    if (r.status !== 101) {
      tr.upgrade_body = r.body;
      if (r.error) tr.errors.push(`upgrade: ${r.error}`);
      opened = false;
    } else {
      opened = true;
      tr.upgrade_t = Date.now();
      ws.on('message', onMessage);
      ws.on('ping', onControl('ping'));
      ws.on('pong', onControl('pong'));
      ws.on('close-frame', (code, reason) => {
        tr.close_frame = { t: Date.now(), code, reason };
        notify();
      });
      let reset = false;
      ws.on('error', (e) => {
        // a connection reset is how it ended (see close.reset), and a
        // write after it a consequence
        if (e.code === 'ECONNRESET' || e.code === 'EPIPE') reset = true;
        else tr.errors.push(`ws: ${e.message}`);
      });
      ws.on('close', () => {
        const cf = tr.close_frame;
        closed = { t: Date.now(), code: cf ? cf.code : 1006,
                   reason: cf ? cf.reason : '',
                   by: ws.closeBy || (tr.closing ? 'client' : 'server') };
        if (reset) closed.reset = true;
        tr.close = closed;
        notify();
      });
    }
  } else {
    ws = new WebSocket(`ws://127.0.0.1:${sc.port}${path}`,
                       { headers, perMessageDeflate: false,
                         autoPong: sc.auto_pong === undefined
                           ? true : !!sc.auto_pong });
    opened = await new Promise((resolve) => {
      ws.on('open', () => {
        tr.upgrade_status = 101;
        tr.upgrade_t = Date.now();
        resolve(true);
      });
      ws.on('unexpected-response', (req, res) => {
        tr.upgrade_status = res.statusCode;
        const sock = res.socket || req.socket;
        let body = '';
        res.on('data', (d) => { body += d; });
        res.on('end', () => {
          tr.upgrade_body = body;
          // ws leaves a refused handshake's connection to us
          if (sock) sock.destroy();
          req.destroy();
          resolve(false);
        });
      });
      ws.on('error', (e) => {
        if (tr.upgrade_status === undefined) {
          tr.errors.push(`upgrade: ${e.message}`);
          resolve(false);
        } else {
          tr.errors.push(`ws: ${e.message}`);
        }
      });
    });
    if (opened) {
      ws.on('message', onMessage);
      ws.on('ping', onControl('ping'));
      ws.on('pong', onControl('pong'));
      ws.on('close', (code, reason) => {
        closed = { t: Date.now(), code, reason: reason.toString(),
                   by: tr.closing ? 'client' : 'server' };
        tr.close = closed;
        notify();
      });
    }
  }
  if (!opened) return tr;

  const waitFor = (cond, ms) => new Promise((resolve) => {
    const deadline = Date.now() + ms;
    const check = () => {
      if (cond()) return resolve(true);
      if (Date.now() >= deadline) return resolve(false);
      waiters.push(check);
      setTimeout(check, Math.min(50, deadline - Date.now()));
    };
    check();
  });

  const needRaw = (st, fail) => {
    if (raw) return true;
    fail('needs the raw engine ("engine": "raw")');
    return false;
  };

  let cursor = 0;     // received messages before it are consumed by waits

  for (let i = 0; i < (sc.steps || []).length; i++) {
    const st = sc.steps[i];
    let stop = false;
    const fail = (why) => {
      tr.errors.push(`step ${i} ${JSON.stringify(st).slice(0, 200)}: ${why}`);
      stop = true;
    };

    if (st.send === 'media') {
      const n = st.count || 1;
      for (let k = 0; k < n; k++) {
        if (k && st.interval_ms) await sleep(st.interval_ms);
        if (st.until_close && (closed || !canSend())) break;
        if (!canSend()) {
          sendMsg({ event: 'media' });    // records the error
          continue;
        }
        await ws.send(record(mediaMsg(st)));
      }
    } else if (['connected', 'start', 'raw', 'json'].includes(st.send)) {
      for (const [m] of messagesOf(st)) await sendMsg(m);
    } else if (st.send === 'text') {
      await sendMsg(st.text);
    } else if (st.send === 'binary') {
      if (!canSend()) {
        sendMsg({ binary: st.payload_b64 });
      } else {
        const b = Buffer.from(st.payload_b64 || '', 'base64');
        tr.sent.push({ t: Date.now(), msg: { binary: b.toString('hex') } });
        if (raw) await ws.sendFrame({ opcode: 'binary', payload: b });
        else ws.send(b);
      }
    } else if (st.ctl) {
      seq++;
      chunk++;
      const payload = Buffer.from(CTL_PREFIX + JSON.stringify(st.ctl))
        .toString('base64');
      await sendMsg({ event: 'media', sequenceNumber: String(seq),
                      media: { track: 'inbound', chunk: String(chunk),
                               timestamp: String(ts), payload },
                      streamSid: tr.stream_sid }, { ctl: st.ctl });
    } else if (st.send === 'mark') {
      seq++;
      await sendMsg({ event: 'mark', sequenceNumber: String(seq),
                      streamSid: tr.stream_sid, mark: { name: st.name } });
    } else if (st.send === 'dtmf') {
      seq++;
      await sendMsg({ event: 'dtmf', streamSid: tr.stream_sid,
                      sequenceNumber: String(seq),
                      dtmf: { track: 'inbound_track', digit: st.digit } });
    } else if (st.send === 'stop') {
      seq++;
      await sendMsg({ event: 'stop', sequenceNumber: String(seq),
                      stop: { accountSid: tr.account_sid,
                              callSid: tr.call_sid },
                      streamSid: tr.stream_sid });
    } else if (st.await_session) {
      const payload = crypto.randomBytes(160).toString('base64');
      if (canSend()) {
        await ws.send(record(mediaMsg(st, payload)));
      } else {
        fail('closed before the session');
      }
      if (!stop) {
        const r = await syncWith(index, { sync: 'await_session',
                                          tag: payload });
        tr.syncs.await_session = Date.now();
        if (r.error) fail(r.error);
      }
    } else if (st.sync !== undefined) {
      const r = await syncWith(index, Object.assign({}, st));
      tr.syncs[st.sync] = Date.now();
      if (r.error) fail(r.error);
    } else if (st.wait) {
      const want = st.count || 1;
      let got = 0;
      const ok = await waitFor(() => {
        while (cursor < tr.received.length && got < want) {
          if (matches(tr.received[cursor].msg, st.wait)) got++;
          cursor++;
        }
        return got >= want || closed;
      }, st.timeout_ms ? st.timeout_ms * scale : defTimeout);
      if (!ok || got < want) {
        fail(`got ${got} of ${want} matching messages`
             + (closed ? ` (closed ${closed.code})` : ' (timeout)'));
      }
    } else if (st.wait_frame !== undefined) {
      const want = st.count || 1;
      const seen = () => tr.frames.filter((f) => f.type === st.wait_frame)
        .length;
      const base = seen();
      if (!await waitFor(() => seen() - base >= want || closed,
                         st.timeout_ms ? st.timeout_ms * scale : defTimeout)
          || seen() - base < want) {
        fail(`got ${seen() - base} of ${want} ${st.wait_frame} frames`);
      }
    } else if (st.echo_marks !== undefined) {
      echo = st.echo_marks;
      echoed = 0;
    } else if (st.echo_pending !== undefined) {
      const n = st.echo_pending === 'all' ? held.length
                                          : Math.min(st.echo_pending,
                                                     held.length);
      held.splice(0, n).forEach(echoMark);
    } else if (st.sleep !== undefined) {
      await sleep(st.sleep);
    } else if (st.close !== undefined) {
      tr.closing = true;
      const reason = st.reason_b64 !== undefined
        ? Buffer.from(st.reason_b64, 'base64') : st.reason || '';
      tr.sent.push({ t: Date.now(), close: st.close,
                     reason: reason.toString() });
      if (raw) await ws.close(st.close === null ? undefined : st.close, reason);
      else ws.close(st.close === null ? undefined : st.close, reason);
    } else if (st.terminate) {
      tr.closing = true;
      if (raw) await ws.writing;
      ws.terminate();
    } else if (st.wait_close !== undefined) {
      if (!await waitFor(() => closed,
                         st.wait_close ? st.wait_close * scale : defTimeout)) {
        fail('no close (timeout)');
      }
    } else if (st.frame) {
      if (needRaw(st, fail)) {
        const f = st.frame;
        const payload = Buffer.from(f.payload_b64 || '', 'base64');
        // (a close frame sent this way is bytes only: the engine still
        // answers the server's close, as a client that broke the protocol)
        tr.sent.push({ t: Date.now(), frame: f });
        if (f.split) {
          const parts = [];
          for (let k = 0; k < payload.length; k += f.split) {
            parts.push(payload.subarray(k, k + f.split));
          }
          if (!parts.length) parts.push(payload);
          for (let k = 0; k < parts.length; k++) {
            await ws.sendFrame(Object.assign({}, f, {
              opcode: k ? 0 : f.opcode, payload: parts[k],
              fin: k === parts.length - 1,
            }));
          }
        } else {
          await ws.sendFrame(Object.assign({}, f, { payload }));
        }
      }
    } else if (st.bytes_b64 !== undefined) {
      if (needRaw(st, fail)) {
        tr.sent.push({ t: Date.now(), bytes_b64: st.bytes_b64 });
        await ws.write(Buffer.from(st.bytes_b64, 'base64'));
      }
    } else if (st.ping !== undefined) {
      const n = st.count || 1;
      for (let k = 0; k < n; k++) {
        if (k && st.interval_ms) await sleep(st.interval_ms);
        if (st.until_close && closed) break;
        tr.sent.push({ t: Date.now(), ping: st.ping });
        if (raw) await ws.sendFrame({ opcode: 'ping', payload: st.ping });
        else ws.ping(st.ping);
      }
    } else if (st.pong !== undefined) {
      tr.sent.push({ t: Date.now(), pong: st.pong });
      if (raw) await ws.sendFrame({ opcode: 'pong', payload: st.pong });
      else ws.pong(st.pong);
    } else if (st.chunked !== undefined) {
      if (needRaw(st, fail)) {
        ws.chunk = st.chunked;
        ws.chunkInterval = st.interval_ms || 0;
      }
    } else if (st.pause) {
      if (needRaw(st, fail)) ws.sock.pause();
    } else if (st.resume) {
      if (needRaw(st, fail)) ws.sock.resume();
    } else if (st.reset) {
      if (needRaw(st, fail)) {
        tr.closing = true;
        await ws.writing;
        ws.reset();
      }
    } else {
      fail('unknown step');
    }
    if (stop) break;
  }

  if (!closed) {
    if (canSend()) {
      tr.closing = true;
      ws.close(1000, 'driver done');
    }
    if (!await waitFor(() => closed, 2000 * scale)) {
      ws.terminate();
      await waitFor(() => closed, 500);
    }
  }
  delete tr.closing;
  return tr;
}

// Steps and options only the raw engine has.
function needsRaw(sc) {
  if (sc.pipeline || sc.reply_close === false) return true;
  return (sc.steps || []).some((st) => st.frame || st.bytes_b64 !== undefined
                               || st.chunked !== undefined || st.pause
                               || st.resume || st.reset);
}

async function main() {
  const arg = process.argv[2] || '-';
  let text;
  if (arg === '-') {
    // the scenario is the first line; the lines after it answer syncs
    stdinLines = readline.createInterface({ input: process.stdin,
                                            terminal: false });
    text = await new Promise((resolve) => {
      let first = true;
      stdinLines.on('line', (line) => {
        if (first) {
          first = false;
          resolve(line);
        } else {
          onStdinLine(line);
        }
      });
      stdinLines.on('close', () => {
        stdinLines.closed = true;
        if (first) resolve('');
        Object.keys(goWaiters).forEach((i) => {
          goWaiters[i].splice(0).forEach((f) => f({
            go: +i, error: 'no answer: stdin is closed' }));
        });
      });
    });
  } else {
    text = fs.readFileSync(arg, 'utf8');
  }
  const sc = JSON.parse(text);
  let out;
  if (Array.isArray(sc.calls)) {
    const calls = await Promise.all(sc.calls.map((c, i) => runCall(c, i)
      .catch((e) => ({ errors: [`driver: ${e.stack}`] }))));
    out = JSON.stringify({ calls });
  } else {
    out = JSON.stringify(await runCall(sc, 0));
  }
  // stdin may still be open: exit once the transcript is written
  process.stdout.write(out + '\n', () => process.exit(0));
}

main().catch((e) => {
  process.stderr.write(`twilio-call.js: ${e.stack}\n`);
  process.exit(1);
});
