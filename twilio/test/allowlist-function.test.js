'use strict';

const test = require('node:test');
const assert = require('node:assert');

// The Twilio Functions runtime exposes the helper library as the global
// `Twilio`; provide the real one before loading the function.
global.Twilio = require('twilio');

const { handler } = require('../allowlist-function');

const XML = '<?xml version="1.0" encoding="UTF-8"?>';
const WEBHOOK = 'https://voice.example.com/incoming-call';
const REDIRECT =
  `${XML}<Response><Redirect method="POST">${WEBHOOK}</Redirect></Response>`;
const REJECT = `${XML}<Response><Reject/></Response>`;

const ALLOWED = '+15551234567';
const OTHER = '+15559990000';

// Invoke the handler and return the single (err, twiml) it reported.
function run(context, event) {
  const calls = [];
  handler(context, event, (err, twiml) => {
    calls.push({ err, twiml });
  });
  assert.strictEqual(calls.length, 1, 'callback must be called exactly once');
  assert.strictEqual(calls[0].err, null);
  assert.ok(
    calls[0].twiml instanceof Twilio.twiml.VoiceResponse,
    'callback must receive a VoiceResponse'
  );
  return calls[0].twiml.toString();
}

test('allowed caller is redirected to the webhook with POST', () => {
  const xml = run(
    { ALLOWED_NUMBERS: `${ALLOWED},+15557654321`, WEBHOOK_URL: WEBHOOK },
    { From: ALLOWED }
  );
  assert.strictEqual(xml, REDIRECT);
});

test('second entry of the list is allowed too', () => {
  const xml = run(
    { ALLOWED_NUMBERS: `${ALLOWED},+15557654321`, WEBHOOK_URL: WEBHOOK },
    { From: '+15557654321' }
  );
  assert.strictEqual(xml, REDIRECT);
});

test('caller not on the list is rejected', () => {
  const xml = run(
    { ALLOWED_NUMBERS: `${ALLOWED},+15557654321`, WEBHOOK_URL: WEBHOOK },
    { From: OTHER }
  );
  assert.strictEqual(xml, REJECT);
});

test('prefix/substring of an allowed number is rejected', () => {
  const xml = run(
    { ALLOWED_NUMBERS: ALLOWED, WEBHOOK_URL: WEBHOOK },
    { From: '+1555123456' }
  );
  assert.strictEqual(xml, REJECT);
});

test('spaces around entries are trimmed', () => {
  const ctx = {
    ALLOWED_NUMBERS: `  +15557654321 ,   ${ALLOWED}  `,
    WEBHOOK_URL: WEBHOOK,
  };
  assert.strictEqual(run(ctx, { From: ALLOWED }), REDIRECT);
  assert.strictEqual(run(ctx, { From: '+15557654321' }), REDIRECT);
  assert.strictEqual(run(ctx, { From: OTHER }), REJECT);
});

test('blank entries are ignored', () => {
  const ctx = { ALLOWED_NUMBERS: `,,${ALLOWED},`, WEBHOOK_URL: WEBHOOK };
  assert.strictEqual(run(ctx, { From: ALLOWED }), REDIRECT);
  assert.strictEqual(run(ctx, { From: OTHER }), REJECT);
  // A blank entry must never match an empty or missing caller id.
  assert.strictEqual(run(ctx, { From: '' }), REJECT);
  assert.strictEqual(run(ctx, { From: '   ' }), REJECT);
  assert.strictEqual(run(ctx, {}), REJECT);
});

test('missing ALLOWED_NUMBERS rejects everyone', () => {
  const xml = run({ WEBHOOK_URL: WEBHOOK }, { From: ALLOWED });
  assert.strictEqual(xml, REJECT);
});

test('empty ALLOWED_NUMBERS with empty From rejects', () => {
  const xml = run({ ALLOWED_NUMBERS: '', WEBHOOK_URL: WEBHOOK }, { From: '' });
  assert.strictEqual(xml, REJECT);
});

test('missing From rejects', () => {
  const ctx = { ALLOWED_NUMBERS: ALLOWED, WEBHOOK_URL: WEBHOOK };
  assert.strictEqual(run(ctx, {}), REJECT);
  assert.strictEqual(run(ctx, { From: undefined }), REJECT);
});

test('missing WEBHOOK_URL rejects and never emits "undefined"', () => {
  const xml = run({ ALLOWED_NUMBERS: ALLOWED }, { From: ALLOWED });
  assert.strictEqual(xml, REJECT);
  assert.ok(!xml.includes('undefined'), xml);
});

test('blank WEBHOOK_URL rejects', () => {
  for (const url of ['', '   ']) {
    const xml = run(
      { ALLOWED_NUMBERS: ALLOWED, WEBHOOK_URL: url },
      { From: ALLOWED }
    );
    assert.strictEqual(xml, REJECT, JSON.stringify(url));
  }
});

test('missing context values entirely rejects', () => {
  const xml = run({}, { From: ALLOWED });
  assert.strictEqual(xml, REJECT);
  assert.ok(!xml.includes('undefined'), xml);
});

test('webhook URL with & is XML-escaped', () => {
  const url = 'https://voice.example.com/incoming-call?a=1&b=2';
  const xml = run(
    { ALLOWED_NUMBERS: ALLOWED, WEBHOOK_URL: url },
    { From: ALLOWED }
  );
  assert.strictEqual(
    xml,
    `${XML}<Response><Redirect method="POST">` +
      'https://voice.example.com/incoming-call?a=1&amp;b=2' +
      '</Redirect></Response>'
  );
});

test('callback is called exactly once with err null (allowed and rejected)', () => {
  for (const from of [ALLOWED, OTHER, undefined]) {
    let count = 0;
    let seenErr;
    const ret = handler(
      { ALLOWED_NUMBERS: ALLOWED, WEBHOOK_URL: WEBHOOK },
      from === undefined ? {} : { From: from },
      (err) => {
        count += 1;
        seenErr = err;
        return 'cb-result';
      }
    );
    assert.strictEqual(count, 1);
    assert.strictEqual(seenErr, null);
    assert.strictEqual(ret, 'cb-result', 'handler must return callback(...)');
  }
});
