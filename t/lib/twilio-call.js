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
//     {"close":code, "reason":".."} close from our side
//     {"terminate":true}            drop the TCP connection, no close frame
//     {"wait_close":ms}             until the server's close
//   When the steps are done and the socket is still open, the driver closes
//   it with 1000 and waits up to 2 s for the close.
//
// The transcript: {call_sid, stream_sid, token, twiml, webhook_status,
//   upgrade_status, upgrade_body, sent:[{t, msg, ctl?}], received:[{t, msg}
//   (msg is the parsed JSON, or {"text":..} / {"binary":hex})],
//   close:{t, code, reason, by:"server"|"client"}, errors:[..]}; t is ms
//   since the epoch.

'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const querystring = require('querystring');
const WebSocket = require('ws');
const twilio = require('twilio');

const CTL_PREFIX = 'FAKECTL ';

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

async function runCall(sc) {
  const authToken = sc.auth_token || '12345';
  const publicUrl = sc.public_url || 'https://voice.example.com';
  const host = new URL(publicUrl).host;
  const tr = {
    call_sid: sc.call_sid || 'CA' + hex(16),
    account_sid: sc.account_sid || 'AC' + hex(16),
    stream_sid: sc.stream_sid || 'MZ' + hex(16),
    sent: [], received: [], errors: [],
  };
  const defTimeout = sc.timeout_ms || 5000;
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
  const ws = new WebSocket(`ws://127.0.0.1:${sc.port}${path}`,
                           { headers, perMessageDeflate: false });

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

  const sendMsg = (msg, extra) => {
    if (ws.readyState !== WebSocket.OPEN) {
      tr.errors.push(`send on a closed socket: ${JSON.stringify(msg)
        .slice(0, 200)}`);
      return;
    }
    const text = typeof msg === 'string' ? msg : JSON.stringify(msg);
    tr.sent.push(Object.assign({ t: Date.now(),
                                 msg: typeof msg === 'string' ? { raw: msg }
                                                              : msg },
                               extra || {}));
    ws.send(text);
  };

  const echoMark = (name) => {
    seq++;
    echoed++;
    sendMsg({ event: 'mark', sequenceNumber: String(seq),
              streamSid: tr.stream_sid, mark: { name } });
  };

  const opened = await new Promise((resolve) => {
    ws.on('open', () => {
      tr.upgrade_status = 101;
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
  if (!opened) return tr;

  ws.on('message', (data, isBinary) => {
    let msg;
    if (isBinary) {
      msg = { binary: data.toString('hex') };
    } else {
      try {
        msg = JSON.parse(data.toString());
      } catch (e) {
        msg = { text: data.toString() };
      }
    }
    tr.received.push({ t: Date.now(), msg });
    if (msg.event === 'mark' && msg.mark) {
      if (echo === 'auto' || (typeof echo === 'number' && echoed < echo)) {
        echoMark(msg.mark.name);
      } else {
        held.push(msg.mark.name);
      }
    }
    notify();
  });
  ws.on('close', (code, reason) => {
    closed = { t: Date.now(), code, reason: reason.toString(),
               by: tr.closing ? 'client' : 'server' };
    tr.close = closed;
    notify();
  });

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

  let cursor = 0;     // received messages before it are consumed by waits

  for (let i = 0; i < (sc.steps || []).length; i++) {
    const st = sc.steps[i];
    const fail = (why) => {
      tr.errors.push(`step ${i} ${JSON.stringify(st).slice(0, 200)}: ${why}`);
    };

    if (st.send === 'connected') {
      sendMsg({ event: 'connected', protocol: 'Call', version: '1.0.0' });
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
      sendMsg({ event: 'start', sequenceNumber: String(seq), start,
                streamSid: sid });
    } else if (st.send === 'media') {
      const n = st.count || 1;
      for (let k = 0; k < n; k++) {
        if (k && st.interval_ms) await sleep(st.interval_ms);
        seq++;
        chunk++;
        const payload = st.payload
          || crypto.randomBytes(st.bytes || 160).toString('base64');
        sendMsg({ event: 'media', sequenceNumber: String(seq),
                  media: { track: 'inbound', chunk: String(chunk),
                           timestamp: String(ts), payload },
                  streamSid: tr.stream_sid });
        ts += 20;
      }
    } else if (st.ctl) {
      seq++;
      chunk++;
      const payload = Buffer.from(CTL_PREFIX + JSON.stringify(st.ctl))
        .toString('base64');
      sendMsg({ event: 'media', sequenceNumber: String(seq),
                media: { track: 'inbound', chunk: String(chunk),
                         timestamp: String(ts), payload },
                streamSid: tr.stream_sid }, { ctl: st.ctl });
    } else if (st.send === 'mark') {
      seq++;
      sendMsg({ event: 'mark', sequenceNumber: String(seq),
                streamSid: tr.stream_sid, mark: { name: st.name } });
    } else if (st.send === 'dtmf') {
      seq++;
      sendMsg({ event: 'dtmf', streamSid: tr.stream_sid,
                sequenceNumber: String(seq),
                dtmf: { track: 'inbound_track', digit: st.digit } });
    } else if (st.send === 'stop') {
      seq++;
      sendMsg({ event: 'stop', sequenceNumber: String(seq),
                stop: { accountSid: tr.account_sid, callSid: tr.call_sid },
                streamSid: tr.stream_sid });
    } else if (st.send === 'json') {
      sendMsg(st.msg);
    } else if (st.send === 'raw') {
      sendMsg(st.text.replace(/\$STREAM_SID/g, tr.stream_sid)
                     .replace(/\$CALL_SID/g, tr.call_sid));
    } else if (st.wait) {
      const want = st.count || 1;
      let got = 0;
      const ok = await waitFor(() => {
        while (cursor < tr.received.length && got < want) {
          if (matches(tr.received[cursor].msg, st.wait)) got++;
          cursor++;
        }
        return got >= want || closed;
      }, st.timeout_ms || defTimeout);
      if (!ok || got < want) {
        fail(`got ${got} of ${want} matching messages`
             + (closed ? ` (closed ${closed.code})` : ' (timeout)'));
        break;
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
      ws.close(st.close, st.reason || '');
    } else if (st.terminate) {
      tr.closing = true;
      ws.terminate();
    } else if (st.wait_close !== undefined) {
      if (!await waitFor(() => closed, st.wait_close || defTimeout)) {
        fail('no close (timeout)');
        break;
      }
    } else {
      fail('unknown step');
      break;
    }
  }

  if (!closed) {
    if (ws.readyState === WebSocket.OPEN) {
      tr.closing = true;
      ws.close(1000, 'driver done');
    }
    if (!await waitFor(() => closed, 2000)) {
      ws.terminate();
      await waitFor(() => closed, 500);
    }
  }
  delete tr.closing;
  return tr;
}

async function main() {
  const arg = process.argv[2] || '-';
  const sc = JSON.parse(fs.readFileSync(arg === '-' ? 0 : arg, 'utf8'));
  if (Array.isArray(sc.calls)) {
    const calls = await Promise.all(sc.calls.map((c) => runCall(c).catch(
      (e) => ({ errors: [`driver: ${e.stack}`] }))));
    process.stdout.write(JSON.stringify({ calls }) + '\n');
  } else {
    process.stdout.write(JSON.stringify(await runCall(sc)) + '\n');
  }
}

main().catch((e) => {
  process.stderr.write(`twilio-call.js: ${e.stack}\n`);
  process.exit(1);
});
