/*
 * ngx_voice - Twilio Function: caller allowlist (first security layer).
 *
 * Only callers whose number is on ALLOWED_NUMBERS are forwarded to the
 * ngx_voice webhook; every other call is rejected before it reaches our
 * server.
 *
 * Setup (Twilio Console):
 *   1. Functions & Assets -> Services -> create/open a Service, add a
 *      Function with path /incoming-call and paste this file into it.
 *      Leave its visibility "Protected" so Twilio's gateway validates the
 *      X-Twilio-Signature and only Twilio can invoke it.
 *   2. Service -> Environment Variables:
 *        ALLOWED_NUMBERS  comma separated E.164 numbers,
 *                         e.g. "+15551234567, +15557654321"
 *        WEBHOOK_URL      e.g. https://voice.example.com/incoming-call
 *   3. Deploy, then Phone Numbers -> your number -> Voice Configuration ->
 *      "A call comes in": Function -> this Service -> /incoming-call.
 *
 * Missing/blank configuration or a missing caller id always rejects.
 */

exports.handler = (context, event, callback) => {
  const twiml = new Twilio.twiml.VoiceResponse();

  const allowed = String((context && context.ALLOWED_NUMBERS) || '')
    .split(',')
    .map((n) => n.trim())
    .filter((n) => n.length > 0);

  const webhookUrl = String((context && context.WEBHOOK_URL) || '').trim();

  const from =
    event && typeof event.From === 'string' ? event.From.trim() : '';

  if (from !== '' && webhookUrl !== '' && allowed.includes(from)) {
    twiml.redirect({ method: 'POST' }, webhookUrl);
  } else {
    twiml.reject();
  }

  return callback(null, twiml);
};
