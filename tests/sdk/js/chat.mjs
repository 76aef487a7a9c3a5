// Chat interactions with the unchanged `centrifuge` JS SDK (v5, over `ws`):
// two users in one room post, reply, edit, react, un-react, type, mark read,
// read unread counts, thread history and aggregates through `client.rpc`,
// and both see the same ordered interaction stream. Then one of them
// disconnects, misses an edit, a reaction and a delete, reconnects and
// recovers them; finally the permission failures the SDK surfaces.
//
// Env: SWITCHBOARD_WS_URL, SWITCHBOARD_TOKEN_ALICE, SWITCHBOARD_TOKEN_BOB,
//      SWITCHBOARD_CHANNEL (a namespace with chat = true).
// Exits 0 on success, 1 with a message on any failure, 2 on timeout.

import assert from 'node:assert/strict';
import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';
import { once, Inbox } from './common.mjs';

const HARD_TIMEOUT_MS = 25_000;

function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`chat.mjs: missing env ${name}`);
    process.exit(1);
  }
  return value;
}

const wsUrl = env('SWITCHBOARD_WS_URL');
const channel = env('SWITCHBOARD_CHANNEL');
const tokens = { alice: env('SWITCHBOARD_TOKEN_ALICE'), bob: env('SWITCHBOARD_TOKEN_BOB') };

let step = 'start';
const hardTimeout = setTimeout(() => {
  console.error(`chat.mjs: FAILED: hard timeout after ${HARD_TIMEOUT_MS} ms (last step: ${step})`);
  process.exit(2);
}, HARD_TIMEOUT_MS);

function log(msg) {
  step = msg;
  console.log(`[sdk-chat] ${msg}`);
}

const kind = (p) => p.tags?.['sb.kind'] ?? 'message';
/** What every subscriber must agree on for a stored interaction. */
const key = (p) => `${p.offset}:${kind(p)}:${p.tags?.['sb.ref'] ?? ''}:${p.info?.user ?? ''}`;

async function member(name) {
  const client = new Centrifuge(wsUrl, { websocket: WebSocket, token: tokens[name] });
  client.on('error', (ctx) => console.error(`[sdk-chat] ${name} error:`, JSON.stringify(ctx.error ?? ctx)));
  const sub = client.newSubscription(channel);
  const inbox = new Inbox(sub);
  const subscribed = once(sub, 'subscribed', `${name} subscribed`);
  sub.subscribe();
  client.connect();
  const ctx = await subscribed;
  assert.equal(ctx.recoverable, true, `${name}: subscription not recoverable: ${JSON.stringify(ctx)}`);
  return { client, sub, inbox, rpc: async (method, data) => (await client.rpc(method, data)).data };
}

async function rpcError(m, method, data) {
  try {
    await m.client.rpc(method, data);
  } catch (e) {
    return e;
  }
  throw new Error(`rpc ${method} ${JSON.stringify(data)} should have failed`);
}

async function main() {
  log('connect two users');
  const alice = await member('alice');
  const bob = await member('bob');

  log('post (SDK publish), reply, edit, react, un-react');
  await alice.sub.publish({ text: 'hello' });
  const reply = await bob.rpc('message.send', { channel, data: { text: 'hi alice' }, reply_to: 1 });
  assert.equal(reply.offset, 2);
  await alice.rpc('message.edit', { channel, offset: 1, data: { text: 'hello everyone' } });
  await bob.rpc('reaction.add', { channel, offset: 1, reaction: '👍' });
  await alice.rpc('reaction.add', { channel, offset: 1, reaction: '👍' });
  await alice.rpc('reaction.add', { channel, offset: 1, reaction: '🎉' });
  await alice.rpc('reaction.remove', { channel, offset: 1, reaction: '🎉' });

  log('same ordered stream for both');
  const expected = [
    '1:message::alice',
    '2:message::bob',
    '3:edit:1:alice',
    '4:reaction.add:1:bob',
    '5:reaction.add:1:alice',
    '6:reaction.add:1:alice',
    '7:reaction.remove:1:alice',
  ];
  const seenByAlice = await alice.inbox.take(expected.length, 'alice publication');
  const seenByBob = await bob.inbox.take(expected.length, 'bob publication');
  assert.deepEqual(seenByAlice.map(key), expected);
  assert.deepEqual(seenByBob.map(key), expected);
  assert.deepEqual(seenByBob[2].data, { text: 'hello everyone' });
  assert.equal(seenByBob[1].tags['sb.reply_to'], '1');
  assert.equal(seenByBob[1].tags['sb.thread'], '1');

  log('typing and read receipts are live');
  assert.deepEqual(await bob.rpc('typing', { channel }), { sent: true });
  assert.deepEqual(await bob.rpc('typing', { channel }), { sent: false }, 'typing within the throttle is not sent');
  const typing = await alice.inbox.next('typing event');
  assert.equal(kind(typing), 'typing');
  assert.equal(typing.info.user, 'bob');
  await bob.rpc('read.mark', { channel, offset: 1 });
  const receipt = await alice.inbox.next('read receipt');
  assert.deepEqual(receipt.tags, { 'sb.kind': 'read', 'sb.ref': '1' });
  assert.equal(receipt.info.user, 'bob');
  // Bob sees his own ephemeral events too; drain them.
  assert.deepEqual((await bob.inbox.take(2, 'own ephemeral')).map(kind), ['typing', 'read']);

  log('unread counts, thread history, aggregates');
  const aliceUnread = await alice.rpc('unread.counts', { channels: [channel] });
  assert.deepEqual(aliceUnread.channels[channel], { last_read: 0, unread: 1 }, 'alice: bob\'s reply is unread');
  const bobUnread = await bob.rpc('unread.counts', { channels: [channel] });
  assert.deepEqual(bobUnread.channels[channel], { last_read: 1, unread: 0 });
  const thread = await alice.rpc('thread.history', { channel, offset: 1, limit: 10 });
  assert.deepEqual(thread.replies.map((r) => [r.offset, r.user, r.data.text]), [[2, 'bob', 'hi alice']]);
  const agg = await bob.rpc('message.get', { channel, offset: 1 });
  assert.deepEqual(agg, {
    offset: 1,
    user: 'alice',
    data: { text: 'hello everyone' },
    edits: 1,
    deleted: false,
    replies: 1,
    reactions: [{ reaction: '👍', count: 2, users: ['alice', 'bob'], me: true }],
  });

  log('bob disconnects; alice edits, reacts and deletes');
  const disconnected = once(bob.client, 'disconnected', 'bob disconnected');
  bob.client.disconnect();
  await disconnected;
  await alice.rpc('message.edit', { channel, offset: 1, data: { text: 'hello again' } });
  await alice.rpc('reaction.remove', { channel, offset: 1, reaction: '👍' });
  await alice.rpc('message.send', { channel, data: { text: 'oops' } });
  await alice.rpc('message.delete', { channel, offset: 10 });

  log('bob reconnects and recovers');
  const resubscribed = once(bob.sub, 'subscribed', 'bob resubscribed');
  bob.client.connect();
  const rec = await resubscribed;
  assert.equal(rec.recovered, true, `not recovered: ${JSON.stringify(rec)}`);
  const missed = await bob.inbox.take(4, 'recovered interaction');
  assert.deepEqual(missed.map(key), ['8:edit:1:alice', '9:reaction.remove:1:alice', '10:message::alice', '11:delete:10:alice']);
  const liveAlice = (await alice.inbox.take(4, 'alice live')).map(key);
  assert.deepEqual(liveAlice, missed.map(key), 'the reconnected client has the stream alice saw live');
  const after = await bob.rpc('message.get', { channel, offset: 1 });
  assert.deepEqual([after.data, after.edits, after.reactions], [{ text: 'hello again' }, 2, [{ reaction: '👍', count: 1, users: ['bob'], me: true }]]);
  const gone = await bob.rpc('message.get', { channel, offset: 10 });
  assert.equal(gone.deleted, true);

  log('permission failures');
  const notMine = await rpcError(bob, 'message.edit', { channel, offset: 1, data: { text: 'hijack' } });
  assert.equal(notMine.code, 103, JSON.stringify(notMine));
  const nothing = await rpcError(bob, 'reaction.add', { channel, offset: 999, reaction: '👍' });
  assert.equal(nothing.code, 107, JSON.stringify(nothing));
  assert.equal(nothing.message, 'message not found (offset 999)');
  const deleted = await rpcError(alice, 'message.edit', { channel, offset: 10, data: { text: 'undo' } });
  assert.equal(deleted.message, 'message is deleted (offset 10)');

  alice.client.disconnect();
  bob.client.disconnect();
  console.log(`[sdk-chat] OK: ${expected.length} interactions in one order for both, 4 recovered after reconnect`);
}

main().then(
  () => {
    clearTimeout(hardTimeout);
    process.exit(0);
  },
  (err) => {
    clearTimeout(hardTimeout);
    console.error(`chat.mjs: FAILED at step "${step}": ${err?.stack ?? err}`);
    process.exit(1);
  },
);
