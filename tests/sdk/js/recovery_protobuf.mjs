// Drives the Protobuf build of the unchanged `centrifuge` JS SDK
// (`centrifuge/build/protobuf`, v5, over the `ws` package; WebSocket
// subprotocol `centrifuge-protobuf`) against a running Switchboard gateway,
// in the same scenario as recovery_protobuf.mjs: connect with a JWT, subscribe,
// receive server-API publications in order, disconnect, miss publications,
// reconnect and recover them, then read presence and history. Payloads are
// binary (API `b64data`, not JSON) and must arrive byte for byte.
//
// Env: SWITCHBOARD_WS_URL, SWITCHBOARD_API_URL (the /api prefix),
//      SWITCHBOARD_API_KEY, SWITCHBOARD_TOKEN.
// Exits 0 on success, 1 with a message on any failure, 2 on timeout.

import assert from 'node:assert/strict';
import { Centrifuge } from 'centrifuge/build/protobuf';
import WebSocket from 'ws';
import { apiCaller, once, Inbox } from './common.mjs';

const HARD_TIMEOUT_MS = 20_000;
const CHANNEL = 'chat:sdk-pb';

/** Publication n's payload: not UTF-8, so certainly not JSON. */
function payload(n) {
  return [n, 0x00, 0xff, 0x9f, 0x0a];
}

/** The bytes of a publication's `data` (a Uint8Array in the Protobuf build). */
function bytes(data) {
  assert.ok(data instanceof Uint8Array, `data is not bytes: ${data}`);
  return Array.from(data);
}

function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`recovery_protobuf.mjs: missing env ${name}`);
    process.exit(1);
  }
  return value;
}

const wsUrl = env('SWITCHBOARD_WS_URL');
const apiUrl = env('SWITCHBOARD_API_URL').replace(/\/$/, '');
const apiKey = env('SWITCHBOARD_API_KEY');
const api = apiCaller(apiUrl, apiKey);
const token = env('SWITCHBOARD_TOKEN');

const hardTimeout = setTimeout(() => {
  console.error(`recovery_protobuf.mjs: FAILED: hard timeout after ${HARD_TIMEOUT_MS} ms (last step: ${step})`);
  process.exit(2);
}, HARD_TIMEOUT_MS);

let step = 'start';
function log(msg) {
  step = msg;
  console.log(`[sdk-js-pb] ${msg}`);
}

async function main() {
  const client = new Centrifuge(wsUrl, { websocket: WebSocket, token });
  client.on('error', (ctx) => console.error('[sdk-js-pb] client error:', JSON.stringify(ctx.error ?? ctx)));
  let currentClientId = null;
  client.on('connected', (ctx) => {
    currentClientId = ctx.client;
  });

  log('connect');
  const connected = once(client, 'connected', 'connected event');
  client.connect();
  const connCtx = await connected;
  assert.ok(connCtx.client, `connected without a client id: ${JSON.stringify(connCtx)}`);
  const clientId = connCtx.client;

  log('subscribe');
  const sub = client.newSubscription(CHANNEL, { recoverable: true });
  sub.on('error', (ctx) => console.error('[sdk-js-pb] subscription error:', JSON.stringify(ctx.error ?? ctx)));
  const inbox = new Inbox(sub);
  const subscribed = once(sub, 'subscribed', 'first subscribed event');
  sub.subscribe();
  const subCtx = await subscribed;
  assert.equal(subCtx.channel, CHANNEL);
  assert.equal(subCtx.recoverable, true, `subscription not recoverable: ${JSON.stringify(subCtx)}`);
  assert.equal(subCtx.wasRecovering, false);
  const epoch = subCtx.streamPosition?.epoch;
  assert.ok(epoch, `no epoch in stream position: ${JSON.stringify(subCtx)}`);

  log('publish 3 while subscribed');
  for (let i = 1; i <= 3; i++) {
    const res = await api('publish', { channel: CHANNEL, b64data: Buffer.from(payload(i)).toString('base64') });
    assert.equal(res.offset, i, `publish ${i} offset`);
    assert.equal(res.epoch, epoch, `publish ${i} epoch`);
  }
  const live = await inbox.take(3, 'live publication');
  assert.deepEqual(live.map((p) => bytes(p.data)), [1, 2, 3].map(payload), 'live publications out of order');
  assert.deepEqual(live.map((p) => p.offset), [1, 2, 3], 'live offsets');

  log('disconnect');
  const disconnected = once(client, 'disconnected', 'disconnected event');
  client.disconnect();
  await disconnected;
  assert.equal(sub.state, 'subscribing', `subscription state after disconnect: ${sub.state}`);

  log('publish 3 while disconnected');
  for (let i = 4; i <= 6; i++) {
    const res = await api('publish', { channel: CHANNEL, b64data: Buffer.from(payload(i)).toString('base64') });
    assert.equal(res.offset, i, `publish ${i} offset`);
  }

  log('reconnect and recover');
  const resubscribed = once(sub, 'subscribed', 'subscribed event after reconnect');
  client.connect();
  const recCtx = await resubscribed;
  assert.equal(recCtx.wasRecovering, true, `not recovering: ${JSON.stringify(recCtx)}`);
  assert.equal(recCtx.recovered, true, `not recovered: ${JSON.stringify(recCtx)}`);
  assert.equal(recCtx.streamPosition?.epoch, epoch, 'epoch changed across recovery');
  const missed = await inbox.take(3, 'recovered publication');
  assert.deepEqual(missed.map((p) => bytes(p.data)), [4, 5, 6].map(payload), 'recovered publications out of order');
  assert.deepEqual(missed.map((p) => p.offset), [4, 5, 6], 'recovered offsets');

  log('one more live publication after recovery, JSON this time');
  await api('publish', { channel: CHANNEL, data: { n: 7 } });
  const seventh = await inbox.next('publication 7');
  assert.equal(Buffer.from(seventh.data).toString(), '{"n":7}', 'JSON data reaches Protobuf clients as its bytes');
  assert.equal(seventh.offset, 7);
  assert.equal(inbox.items.length, 0, `unexpected extra publications: ${JSON.stringify(inbox.items)}`);

  log('presence');
  const presence = await sub.presence();
  const entries = Object.values(presence.clients);
  assert.equal(entries.length, 1, `presence: ${JSON.stringify(presence)}`);
  assert.equal(entries[0].user, 'sdk-js-pb', `presence user: ${JSON.stringify(presence)}`);
  assert.ok(presence.clients[currentClientId], `own client ${currentClientId} not in presence: ${JSON.stringify(presence)}`);
  assert.notEqual(currentClientId, clientId, 'a reconnect should get a new client id');
  const stats = await sub.presenceStats();
  assert.deepEqual(stats, { numClients: 1, numUsers: 1 }, 'presence stats');

  log('history');
  const history = await sub.history({ limit: 10 });
  assert.equal(history.epoch, epoch, 'history epoch');
  assert.equal(history.offset, 7, 'history top offset');
  assert.deepEqual(
    history.publications.slice(0, 6).map((p) => bytes(p.data)),
    [1, 2, 3, 4, 5, 6].map(payload),
    'history data',
  );
  assert.deepEqual(history.publications.map((p) => p.offset), [1, 2, 3, 4, 5, 6, 7], 'history offsets');
  const last2 = await sub.history({ limit: 2, reverse: true });
  assert.deepEqual(last2.publications.map((p) => p.offset), [7, 6], 'reverse history offsets');

  log('done');
  sub.unsubscribe();
  client.disconnect();
  console.log(`[sdk-js-pb] OK: first client ${clientId}, recovered 3 publications, presence and history checked`);
}

main().then(
  () => {
    clearTimeout(hardTimeout);
    process.exit(0);
  },
  (err) => {
    clearTimeout(hardTimeout);
    console.error(`recovery_protobuf.mjs: FAILED at step "${step}": ${err?.stack ?? err}`);
    process.exit(1);
  },
);
