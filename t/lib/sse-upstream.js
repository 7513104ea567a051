// A private HTTP upstream for t/004-bearer.t: what an MCP server behind
// `voice_require_bearer` looks like to nginx (node's http module, plain
// HTTP on loopback).
//
//   node t/lib/sse-upstream.js PORT LOGFILE
//
// Appends one JSON line to LOGFILE (and stdout) per thing it does, with
// "t" (ms since the epoch):
//   {"ev":"ready","port":N}
//   {"ev":"request","method":..,"url":..,"headers":{..}}
//   {"ev":"sent","stream":NAME,"data":".."}     an SSE event written
//   {"ev":"end","stream":NAME}                  a stream finished
//
//   GET /release/NAME  (on this port directly, not through nginx): lets
//                      the stream NAME send its last event; 204
//   GET ...?stream=NAME  an SSE stream (text/event-stream, chunked):
//                      "data: one" at once, "data: two" 300 ms later,
//                      then "data: three" only once /release/NAME came,
//                      then the end of the response
//   anything else      200 text/plain "upstream got METHOD URL\n"

'use strict';

const fs = require('fs');
const http = require('http');

const [port, logFile] = process.argv.slice(2);

function log(obj) {
  const line = JSON.stringify(Object.assign({ t: Date.now() }, obj)) + '\n';
  process.stdout.write(line);
  fs.appendFileSync(logFile, line);
}

const waiting = {};     // stream name -> function that sends the rest
const released = {};    // released before the stream got there

function event(res, stream, data) {
  res.write(`data: ${data}\n\n`);
  log({ ev: 'sent', stream, data });
}

const server = http.createServer((req, res) => {
  log({ ev: 'request', method: req.method, url: req.url,
        headers: req.headers });

  const url = new URL(req.url, 'http://upstream.test');
  const release = /^\/release\/(.+)$/.exec(url.pathname);

  if (release) {
    const name = release[1];
    if (waiting[name]) {
      waiting[name]();
      delete waiting[name];
    } else {
      released[name] = true;
    }
    res.writeHead(204);
    res.end();
    return;
  }

  const stream = url.searchParams.get('stream');

  if (stream) {
    res.writeHead(200, { 'Content-Type': 'text/event-stream',
                         'Cache-Control': 'no-cache' });
    event(res, stream, 'one');
    setTimeout(() => {
      event(res, stream, 'two');
      const rest = () => {
        event(res, stream, 'three');
        res.end();
        log({ ev: 'end', stream });
      };
      if (released[stream]) rest();
      else waiting[stream] = rest;
    }, 300);
    return;
  }

  const body = `upstream got ${req.method} ${req.url}\n`;
  res.writeHead(200, { 'Content-Type': 'text/plain',
                       'Content-Length': Buffer.byteLength(body) });
  res.end(body);
});

server.listen(+port, '127.0.0.1', () => log({ ev: 'ready', port: +port }));
