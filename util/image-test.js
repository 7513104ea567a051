#!/usr/bin/env node
// Helper of util/image-test, run inside the container's network namespace
// (nsenter -n): Twilio's side of a webhook, signed by the real `twilio` npm
// package (t/node_modules), never by a copy of its algorithm.
//
//   image-test.js sign TOKEN URL BODY
//       prints X-Twilio-Signature for a POST of BODY (form-urlencoded) to URL
//   image-test.js slow-post PORT PATH SIGNATURE BODY DIR
//       sends the request line, the headers and the first half of BODY,
//       creates DIR/half-sent, waits until DIR/go exists, sends the rest and
//       prints the status code, a newline and the response body
'use strict';

const fs = require('fs');
const net = require('net');
const path = require('path');
const querystring = require('querystring');

const top = path.resolve(__dirname, '..');
let twilio;
try {
  twilio = require(path.join(top, 't', 'node_modules', 'twilio'));
} catch (e) {
  process.stderr.write('image-test.js: the twilio npm package is missing ' +
                       '(cd t && npm ci): ' + e.message + '\n');
  process.exit(2);
}

const [mode, ...args] = process.argv.slice(2);

if (mode === 'sign') {
  const [token, url, body] = args;
  process.stdout.write(twilio.getExpectedTwilioSignature(
    token, url, querystring.parse(body)) + '\n');
} else if (mode === 'slow-post') {
  const [port, reqPath, signature, body, dir] = args;
  const half = Math.floor(body.length / 2);
  const sock = net.connect(Number(port), '127.0.0.1');
  let reply = '';
  sock.setEncoding('latin1');
  sock.on('data', (d) => { reply += d; });
  sock.on('error', (e) => {
    process.stderr.write('image-test.js: ' + e.message + '\n');
    process.exit(1);
  });
  sock.on('end', () => {
    const m = /^HTTP\/1\.1 (\d{3}) [^\r]*\r\n[\s\S]*?\r\n\r\n([\s\S]*)$/.exec(reply);
    if (!m) {
      process.stderr.write('image-test.js: not an HTTP response: ' +
                           JSON.stringify(reply.slice(0, 200)) + '\n');
      process.exit(1);
    }
    process.stdout.write(m[1] + '\n' + m[2]);
  });
  sock.on('connect', () => {
    sock.write('POST ' + reqPath + ' HTTP/1.1\r\n' +
               'Host: voice.example.com\r\n' +
               'Content-Type: application/x-www-form-urlencoded\r\n' +
               'X-Twilio-Signature: ' + signature + '\r\n' +
               'Content-Length: ' + Buffer.byteLength(body) + '\r\n' +
               'Connection: close\r\n\r\n' + body.slice(0, half));
    fs.writeFileSync(path.join(dir, 'half-sent'), '');
    const timer = setInterval(() => {
      if (fs.existsSync(path.join(dir, 'go'))) {
        clearInterval(timer);
        sock.write(body.slice(half));
      }
    }, 50);
  });
} else {
  process.stderr.write('usage: image-test.js sign|slow-post ...\n');
  process.exit(2);
}
