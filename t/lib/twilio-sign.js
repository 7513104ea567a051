#!/usr/bin/env node
// Twilio request signing for the ngx_voice test suite, done by the real
// `twilio` npm package (t/node_modules; run `cd t && npm install`), so the
// module is checked against Twilio's own algorithm rather than a copy of it.
//
// One-shot mode: one JSON object on stdin, the result on stdout.
//   {"token": "...", "url": "...", "body": "a=1&b=2"}          -> signature
//   {"token": "...", "url": "...", "params": {...}}            -> signature
//   {"mode": "validate", "token": "...", "signature": "...",
//    "url": "...", "params": {...} | "body": "..."}            -> true|false
// `body` is a form-urlencoded string parsed with querystring.parse (repeated
// names become arrays, which twilio's signing code handles); `params` is used
// as given; with neither, the parameters are {} (e.g. a WebSocket upgrade).
//
// Line mode (`--lines`), used by Test::Voice to avoid starting node for every
// request: one JSON object per input line, one JSON reply per output line,
// {"result": ...} or {"error": "..."}.
'use strict';

const querystring = require('querystring');
const readline = require('readline');

let twilio;
try {
  twilio = require('twilio');
} catch (e) {
  process.stderr.write('twilio-sign.js: cannot load the twilio package ' +
                       '(run `cd t && npm install`): ' + e.message + '\n');
  process.exit(2);
}

function paramsOf(req) {
  if (req.params && typeof req.params === 'object') return req.params;
  if (typeof req.params === 'string') return querystring.parse(req.params);
  if (typeof req.body === 'string') return querystring.parse(req.body);
  return {};
}

function handle(req) {
  if (typeof req.token !== 'string' || typeof req.url !== 'string') {
    throw new Error('token and url (strings) are required');
  }
  if (req.mode === 'validate') {
    return twilio.validateRequest(req.token, req.signature || '', req.url,
                                  paramsOf(req));
  }
  if (req.mode && req.mode !== 'sign') {
    throw new Error('unknown mode ' + JSON.stringify(req.mode));
  }
  return twilio.getExpectedTwilioSignature(req.token, req.url, paramsOf(req));
}

if (process.argv.includes('--lines')) {
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  rl.on('line', (line) => {
    if (!line.trim()) return;
    let reply;
    try {
      reply = { result: handle(JSON.parse(line)) };
    } catch (e) {
      reply = { error: e.message };
    }
    process.stdout.write(JSON.stringify(reply) + '\n');
  });
} else {
  let input = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => { input += chunk; });
  process.stdin.on('end', () => {
    try {
      process.stdout.write(String(handle(JSON.parse(input))) + '\n');
    } catch (e) {
      process.stderr.write('twilio-sign.js: ' + e.message + '\n');
      process.exit(1);
    }
  });
}
