// `make demo`: what the OpenAI Realtime stand-in (t/lib/fake-openai.js, on
// real TLS) does in the demo call, given to it as its SCRIPT.js:
//
//   node t/lib/fake-openai.js PORT CERT KEY demo/openai-demo.js
//
// fake-openai.js already answers the handshake, sends session.created and
// answers session.update with session.updated.  This adds what the real
// service does in a conversation, driven by the audio it hears:
//
// - a voice activity detector over the caller's μ-law (20 ms windows, mean
//   absolute level; speech after 60 ms above the threshold, its end after
//   500 ms below it, as server_vad's default silence_duration_ms):
//   input_audio_buffer.speech_started with audio_start_ms, then
//   speech_stopped and committed;
// - after each turn of the caller, a response: the next reply of
//   DEMO_DIR/reply1.ul, reply2.ul, ... (μ-law, 8 kHz, synthesized by
//   demo/run) as response.output_audio.delta events of 100 ms, sent in real
//   time (at most 200 ms ahead of the wall clock), then
//   response.output_audio.done and response.done;
// - while a response is being sent, speech_started cancels it (as
//   server_vad's interrupt_response does): no more deltas, response.done
//   with status "cancelled";
// - conversation.item.truncate is answered conversation.item.truncated.
//
// It writes, in DEMO_DIR:
//   events.jsonl       one JSON line per event of the timeline, with "t"
//                      (ms since the epoch) and "who": "openai"
//   openai-heard.ul    every byte of caller audio it received, in order
//   openai-heard.json  {"start_t": ms since the epoch of its first byte}:
//                      the earliest placement where no byte is heard
//                      before it arrived (the first audio may arrive in a
//                      burst: what the module held until the session was
//                      up)

'use strict';

const fs = require('fs');
const path = require('path');

const DIR = process.env.DEMO_DIR || '.';
const FRAME = 160;              // 20 ms of μ-law at 8 kHz
const LEVEL = 300;              // mean |sample| of a frame with speech
const START_FRAMES = 3;         // 60 ms of speech: speech_started
const STOP_FRAMES = 25;         // 500 ms of silence: speech_stopped
const DELTA_BYTES = 800;        // 100 ms per response.output_audio.delta
const LEAD_MS = 200;

function event(what) {
  fs.appendFileSync(path.join(DIR, 'events.jsonl'), JSON.stringify(
    Object.assign({ t: Date.now(), who: 'openai' }, what)) + '\n');
}

function ulaw2lin(u) {
  const v = ~u & 0xff;
  const t = (((v & 0x0f) << 3) + 0x84) << ((v & 0x70) >> 4);
  return (v & 0x80) ? 0x84 - t : t - 0x84;
}

function replies() {
  const out = [];
  for (let i = 1; fs.existsSync(path.join(DIR, `reply${i}.ul`)); i++) {
    out.push(fs.readFileSync(path.join(DIR, `reply${i}.ul`)));
  }
  return out;
}

function onConnect(ws, ctx) {
  const st = {
    heard: [], heardBytes: 0, startT: Infinity,
    pending: Buffer.alloc(0), frames: 0,
    speaking: false, run: 0, items: 0, responses: 0,
    response: null, replies: replies(), firstAudio: false,
  };
  ctx.demo = st;
  event({ ev: 'openai_connect', url: ctx.url,
          bearer: /^Bearer \S+$/.test((ctx.headers || {}).authorization
                                       || '') });

  ws.on('close', (code, reason) => {
    if (st.response) st.response.cancelled = true;
    event({ ev: 'openai_close', code, reason: reason.toString() });
    fs.writeFileSync(path.join(DIR, 'openai-heard.ul'),
                     Buffer.concat(st.heard));
    fs.writeFileSync(path.join(DIR, 'openai-heard.json'),
                     JSON.stringify({ start_t: st.startT,
                                      bytes: st.heardBytes }) + '\n');
  });
}

function speechStarted(ctx, st) {
  st.items++;
  const item = `item_user_${st.items}`;
  st.item = item;
  const at = (st.frames - START_FRAMES) * 20;
  event({ ev: 'speech_started', audio_start_ms: at, item_id: item });
  ctx.send({ type: 'input_audio_buffer.speech_started',
             event_id: `evt_ss${st.items}`, audio_start_ms: at,
             item_id: item });
  const r = st.response;
  if (r && !r.done) {
    // server_vad's interrupt_response: the response stops here
    r.cancelled = true;
    r.done = true;
    event({ ev: 'response_cancelled', response_id: r.id,
            sent_ms: r.sent / 8 });
    ctx.send({ type: 'response.done', event_id: `evt_rd${r.n}`,
               response: { id: r.id, object: 'realtime.response',
                           status: 'cancelled',
                           status_details: { type: 'cancelled',
                                             reason: 'turn_detected' } } });
  }
}

function speechStopped(ctx, st) {
  const at = (st.frames - STOP_FRAMES) * 20;
  event({ ev: 'speech_stopped', audio_end_ms: at, item_id: st.item });
  ctx.send({ type: 'input_audio_buffer.speech_stopped',
             event_id: `evt_sp${st.items}`, audio_end_ms: at,
             item_id: st.item });
  ctx.send({ type: 'input_audio_buffer.committed',
             event_id: `evt_cm${st.items}`, item_id: st.item,
             previous_item_id: null });
  respond(ctx, st);
}

function respond(ctx, st) {
  const audio = st.replies[Math.min(st.responses, st.replies.length - 1)];
  if (!audio) return;
  st.responses++;
  const n = st.responses;
  const r = { n, id: `resp_${n}`, item: `item_reply_${n}`, sent: 0,
              done: false, cancelled: false };
  st.response = r;
  event({ ev: 'response_created', response_id: r.id, item_id: r.item,
          ms: audio.length / 8 });
  ctx.send({ type: 'response.created', event_id: `evt_rc${n}`,
             response: { id: r.id, object: 'realtime.response',
                         status: 'in_progress', output: [] } });
  const t0 = Date.now();
  const tick = () => {
    if (r.cancelled) return;
    while (r.sent < audio.length
           && r.sent / 8 <= Date.now() - t0 + LEAD_MS) {
      const chunk = audio.subarray(r.sent, r.sent + DELTA_BYTES);
      if (r.sent === 0) {
        event({ ev: 'first_delta', response_id: r.id, item_id: r.item });
      }
      ctx.send({ type: 'response.output_audio.delta',
                 event_id: `evt_${r.id}_${r.sent}`, response_id: r.id,
                 item_id: r.item, output_index: 0, content_index: 0,
                 delta: chunk.toString('base64') });
      r.sent += chunk.length;
    }
    if (r.sent < audio.length) {
      setTimeout(tick, 20);
      return;
    }
    r.done = true;
    event({ ev: 'response_done', response_id: r.id, sent_ms: r.sent / 8 });
    ctx.send({ type: 'response.output_audio.done', event_id: `evt_ad${n}`,
               response_id: r.id, item_id: r.item, output_index: 0,
               content_index: 0 });
    ctx.send({ type: 'response.done', event_id: `evt_rd${n}`,
               response: { id: r.id, object: 'realtime.response',
                           status: 'completed' } });
  };
  tick();
}

function hear(ctx, st, bytes) {
  const now = Date.now();
  if (!st.firstAudio) {
    st.firstAudio = true;
    event({ ev: 'first_audio_in', bytes: bytes.length });
  }
  st.heard.push(bytes);
  st.heardBytes += bytes.length;
  // no byte is heard before it arrived
  st.startT = Math.min(st.startT, now - st.heardBytes / 8);
  st.pending = Buffer.concat([st.pending, bytes]);
  while (st.pending.length >= FRAME) {
    const f = st.pending.subarray(0, FRAME);
    st.pending = st.pending.subarray(FRAME);
    st.frames++;
    let sum = 0;
    for (let i = 0; i < FRAME; i++) sum += Math.abs(ulaw2lin(f[i]));
    const voiced = sum / FRAME > LEVEL;
    if (!st.speaking) {
      st.run = voiced ? st.run + 1 : 0;
      if (st.run >= START_FRAMES) {
        st.speaking = true;
        st.run = 0;
        speechStarted(ctx, st);
      }
    } else {
      st.run = voiced ? 0 : st.run + 1;
      if (st.run >= STOP_FRAMES) {
        st.speaking = false;
        st.run = 0;
        speechStopped(ctx, st);
      }
    }
  }
}

function onMessage(ws, msg, ctx) {
  const st = ctx.demo;
  if (!st) return;
  if (msg.type === 'session.update') {
    event({ ev: 'session_update',
            voice: ((msg.session || {}).audio || {}).output
              ? msg.session.audio.output.voice : undefined });
    event({ ev: 'session_updated' });
  } else if (msg.type === 'input_audio_buffer.append'
             && typeof msg.audio === 'string') {
    hear(ctx, st, Buffer.from(msg.audio, 'base64'));
  } else if (msg.type === 'conversation.item.truncate') {
    event({ ev: 'truncate', item_id: msg.item_id,
            content_index: msg.content_index,
            audio_end_ms: msg.audio_end_ms,
            sent_ms: st.response ? st.response.sent / 8 : null });
    ctx.send({ type: 'conversation.item.truncated', event_id: 'evt_tr',
               item_id: msg.item_id, content_index: msg.content_index,
               audio_end_ms: msg.audio_end_ms });
  } else if (msg.type) {
    event({ ev: 'openai_got', type: msg.type });
  }
}

module.exports = { onConnect, onMessage };
