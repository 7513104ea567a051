// SCRIPT.js hook for t/lib/fake-openai.js, used by t/111-lifecycle.t.
//
// Always: logs each ping the module sends, {"ev":"ping","conn":N,"data":...}
// (the `ws` package answers it with a pong by itself).
// Query parameters of the URL the module connects to:
//   nopong=1        do not answer pings: with nothing else sent after
//                   session.updated, the module sees a dead OpenAI
//   flood=N         right after session.update, send N
//                   response.output_audio.delta events at once, each with
//                   `size` (default 8192) base64 characters of audio
//   size=S          see flood

'use strict';

module.exports = {
  onConnect(ws, ctx) {
    ws.on('ping', (data) => {
      ctx.log({ ev: 'ping', conn: ctx.conn, data: data.toString() });
    });

    if (ctx.query.get('nopong')) {
      ws._autoPong = false;     // ws 8 internals: no automatic pong
    }
  },

  onMessage(ws, msg, ctx) {
    const flood = +(ctx.query.get('flood') || 0);

    if (msg.type !== 'session.update' || !flood) {
      return;
    }

    const size = +(ctx.query.get('size') || 8192);
    const delta = Buffer.alloc(size / 4 * 3, 0x7f).toString('base64');
    let queued = 0;

    for (let i = 0; i < flood; i++) {
      const ev = JSON.stringify({
        type: 'response.output_audio.delta', event_id: 'evt_d' + i,
        response_id: 'resp_1', item_id: 'item_1', output_index: 0,
        content_index: 0, delta,
      });
      queued += ev.length;
      ws.send(ev);
    }

    ctx.log({ ev: 'flooded', conn: ctx.conn, count: flood, bytes: queued });
  },
};
