// A hook for t/lib/fake-openai.js (its SCRIPT.js argument), for
// t/140-metrics.t: logs every WebSocket frame the module sends to OpenAI
// with the size of its payload, so a test can add up what went on the
// wire:
//   {"ev":"frame","conn":N,"opcode":1|2|9|10|8,"len":PAYLOAD_BYTES}
// Data frames come whole (the module does not fragment); a close frame is
// logged when it arrives (its payload is the 2-byte code and the reason;
// none when `ws` reports 1005, and no frame at all for 1006, a connection
// that ended without one).

'use strict';

module.exports = {
  onConnect(ws, ctx) {
    const frame = (opcode, len) =>
      ctx.log({ ev: 'frame', conn: ctx.conn, opcode, len });
    ws.on('message', (data, isBinary) => frame(isBinary ? 2 : 1,
                                               data.length));
    ws.on('ping', (data) => frame(9, data.length));
    ws.on('pong', (data) => frame(10, data.length));
    ws.on('close', (code, reason) => {
      if (code === 1006) return;
      frame(8, code === 1005 ? 0 : 2 + reason.length);
    });
  },
};
