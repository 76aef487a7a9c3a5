// Drives the unchanged `centrifuge` JS SDK (v5, over `ws`) through the
// channel features backends rely on: user-limited channels (allow and deny),
// publisher exclusion, server-side tags filters (`tagsFilter`), and fossil
// delta compression (`delta: 'fossil'`; the SDK applies the deltas), with a
// reconnect and recovery in the middle of a delta stream.
//
// With SWITCHBOARD_PROTOBUF=1 it runs the same steps with the Protobuf build
// (`centrifuge/build/protobuf`): payloads arrive as bytes, deltas are binary.
//
// Env: SWITCHBOARD_WS_URL, SWITCHBOARD_API_URL (the /api prefix),
//      SWITCHBOARD_API_KEY, SWITCHBOARD_TOKEN_ALICE, SWITCHBOARD_TOKEN_BOB,
//      SWITCHBOARD_TOKEN_MALLORY; optional SWITCHBOARD_PROTOBUF.
// Namespaces the gateway must have: dm (user-limited), room (subscribers
// publish, exclude_publisher), ticks (allow_tags_filter), score (history,
// force_recovery, allowed_delta_types = ["fossil"]).
// Exits 0 on success, 1 with a message on any failure, 2 on timeout.

import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { apiCaller, once, Inbox } from './common.mjs';

const PROTOBUF = process.env.SWITCHBOARD_PROTOBUF === '1';
const { Centrifuge } = await import(PROTOBUF ? 'centrifuge/build/protobuf' : 'centrifuge');
const TAG = PROTOBUF ? '[sdk-js-features-pb]' : '[sdk-js-features]';
const HARD_TIMEOUT_MS = 25_000;

function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`channel_features.mjs: missing env ${name}`);
    process.exit(1);
  }
  return value;
}

const wsUrl = env('SWITCHBOARD_WS_URL');
const apiUrl = env('SWITCHBOARD_API_URL').replace(/\/$/, '');
const apiKey = env('SWITCHBOARD_API_KEY');
const api = apiCaller(apiUrl, apiKey);

let step = 'start';
function log(msg) {
  step = msg;
  console.log(`${TAG} ${msg}`);
}

const hardTimeout = setTimeout(() => {
  console.error(`channel_features.mjs: FAILED: hard timeout after ${HARD_TIMEOUT_MS} ms (last step: ${step})`);
  process.exit(2);
}, HARD_TIMEOUT_MS);

/** A publication's data as a JS value, whichever build received it. */
function decode(data) {
  if (data instanceof Uint8Array) return JSON.parse(new TextDecoder().decode(data));
  return data;
}

/** What `sub.publish` takes in this build. */
function encode(value) {
  return PROTOBUF ? new TextEncoder().encode(JSON.stringify(value)) : value;
}

async function connect(token, name) {
  const client = new Centrifuge(wsUrl, { websocket: WebSocket, token, minReconnectDelay: 50, maxReconnectDelay: 200 });
  client.on('error', (ctx) => console.error(`${TAG} ${name} client error:`, JSON.stringify(ctx.error ?? ctx)));
  const connected = once(client, 'connected', `${name} connected`);
  client.connect();
  const ctx = await connected;
  return { client, id: ctx.client };
}

async function subscribe(client, channel, options = {}) {
  const sub = client.newSubscription(channel, options);
  sub.on('error', (ctx) => console.error(`${TAG} subscription error on ${channel}:`, JSON.stringify(ctx.error ?? ctx)));
  const inbox = new Inbox(sub, (ctx) => ({ data: decode(ctx.data), offset: ctx.offset, tags: ctx.tags }));
  const subscribed = once(sub, 'subscribed', `subscribed to ${channel}`);
  sub.subscribe();
  const ctx = await subscribed;
  return { sub, inbox, ctx };
}

/** A live-score document of about 1.5 KB; a few fields move each update. */
function scoreboard(n) {
  const players = [];
  for (let i = 0; i < 22; i++) {
    players.push({ id: 1000 + i, name: `Player Number ${i}`, team: i < 11 ? 'home' : 'away', touches: 10 + i + (i === n % 22 ? n : 0) });
  }
  return { match: 'Arsenal v Chelsea', minute: n, score: { home: Math.floor(n / 7), away: Math.floor(n / 11) }, possession: 50 + (n % 9), players };
}

async function main() {
  const alice = await connect(env('SWITCHBOARD_TOKEN_ALICE'), 'alice');
  const bob = await connect(env('SWITCHBOARD_TOKEN_BOB'), 'bob');
  const mallory = await connect(env('SWITCHBOARD_TOKEN_MALLORY'), 'mallory');

  log('user-limited channel: the listed users subscribe, another is refused with 103');
  const dm = 'dm:chat#alice,bob';
  const aliceDm = await subscribe(alice.client, dm);
  const bobDm = await subscribe(bob.client, dm);
  const denied = mallory.client.newSubscription(dm);
  const unsubscribed = once(denied, 'unsubscribed', 'mallory refused');
  denied.subscribe();
  const refusal = await unsubscribed;
  assert.equal(refusal.code, 103, `mallory: ${JSON.stringify(refusal)}`);
  await api('publish', { channel: dm, data: { text: 'private' } });
  assert.deepEqual((await aliceDm.inbox.next('dm for alice')).data, { text: 'private' });
  assert.deepEqual((await bobDm.inbox.next('dm for bob')).data, { text: 'private' });

  log('exclude publisher: a client publish is not echoed to its publisher');
  const aliceRoom = await subscribe(alice.client, 'room:1');
  const bobRoom = await subscribe(bob.client, 'room:1');
  await aliceRoom.sub.publish(encode({ text: 'from alice' }));
  assert.deepEqual((await bobRoom.inbox.next('alice message at bob')).data, { text: 'from alice' });
  await api('publish', { channel: 'room:1', data: { marker: 1 } });
  // Order is kept per channel: had alice got her own message, it would come first.
  assert.deepEqual((await aliceRoom.inbox.next('marker 1 at alice')).data, { marker: 1 });
  assert.deepEqual((await bobRoom.inbox.next('marker 1 at bob')).data, { marker: 1 });
  log('exclude publisher: an API publish naming a client skips that client');
  await api('publish', { channel: 'room:1', data: { text: 'for all but bob' }, client: bob.id });
  await api('publish', { channel: 'room:1', data: { marker: 2 } });
  assert.deepEqual((await aliceRoom.inbox.take(2, 'alice after api')).map((p) => p.data), [{ text: 'for all but bob' }, { marker: 2 }]);
  assert.deepEqual((await bobRoom.inbox.next('marker 2 at bob')).data, { marker: 2 });

  log('tags filters: each subscriber gets exactly the matching publications');
  const coins = await subscribe(alice.client, 'ticks:market', { tagsFilter: { key: 'ticker', cmp: 'in', vals: ['BTC', 'ETH'] } });
  const bigBtc = await subscribe(bob.client, 'ticks:market', {
    tagsFilter: { op: 'and', nodes: [{ key: 'ticker', cmp: 'eq', val: 'BTC' }, { key: 'price', cmp: 'gt', val: '100' }] },
  });
  const ticks = [
    ['BTC', '50'],
    ['SOL', '500'],
    ['ETH', '300'],
    ['BTC', '150'],
    ['DOGE', '1'],
    ['BTC', '1000'],
  ];
  for (const [n, [ticker, price]] of ticks.entries()) {
    await api('publish', { channel: 'ticks:market', data: { n }, tags: { ticker, price } });
  }
  assert.deepEqual((await coins.inbox.take(4, 'coins')).map((p) => p.data.n), [0, 2, 3, 5]);
  assert.deepEqual((await bigBtc.inbox.take(2, 'big btc')).map((p) => p.data.n), [3, 5]);
  assert.deepEqual(coins.inbox.items, [], 'coins got extra publications');
  assert.deepEqual(bigBtc.inbox.items, [], 'big btc got extra publications');

  log('fossil delta: the SDK rebuilds every payload');
  const deltaSub = await subscribe(alice.client, 'score:match', { delta: 'fossil', recoverable: true });
  const plainSub = await subscribe(bob.client, 'score:match', { recoverable: true });
  const published = [];
  for (let n = 1; n <= 20; n++) {
    published.push(scoreboard(n));
    await api('publish', { channel: 'score:match', data: scoreboard(n) });
  }
  assert.deepEqual((await deltaSub.inbox.take(20, 'delta sub')).map((p) => p.data), published, 'delta payloads');
  assert.deepEqual((await plainSub.inbox.take(20, 'plain sub')).map((p) => p.data), published, 'plain payloads');
  const stats = deltaSub.sub.deltaStats();
  assert.equal(stats.numFullPayloads, 1, `only the first in full: ${JSON.stringify(stats)}`);
  assert.equal(stats.numDeltaPayloads, 19, `the rest as deltas: ${JSON.stringify(stats)}`);
  assert.ok(stats.bytesReceived * 5 < stats.bytesDecoded, `deltas save bandwidth: ${JSON.stringify(stats)}`);

  log('fossil delta: recovery, then live publications again');
  const resubscribed = once(deltaSub.sub, 'subscribed', 'resubscribed after reconnect');
  alice.client.disconnect();
  for (let n = 21; n <= 23; n++) {
    published.push(scoreboard(n));
    await api('publish', { channel: 'score:match', data: scoreboard(n) });
  }
  alice.client.connect();
  const again = await resubscribed;
  assert.equal(again.wasRecovering, true);
  assert.equal(again.recovered, true, `not recovered: ${JSON.stringify(again)}`);
  for (let n = 24; n <= 26; n++) {
    published.push(scoreboard(n));
    await api('publish', { channel: 'score:match', data: scoreboard(n) });
  }
  assert.deepEqual((await deltaSub.inbox.take(6, 'after recovery')).map((p) => p.data), published.slice(20), 'recovered and live payloads');
  const after = deltaSub.sub.deltaStats();
  // 3 recovered (full) + the first live one (full), then deltas.
  assert.equal(after.numFullPayloads, 1 + 4, `full after recovery: ${JSON.stringify(after)}`);
  assert.equal(after.numDeltaPayloads, 19 + 2, `deltas after recovery: ${JSON.stringify(after)}`);

  log('done');
  for (const c of [alice, bob, mallory]) c.client.disconnect();
  console.log(`${TAG} OK: user-limited, exclude-publisher, tags filters and fossil delta (${after.bytesReceived} of ${after.bytesDecoded} bytes) checked`);
}

main().then(
  () => {
    clearTimeout(hardTimeout);
    process.exit(0);
  },
  (err) => {
    clearTimeout(hardTimeout);
    console.error(`channel_features.mjs: FAILED at step "${step}": ${err?.stack ?? err}`);
    process.exit(1);
  },
);
