// Drives the unchanged `centrifuge` JS SDK (v5) over one emulation transport
// against a running Switchboard gateway: `http_stream` (Node's fetch and
// ReadableStream) or `sse` (the `eventsource` package as EventSource), with
// commands over /emulation. Subscribe, receive server-API publications in
// order, publish from the client, get disconnected by the server with a
// reconnect code, miss publications meanwhile, and recover them.
// With SWITCHBOARD_PROTOCOL=protobuf the Protobuf build
// (`centrifuge/build/protobuf`) runs the same scenario over `http_stream`
// (Content-Type application/octet-stream) with binary payloads.
//
// Env: SWITCHBOARD_TRANSPORT (http_stream | sse), SWITCHBOARD_HTTP_URL (the
//      gateway's http://host:port), SWITCHBOARD_API_KEY, SWITCHBOARD_TOKEN,
//      SWITCHBOARD_USER (the token's subject); optional SWITCHBOARD_PROTOCOL
//      (json | protobuf, default json).
// Exits 0 on success, 1 with a message on any failure, 2 on timeout.

import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';
import { apiCaller, once, Inbox } from './common.mjs';

const HARD_TIMEOUT_MS = 25_000;

function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`fallback.mjs: missing env ${name}`);
    process.exit(1);
  }
  return value;
}

const transport = env('SWITCHBOARD_TRANSPORT');
const base = env('SWITCHBOARD_HTTP_URL').replace(/\/$/, '');
const apiKey = env('SWITCHBOARD_API_KEY');
const api = apiCaller(`${base}/api`, apiKey);
const token = env('SWITCHBOARD_TOKEN');
const user = env('SWITCHBOARD_USER');
const protobuf = process.env.SWITCHBOARD_PROTOCOL === 'protobuf';
const { Centrifuge } = await import(protobuf ? 'centrifuge/build/protobuf' : 'centrifuge');
const CHANNEL = `chat:fallback-${transport}${protobuf ? '-pb' : ''}`;

// Publication n's payload: JSON `{n}`, or in Protobuf bytes that are not
// UTF-8 (so certainly not JSON), which must arrive byte for byte.
const binary = (n) => [n, 0x00, 0xff, 0x9f, 0x0a];
/** The server API params carrying payload n. */
const apiData = (n) =>
  protobuf ? { b64data: Buffer.from(binary(n)).toString('base64') } : { data: { n } };
/** What the SDK hands over for payload n, compared with `seen`. */
const expected = (n) => (protobuf ? binary(n) : { n });
function seen(data) {
  if (!protobuf) return data;
  assert.ok(data instanceof Uint8Array, `data is not bytes: ${data}`);
  return Array.from(data);
}

let step = 'start';
const hardTimeout = setTimeout(() => {
  console.error(`fallback.mjs: FAILED (${transport}): hard timeout after ${HARD_TIMEOUT_MS} ms (last step: ${step})`);
  process.exit(2);
}, HARD_TIMEOUT_MS);

function log(msg) {
  step = msg;
  console.log(`[sdk-js-fallback ${transport}] ${msg}`);
}

async function main() {
  const endpoint = `${base}/connection/${transport}`;
  const client = new Centrifuge([{ transport, endpoint }], {
    token,
    eventsource: EventSource,
    emulationEndpoint: `${base}/emulation`,
    // Long enough for the publications below to be missed, short enough
    // for the test.
    minReconnectDelay: 500,
    maxReconnectDelay: 1000,
  });
  client.on('error', (ctx) => console.error(`[sdk-js-fallback ${transport}] client error:`, JSON.stringify(ctx.error ?? ctx)));

  log('connect');
  const connected = once(client, 'connected', 'connected event');
  client.connect();
  const connCtx = await connected;
  assert.equal(connCtx.transport, transport, `connected over ${connCtx.transport}`);
  assert.ok(connCtx.client, `connected without a client id: ${JSON.stringify(connCtx)}`);

  log('subscribe');
  const sub = client.newSubscription(CHANNEL, { recoverable: true });
  sub.on('error', (ctx) => console.error(`[sdk-js-fallback ${transport}] subscription error:`, JSON.stringify(ctx.error ?? ctx)));
  const inbox = new Inbox(sub);
  const subscribed = once(sub, 'subscribed', 'subscribed event');
  sub.subscribe();
  const subCtx = await subscribed;
  assert.equal(subCtx.recoverable, true, `not recoverable: ${JSON.stringify(subCtx)}`);

  log('server API publishes 3');
  for (let i = 1; i <= 3; i++) {
    await api('publish', { channel: CHANNEL, ...apiData(i) });
  }
  const live = await inbox.take(3, 'live publication');
  assert.deepEqual(live.map((p) => seen(p.data)), [1, 2, 3].map(expected), 'live publications out of order');
  assert.deepEqual(live.map((p) => p.offset), [1, 2, 3], 'live offsets');

  log('client publishes over /emulation');
  await sub.publish(protobuf ? new Uint8Array(binary(4)) : { n: 4 });
  const echoed = await inbox.next('client publication');
  assert.deepEqual(seen(echoed.data), expected(4));

  log('forced disconnect with a reconnect code');
  const disconnected = once(client, 'connecting', 'connecting after the forced disconnect');
  await api('disconnect', { user, disconnect: { code: 3011, reason: 'force reconnect' } });
  const dctx = await disconnected;
  assert.equal(dctx.code, 3011, `disconnect code: ${JSON.stringify(dctx)}`);

  // The SDK reconnects by itself after its backoff (at least 500 ms): these
  // publications are missed meanwhile and come back by recovery.
  log('publish 3 while reconnecting');
  const resubscribed = once(sub, 'subscribed', 'subscribed after reconnect');
  for (let i = 5; i <= 7; i++) {
    await api('publish', { channel: CHANNEL, ...apiData(i) });
  }
  const reCtx = await resubscribed;
  assert.equal(reCtx.wasRecovering, true, `not recovering: ${JSON.stringify(reCtx)}`);
  assert.equal(reCtx.recovered, true, `not recovered: ${JSON.stringify(reCtx)}`);
  const missed = await inbox.take(3, 'recovered publication');
  assert.deepEqual(missed.map((p) => seen(p.data)), [5, 6, 7].map(expected), 'recovered out of order');
  assert.deepEqual(missed.map((p) => p.offset), [5, 6, 7], 'recovered offsets');

  log('live after recovery');
  await api('publish', { channel: CHANNEL, ...apiData(8) });
  const after = await inbox.next('publication after recovery');
  assert.deepEqual(seen(after.data), expected(8));
  assert.equal(inbox.items.length, 0, `unexpected extra publications: ${JSON.stringify(inbox.items)}`);

  client.disconnect();
  clearTimeout(hardTimeout);
  console.log(`[sdk-js-fallback ${transport}] OK`);
}

main().catch((err) => {
  console.error(`fallback.mjs: FAILED (${transport}) at step "${step}": ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
