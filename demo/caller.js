// `make demo`: the caller, doing what Twilio does in a call (see
// /work/shared/PROTOCOL.md and t/lib/twilio-call.js, whose ways it
// follows): the signed webhook, the TwiML, the signed WebSocket upgrade to
// the Stream URL, connected and start, then 20 ms μ-law media frames in
// real time, silence when the caller says nothing.  Audio it receives is
// queued and played out at 8 bytes per ms; each mark is echoed when the
// audio before it has played; `clear` drops the queued audio and sends
// back the marks still queued, as Twilio does.  Signatures come from the
// `twilio` package (t/node_modules, NODE_PATH).
//
//   node demo/caller.js CONFIG.json
//
// CONFIG: {"port": nginx's port, "public_url": voice_public_url,
//   "auth_token": "...", "dir": where to write, "say": ["a.ul", "b.ul"],
//   "interrupt_after_ms": 1500, "timeout_ms": 45000}
// The caller says say[0] a second after `start`; once it has heard
// interrupt_after_ms of the reply it says say[1] over it (the barge-in);
// once the next reply has played and a second of silence followed, it
// hangs up (stop, then close 1000).
//
// It writes, in dir: events.jsonl (lines with "t" and "who": "caller"),
// caller-heard.ul (what it played, μ-law, 0xFF where nothing played) and
// caller-heard.json {"start_t": ms since the epoch of its first byte,
// "messages": {"sent", "received", "pings"}: what it counted}.
// Exit status 0 when the call went as described, else 1 (reason on
// stderr).

'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const path = require('path');
const querystring = require('querystring');
const WebSocket = require('ws');
const twilio = require('twilio');

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const DIR = cfg.dir;
const FRAME = 160;
const SILENCE = 0xff;

function event(what, t) {
  fs.appendFileSync(path.join(DIR, 'events.jsonl'), JSON.stringify(
    Object.assign({ t: t || Date.now(), who: 'caller' }, what)) + '\n');
}

function fail(why) {
  event({ ev: 'error', error: why });
  process.stderr.write(`demo caller: ${why}\n`);
  process.exit(1);
}

function hex(n) {
  return crypto.randomBytes(n).toString('hex');
}

function post(port, urlPath, host, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port, path: urlPath, method: 'POST', agent: false,
      headers: Object.assign({ Host: host,
                               'Content-Length': Buffer.byteLength(body) },
                             headers),
    }, (res) => {
      let data = '';
      res.on('data', (d) => { data += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: data }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

// What the caller heard, on the wall clock: byte i played at t0 + i / 8.
class Speaker {
  constructor(t0) {
    this.t0 = t0;
    this.buf = Buffer.alloc(8 * 60000, SILENCE);
    this.pos = 0;                 // next byte to play, on t0's axis
    this.queue = [];              // {audio: Buffer, off} | {mark: name}
    this.played = 0;              // bytes of received audio played
    this.end = 0;
  }

  nowPos() {
    return Math.floor((Date.now() - this.t0) * 8);
  }

  queuedBytes() {
    return this.queue.reduce((n, q) => n + (q.audio
      ? q.audio.length - q.off : 0), 0);
  }

  add(item) {
    if (!this.queue.some((q) => q.audio) && item.audio) {
      // the speaker was idle: this audio starts playing now
      this.pos = Math.max(this.pos, this.nowPos());
    }
    this.queue.push(item);
  }

  // Plays what is due; returns the names of the marks reached.
  run() {
    const marks = [];
    const now = this.nowPos();
    while (this.queue.length) {
      const q = this.queue[0];
      if (q.mark !== undefined) {
        marks.push(q.mark);
        this.queue.shift();
        continue;
      }
      if (this.pos >= now) break;
      const n = Math.min(q.audio.length - q.off, now - this.pos);
      if (this.pos + n > this.buf.length) {
        this.buf = Buffer.concat([this.buf,
                                  Buffer.alloc(this.buf.length, SILENCE)]);
      }
      q.audio.copy(this.buf, this.pos, q.off, q.off + n);
      q.off += n;
      this.pos += n;
      this.played += n;
      this.end = this.pos;
      if (q.off === q.audio.length) this.queue.shift();
    }
    return marks;
  }

  // `clear`: the audio goes, the marks come back
  clear() {
    const dropped = this.queuedBytes();
    const marks = this.queue.filter((q) => q.mark !== undefined)
      .map((q) => q.mark);
    this.queue = [];
    return { dropped, marks };
  }
}

async function main() {
  const authToken = cfg.auth_token;
  const publicUrl = cfg.public_url;
  const host = new URL(publicUrl).host;
  const callSid = 'CA' + hex(16);
  const accountSid = 'AC' + hex(16);
  const streamSid = 'MZ' + hex(16);
  const say = cfg.say.map((f) => fs.readFileSync(f));
  const deadline = Date.now() + (cfg.timeout_ms || 45000);

  // 1. the webhook, signed over the public URL and the form parameters
  const params = {
    CallSid: callSid, AccountSid: accountSid, From: '+15551230001',
    To: '+15559870002', CallStatus: 'ringing', Direction: 'inbound',
    ApiVersion: '2010-04-01',
  };
  const sig = twilio.getExpectedTwilioSignature(
    authToken, publicUrl + '/incoming-call', params);
  const t0 = Date.now();
  event({ ev: 'webhook', call_sid: callSid });
  const res = await post(cfg.port, '/incoming-call', host, {
    'Content-Type': 'application/x-www-form-urlencoded',
    'X-Twilio-Signature': sig,
  }, querystring.stringify(params));
  const m = /<Stream url="(wss:\/\/[^"]*)"/.exec(res.body);
  event({ ev: 'twiml', status: res.status, twiml: res.body,
          stream_url: m ? m[1].replace(/[^/]*$/, '…') : null });
  if (res.status !== 200 || !m) fail(`webhook: ${res.status} ${res.body}`);
  const streamUrl = m[1].replace(/&amp;/g, '&');

  // 2. the Media Stream, signed over the wss:// URL with no parameters
  const speaker = new Speaker(t0);
  const ws = new WebSocket(
    `ws://127.0.0.1:${cfg.port}${new URL(streamUrl).pathname}`,
    { headers: { 'X-Twilio-Signature':
                   twilio.getExpectedTwilioSignature(authToken, streamUrl,
                                                     {}) },
      perMessageDeflate: false });
  let seq = 0;
  let closed = null;
  const count = { sent: 0, received: 0, pings: 0 };
  const send = (msg) => {
    if (ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(msg));
      count.sent++;
    }
  };

  ws.on('upgrade', (r) => event({ ev: 'upgrade', status: r.statusCode }));
  ws.on('unexpected-response', (req, r) => {
    fail(`upgrade: HTTP ${r.statusCode}`);
  });
  ws.on('error', (e) => {
    if (!closed) event({ ev: 'ws_error', error: e.message });
  });
  await new Promise((resolve) => ws.on('open', resolve));

  send({ event: 'connected', protocol: 'Call', version: '1.0.0' });
  send({ event: 'start', sequenceNumber: String(++seq), streamSid,
         start: { accountSid, streamSid, callSid, tracks: ['inbound'],
                  mediaFormat: { encoding: 'audio/x-mulaw',
                                 sampleRate: 8000, channels: 1 },
                  customParameters: {} } });
  event({ ev: 'start_sent', call_sid: callSid, stream_sid: streamSid });

  let heardAny = false;
  let cleared = false;
  let afterClear = 0;             // bytes received after the clear
  let lastAudio = 0;
  let marks = 0;

  ws.on('ping', () => { count.pings++; });
  ws.on('message', (data) => {
    count.received++;
    let msg;
    try {
      msg = JSON.parse(data.toString());
    } catch (e) {
      event({ ev: 'bad_message', text: data.toString().slice(0, 200) });
      return;
    }
    if (msg.event === 'media' && msg.media) {
      const audio = Buffer.from(msg.media.payload, 'base64');
      if (!heardAny) {
        heardAny = true;
        event({ ev: 'first_audio_out', bytes: audio.length });
      }
      if (cleared) {
        if (!afterClear) {
          event({ ev: 'first_audio_after_clear', bytes: audio.length });
        }
        afterClear += audio.length;
      }
      lastAudio = Date.now();
      speaker.add({ audio, off: 0 });
    } else if (msg.event === 'mark' && msg.mark) {
      marks++;
      speaker.add({ mark: msg.mark.name });
    } else if (msg.event === 'clear') {
      const c = speaker.clear();
      cleared = true;
      event({ ev: 'clear', dropped_ms: c.dropped / 8,
              played_ms: speaker.played / 8, marks_returned: c.marks.length });
      c.marks.forEach(echo);
    } else {
      event({ ev: 'twilio_got', msg });
    }
  });

  ws.on('close', (code, reason) => {
    closed = { code, reason: reason.toString() };
    event({ ev: 'ws_close', code, reason: reason.toString() });
  });

  function echo(name) {
    send({ event: 'mark', sequenceNumber: String(++seq), streamSid,
           mark: { name } });
  }

  // 3. the call, on a 20 ms clock: a frame of the microphone out, the
  // speaker played up to now, marks echoed
  const mediaT0 = Date.now();
  let frames = 0;
  let chunk = 0;
  let talking = null;             // {n, audio, off}
  let said = 0;
  let playedAtBargeIn = null;

  // (the event is written with its first frame, at that frame's time)
  const speak = (n) => {
    talking = { n, audio: say[n], off: 0,
                queued_ms: speaker.queuedBytes() / 8 };
  };

  await new Promise((resolve) => {
    const tick = () => {
      if (closed) {
        resolve();
        return;
      }
      if (Date.now() > deadline) {
        fail('the call did not end in time');
      }
      speaker.run().forEach(echo);

      // what the caller says, by what it heard
      if (!talking && said === 0 && Date.now() - mediaT0 >= 1000) {
        speak(0);
      } else if (!talking && said === 1 && playedAtBargeIn === null
                 && speaker.played >= cfg.interrupt_after_ms * 8
                 && speaker.queuedBytes() > 0) {
        playedAtBargeIn = speaker.played;
        speak(1);
      } else if (!talking && said === 2 && afterClear > 0
                 && speaker.queuedBytes() === 0
                 && Date.now() - lastAudio > 1000
                 && speaker.nowPos() - speaker.end > 8000) {
        event({ ev: 'hangup' });
        send({ event: 'stop', sequenceNumber: String(++seq), streamSid,
               stop: { accountSid, callSid } });
        ws.close(1000, '');
        said = 3;
      }

      // the frames due by now, 20 ms each
      while (said < 3 && mediaT0 + frames * 20 <= Date.now()) {
        let f = Buffer.alloc(FRAME, SILENCE);
        if (talking) {
          if (talking.off === 0) {
            event({ ev: 'speak', n: talking.n, ms: talking.audio.length / 8,
                    while_playing_ms: talking.queued_ms },
                  mediaT0 + frames * 20);
          }
          talking.audio.copy(f, 0, talking.off, talking.off + FRAME);
          talking.off += FRAME;
          if (talking.off >= talking.audio.length) {
            event({ ev: 'said', n: talking.n });
            talking = null;
            said++;
          }
        }
        send({ event: 'media', sequenceNumber: String(++seq), streamSid,
               media: { track: 'inbound', chunk: String(++chunk),
                        timestamp: String(frames * 20),
                        payload: f.toString('base64') } });
        frames++;
      }
      setTimeout(tick, 5);
    };
    tick();
  });

  fs.writeFileSync(path.join(DIR, 'caller-heard.ul'),
                   speaker.buf.subarray(0, Math.max(speaker.end,
                                                    speaker.nowPos())));
  fs.writeFileSync(path.join(DIR, 'caller-heard.json'),
                   JSON.stringify({ start_t: t0, played_ms: speaker.played / 8,
                                    marks, messages: count }) + '\n');
  if (said !== 3) fail(`the call ended early (close ${closed.code})`);
  if (closed.code !== 1000) fail(`close ${closed.code} ${closed.reason}`);
}

main().catch((e) => fail(e.stack));
