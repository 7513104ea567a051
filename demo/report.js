// `make demo`: after the call, the event timeline (from the caller's and
// the OpenAI stand-in's events.jsonl and nginx's error.log), and the inputs
// of the WAV and the picture.
//
//   node demo/report.js RUN_DIR ERROR_LOG
//
// Prints the timeline, in ms from the webhook.  Writes in RUN_DIR:
//   call.ul     2 channels of μ-law at 8 kHz, interleaved, from the
//               webhook on: left what the caller heard (played), right what
//               OpenAI heard (received), on one time axis
//   call.gp     the gnuplot script for the picture (the barge-in marked):
//               `sox call.wav -t dat - | gnuplot -c call.gp call.png`
// Exit status 1 when an event of the call is missing from the timeline.

'use strict';

const fs = require('fs');
const path = require('path');

const [dir, errorLog] = process.argv.slice(2);
const read = (f) => fs.readFileSync(path.join(dir, f));
const json = (f) => JSON.parse(read(f).toString());

const events = read('events.jsonl').toString().split('\n').filter(Boolean)
  .map((l) => JSON.parse(l))
  .map((e, i) => Object.assign(e, { i }))
  .sort((a, b) => a.t - b.t || a.i - b.i);
const t0 = events.find((e) => e.ev === 'webhook').t;
const first = (ev, pred) => events.find((e) => e.ev === ev
                                        && (!pred || pred(e)));

// --- the timeline -----------------------------------------------------------

const lines = [];
const missing = [];
const at = (e, who, text) => {
  lines.push([e.t - t0, who, text]);
};
const need = (name, e) => {
  if (!e) missing.push(name);
  return e;
};

let e;
if ((e = need('webhook', first('twiml')))) {
  at(first('webhook'), 'caller',
     `webhook: POST /incoming-call, signed (X-Twilio-Signature)`);
  at(e, 'nginx', `webhook answered ${e.status}: TwiML <Connect><Stream url="${
    e.stream_url}"> (a single-use token)`);
}
if ((e = need('101', first('upgrade', (x) => x.status === 101)))) {
  at(e, 'nginx', 'upgrade: GET /media-stream/… (signed wss:// URL) -> '
     + '101 Switching Protocols');
}
if ((e = first('start_sent'))) {
  at(e, 'caller', `connected, start (CallSid ${e.call_sid}, StreamSid `
     + `${e.stream_sid})`);
}
if ((e = need('OpenAI connect', first('openai_connect')))) {
  at(e, 'openai', `nginx opened its TLS WebSocket: GET ${e.url}`
     + (e.bearer ? ', Authorization: Bearer …' : ', no Authorization!'));
}
if ((e = need('session.update', first('session_update')))) {
  at(e, 'openai', 'session.update received, session.updated sent'
     + (e.voice ? ` (voice ${e.voice})` : ''));
}
if ((e = need('first audio to OpenAI', first('first_audio_in')))) {
  at(e, 'openai', `first audio from the caller: input_audio_buffer.append `
     + `(${e.bytes / 8} ms)`);
}
for (const x of events) {
  const ms = x.t - t0;
  switch (x.ev) {
  case 'speak':
    lines.push([ms, 'caller', x.n === 0
      ? `starts saying sentence 1 (${Math.round(x.ms)} ms of speech)`
      : `speaks again over the reply, ${x.while_playing_ms} ms of it still `
        + `queued (sentence 2, ${Math.round(x.ms)} ms): barge-in`]);
    break;
  case 'speech_started':
    lines.push([ms, 'openai', `input_audio_buffer.speech_started `
                + `(audio_start_ms ${x.audio_start_ms})`]);
    break;
  case 'speech_stopped':
    lines.push([ms, 'openai', `input_audio_buffer.speech_stopped `
                + `(audio_end_ms ${x.audio_end_ms}), committed`]);
    break;
  case 'response_created':
    lines.push([ms, 'openai', `response ${x.response_id}: `
                + `${Math.round(x.ms)} ms of synthesized reply, 100 ms `
                + 'deltas in real time']);
    break;
  case 'response_cancelled':
    lines.push([ms, 'openai', `response ${x.response_id} cancelled by the `
                + `caller's speech after ${x.sent_ms} ms sent`]);
    break;
  case 'response_done':
    lines.push([ms, 'openai', `response ${x.response_id} done `
                + `(${Math.round(x.sent_ms)} ms sent)`]);
    break;
  case 'clear':
    lines.push([ms, 'caller', `clear from nginx: ${x.dropped_ms} ms of `
                + `queued audio dropped (${x.played_ms} ms played in all), `
                + `${x.marks_returned} marks sent back`]);
    break;
  case 'truncate':
    lines.push([ms, 'openai', `conversation.item.truncate ${x.item_id} `
                + `audio_end_ms=${x.audio_end_ms} (of ${x.sent_ms} ms `
                + `sent): the reply cut where the caller stopped hearing it`]);
    break;
  case 'first_audio_after_clear':
    lines.push([ms, 'caller', `first audio of the next reply`]);
    break;
  case 'hangup':
    lines.push([ms, 'caller', 'hang-up: stop, close 1000']);
    break;
  case 'ws_close':
    lines.push([ms, 'caller', `Media Stream closed (${x.code})`]);
    break;
  case 'openai_close':
    lines.push([ms, 'openai', `nginx closed the OpenAI WebSocket `
                + `(${x.code})`]);
    break;
  case 'first_audio_out':
    lines.push([ms, 'caller', `first audio from OpenAI (media, `
                + `${x.bytes / 8} ms), played at 8 bytes/ms, marks echoed`]);
    break;
  case 'error':
  case 'ws_error':
  case 'bad_message':
  case 'twilio_got':
    lines.push([ms, x.who, `UNEXPECTED ${x.ev}: ${JSON.stringify(x)}`]);
    missing.push(x.ev);
    break;
  default:
    break;
  }
}
need('first audio to the caller', first('first_audio_out'));
need('barge-in', first('speak', (x) => x.n === 1));
need('clear', first('clear'));
need('truncate', first('truncate'));
need('hang-up', first('hangup'));

lines.sort((a, b) => a[0] - b[0]);
process.stdout.write('\n  ms from the webhook\n');
for (const [ms, who, text] of lines) {
  process.stdout.write(`${String(ms).padStart(7)}  ${who.padEnd(6)}  `
                       + `${text}\n`);
}

// the call's line in nginx's error.log, and anything worse than info
const log = fs.readFileSync(errorLog, 'utf8').split('\n');
const ended = log.filter((l) => l.includes('voice: call ended'));
process.stdout.write('\nnginx error.log, the call:\n');
if (ended.length) {
  ended.forEach((l) => process.stdout.write(`  ${l}\n`));
} else {
  process.stdout.write('  (no "call ended" line)\n');
  missing.push('the call ended line');
}
// what nginx counted, as the peers counted it: data messages in, every
// frame out (the close frame, pings)
const cm = fs.existsSync(path.join(dir, 'caller-heard.json'))
  ? json('caller-heard.json').messages : { sent: '?', received: '?' };
const oa = { sent: 0, message: 0, ping: 0 };
read('openai.log').toString().split('\n').forEach((l) => {
  const m = /^\{"ev":"(sent|message|ping)"/.exec(l);
  if (m) oa[m[1]]++;
});
process.stdout.write(`  counted by the peers: from Twilio ${cm.sent}, `
  + `to Twilio ${cm.received} + close${cm.pings ? ` + ${cm.pings} pings` : ''}, `
  + `from OpenAI ${oa.sent}, to OpenAI ${oa.message} + close`
  + `${oa.ping ? ` + ${oa.ping} pings` : ''}\n`);
const bad = log.filter((l) => /\[(warn|error|crit|alert|emerg)\]/.test(l));
if (bad.length) {
  process.stdout.write('nginx error.log, warnings and errors:\n');
  bad.forEach((l) => process.stdout.write(`  ${l}\n`));
}

// --- the two channels on one axis -------------------------------------------

if (!fs.existsSync(path.join(dir, 'caller-heard.ul'))
    || !fs.existsSync(path.join(dir, 'openai-heard.ul'))) {
  process.stdout.write(`MISSING from the call: ${missing.concat(
    'the audio of both sides').join(', ')}\n`);
  process.exit(1);
}
const heardCaller = read('caller-heard.ul');
const heardOpenai = read('openai-heard.ul');
const offCaller = Math.round((json('caller-heard.json').start_t - t0) * 8);
const offOpenai = Math.round((json('openai-heard.json').start_t - t0) * 8);
const len = Math.max(offCaller + heardCaller.length,
                     offOpenai + heardOpenai.length);
const out = Buffer.alloc(len * 2, 0xff);
heardCaller.forEach((b, i) => { out[(offCaller + i) * 2] = b; });
heardOpenai.forEach((b, i) => { out[(offOpenai + i) * 2 + 1] = b; });
fs.writeFileSync(path.join(dir, 'call.ul'), out);

const clear = first('clear');
const trunc = first('truncate');
const bargeIn = clear ? (clear.t - t0) / 1000 : 0;
const label = trunc ? `barge-in: clear, reply cut at ${trunc.audio_end_ms} ms`
                    : 'barge-in';
fs.writeFileSync(path.join(dir, 'call.gp'), `# made by demo/report.js
set terminal png size 1200,600 noenhanced
set output ARG1
set datafile commentschars ";"
# sox's -t dat on stdin, read once (every 4th sample): time, left, right
set table $D
plot "/dev/stdin" every 4 using 1:2:3 with table
unset table
set multiplot layout 2,1 title "ngx_voice demo call (seconds from the webhook)"
set xrange [0:${(len / 8000).toFixed(2)}]
set yrange [-1:1]
set ytics 0.5
set grid xtics
set arrow 1 from ${bargeIn.toFixed(3)},-1 to ${bargeIn.toFixed(3)},1 \\
    nohead lc rgb "red" lw 2
set label 1 "${label}" at ${bargeIn.toFixed(3)},0.85 offset 0.5,0 tc rgb "red"
set ylabel "caller heard"
plot $D using 1:2 with lines lc rgb "#1f6fb4" notitle
set ylabel "OpenAI heard"
set xlabel "seconds from the webhook"
plot $D using 1:3 with lines lc rgb "#2a8a3a" notitle
unset multiplot
`);

process.stdout.write(`\nbarge-in at ${bargeIn.toFixed(3)} s\n`);
if (missing.length) {
  process.stdout.write(`MISSING from the call: ${missing.join(', ')}\n`);
  process.exit(1);
}
