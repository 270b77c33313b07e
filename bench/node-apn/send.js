// The @parse/node-apn side of `herald-bench apns`: one notification per device token, each
// with its own payload, sent the way a Node backend sends them with this library: one
// Provider multiplexing the sends on its HTTP/2 connection, at most APNS_WINDOW of them in
// flight (10,000 at once make the library fail about a third of them with HTTP/2 stream
// errors, a known trait of node-apn under bursts; a window is what its users do).
// Prints one JSON line: {sent, failed, seconds, firstFailure}.
//
// Environment (set by herald-bench): APNS_HOST, APNS_PORT, APNS_CA (PEM file of the fake's
// CA), APNS_KEY (.p8 file), APNS_KEY_ID, APNS_TEAM_ID, APNS_TOPIC, APNS_TOKENS (a file of
// device tokens, one per line), APNS_WINDOW (sends in flight at once), APNS_SAME ("1": one
// notification object sent to every token; "0": a notification of its own per token).
'use strict';

const fs = require('fs');
const apn = require('@parse/node-apn');

function env(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is required`);
  }
  return value;
}

function notification(i, topic) {
  const note = new apn.Notification();
  note.topic = topic;
  note.pushType = 'alert';
  note.priority = 10;
  note.expiry = Math.floor(Date.now() / 1000) + 300;
  note.collapseId = `m${i}`;
  note.alert = { title: 'Hello', body: 'World' };
  note.sound = 'default';
  note.mutableContent = 1;
  note.payload = { herald: { messageId: `m${i}` } };
  return note;
}

async function main() {
  const tokens = fs.readFileSync(env('APNS_TOKENS'), 'utf8').split('\n').filter(Boolean);
  const topic = env('APNS_TOPIC');
  const provider = new apn.Provider({
    token: { key: fs.readFileSync(env('APNS_KEY')), keyId: env('APNS_KEY_ID'), teamId: env('APNS_TEAM_ID') },
    production: true,
    address: env('APNS_HOST'),
    port: Number(env('APNS_PORT')),
    ca: fs.readFileSync(env('APNS_CA')),
  });
  const window = Number(env('APNS_WINDOW'));
  const same = env('APNS_SAME') === '1' ? notification(0, topic) : null;
  const results = new Array(tokens.length);
  let next = 0;
  async function lane() {
    while (next < tokens.length) {
      const i = next++;
      results[i] = await provider.send(same || notification(i, topic), tokens[i]);
    }
  }
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: Math.min(window, tokens.length) }, lane));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  let sent = 0;
  let failed = 0;
  let firstFailure = null;
  for (const r of results) {
    sent += r.sent.length;
    failed += r.failed.length;
    if (r.failed.length > 0 && firstFailure === null) {
      firstFailure = r.failed[0];
    }
  }
  await provider.shutdown();
  console.log(JSON.stringify({ sent, failed, seconds, firstFailure }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
