// Drives headless Debian Chromium (playwright-core, /usr/bin/chromium)
// against a running Switchboard gateway. The page (served by the Rust test on
// another origin, allowed by `server.allowed_origins`) loads the UMD bundle of
// the unchanged npm `centrifuge` package. Three scenarios:
//   websocket  the SDK over WebSocket: subscribe, receive API publications;
//   fallback   WebSocket removed by an init script: the SDK falls back to
//              http_stream, then (second run) to sse, and receives publications;
//   uni_sse    a native EventSource on /connection/uni_sse; the server ends the
//              stream with a reconnect code; publications made meanwhile come
//              back when the browser's own reconnect sends Last-Event-ID: the
//              full sequence arrives with no gap and no duplicate.
// Every wait is page.waitForFunction with a bounded timeout; no sleeps.
//
// Env: SWITCHBOARD_HTTP_URL (gateway http://host:port), SWITCHBOARD_PAGE_URL
//      (the page), SWITCHBOARD_API_KEY, SWITCHBOARD_TOKEN_<NAME> for the users
//      ws, http_stream, sse (plain tokens) and uni (with the `channels` claim
//      for SWITCHBOARD_UNI_CHANNEL), SWITCHBOARD_UNI_CHANNEL.
//      CHROMIUM_PATH overrides /usr/bin/chromium.
// Exits 0 on success, 1 with a message on any failure, 2 on timeout.

import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const HARD_TIMEOUT_MS = 60_000;
const STEP_TIMEOUT_MS = 10_000;

function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`run.mjs: missing env ${name}`);
    process.exit(1);
  }
  return value;
}

const gateway = env('SWITCHBOARD_HTTP_URL').replace(/\/$/, '');
const pageUrl = env('SWITCHBOARD_PAGE_URL');
const apiKey = env('SWITCHBOARD_API_KEY');
const uniChannel = env('SWITCHBOARD_UNI_CHANNEL');
const tokens = {
  ws: env('SWITCHBOARD_TOKEN_WS'),
  http_stream: env('SWITCHBOARD_TOKEN_HTTP_STREAM'),
  sse: env('SWITCHBOARD_TOKEN_SSE'),
  uni: env('SWITCHBOARD_TOKEN_UNI'),
};

let step = 'start';
let browser = null;
const hardTimeout = setTimeout(() => {
  console.error(`run.mjs: FAILED: hard timeout after ${HARD_TIMEOUT_MS} ms (last step: ${step})`);
  process.exit(2);
}, HARD_TIMEOUT_MS);

function log(msg) {
  step = msg;
  console.log(`[browser] ${msg}`);
}

async function api(method, params) {
  const resp = await fetch(`${gateway}/api/${method}`, {
    method: 'POST',
    headers: { 'X-API-Key': apiKey, 'Content-Type': 'application/json' },
    body: JSON.stringify(params),
  });
  const text = await resp.text();
  assert.equal(resp.status, 200, `api ${method} answered HTTP ${resp.status}: ${text}`);
  const body = JSON.parse(text);
  assert.ok(!body.error, `api ${method} failed: ${text}`);
  return body.result;
}

async function publish(channel, from, to) {
  for (let n = from; n <= to; n++) await api('publish', { channel, data: { n } });
}

const waitFor = (page, fn, arg) => page.waitForFunction(fn, arg, { timeout: STEP_TIMEOUT_MS, polling: 50 });

async function newPage(blockWebSocket) {
  const context = await browser.newContext();
  if (blockWebSocket) {
    // As in a browser or proxy where WebSocket is unavailable.
    await context.addInitScript(() => {
      window.WebSocket = undefined;
    });
  }
  const page = await context.newPage();
  page.on('console', (m) => console.log(`[page ${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => console.log(`[page error] ${e}`));
  await page.goto(pageUrl, { timeout: STEP_TIMEOUT_MS });
  await waitFor(page, () => typeof window.Centrifuge === 'function');
  return page;
}

/** The SDK in the page over `transports`; asserts it connects over `expect`. */
async function sdkScenario(name, transports, expect, token) {
  const channel = `chat:browser-${name}`;
  log(`${name}: connect`);
  const page = await newPage(name !== 'websocket');
  await page.evaluate(
    ({ gateway, transports, token, channel }) => {
      const endpoints = transports.map((transport) => ({
        transport,
        endpoint: `${gateway.replace(/^http/, transport === 'websocket' ? 'ws' : 'http')}/connection/${transport}`,
      }));
      const state = (window.state = { transport: null, subscribed: false, received: [], errors: [] });
      const client = new window.Centrifuge(endpoints, {
        token,
        emulationEndpoint: `${gateway}/emulation`,
      });
      client.on('connected', (ctx) => (state.transport = ctx.transport));
      client.on('error', (ctx) => state.errors.push(JSON.stringify(ctx.error ?? ctx)));
      const sub = client.newSubscription(channel);
      sub.on('subscribed', () => (state.subscribed = true));
      sub.on('publication', (ctx) => state.received.push(ctx.data.n));
      sub.subscribe();
      client.connect();
      window.client = client;
    },
    { gateway, transports, token, channel },
  );
  await waitFor(page, () => window.state.subscribed);
  const transport = await page.evaluate(() => window.state.transport);
  assert.equal(transport, expect, `${name}: connected over ${transport}`);
  log(`${name}: publish 3 over the server API`);
  await publish(channel, 1, 3);
  await waitFor(page, () => window.state.received.length >= 3);
  const state = await page.evaluate(() => window.state);
  assert.deepEqual(state.received, [1, 2, 3], `${name}: publications out of order`);
  await page.evaluate(() => window.client.disconnect());
  await page.context().close();
  console.log(`[browser] ${name} OK (${transport})`);
}

async function uniSseScenario() {
  log('uni_sse: open a native EventSource');
  const page = await newPage(false);
  const url = `${gateway}/connection/uni_sse?cf_connect=${encodeURIComponent(JSON.stringify({ token: tokens.uni }))}`;
  await page.evaluate(
    ({ url, channel }) => {
      const uni = (window.uni = { opens: 0, errors: 0, connects: [], received: [], disconnects: [], ids: [] });
      const source = new EventSource(url);
      source.onopen = () => uni.opens++;
      source.onerror = () => uni.errors++;
      source.onmessage = (event) => {
        const message = JSON.parse(event.data);
        if (event.lastEventId) uni.ids.push(event.lastEventId);
        if (message.connect) {
          uni.connects.push(message.connect);
          const sub = (message.connect.subs || {})[channel] || {};
          for (const p of sub.publications || []) uni.received.push(p.data.n);
        } else if (message.pub && message.channel === channel) {
          uni.received.push(message.pub.data.n);
        } else if (message.disconnect) {
          uni.disconnects.push(message.disconnect);
        }
      };
      window.source = source;
    },
    { url, channel: uniChannel },
  );
  await waitFor(page, () => window.uni.connects.length === 1);

  log('uni_sse: publish 1..3 live');
  await publish(uniChannel, 1, 3);
  await waitFor(page, () => window.uni.received.length >= 3);

  log('uni_sse: kill the stream mid-way (API disconnect, reconnect code 3011)');
  const user = await page.evaluate(() => window.uni.connects[0].client);
  assert.ok(user, 'the connect push names the client');
  await api('disconnect', { user: 'browser-uni', disconnect: { code: 3011, reason: 'force reconnect' } });
  await waitFor(page, () => window.uni.errors >= 1);
  const afterKill = await page.evaluate(() => window.uni);
  assert.equal(afterKill.disconnects[0]?.code, 3011, `disconnect event: ${JSON.stringify(afterKill.disconnects)}`);
  assert.ok(afterKill.ids.length > 0, 'events carried ids');

  // Chromium waits its reconnection time (about 3 s) before reconnecting:
  // these are published while no stream is open.
  log('uni_sse: publish 4..6 while the browser is reconnecting');
  await publish(uniChannel, 4, 6);
  await waitFor(page, () => window.uni.connects.length === 2 && window.uni.received.length >= 6);
  const reconnected = await page.evaluate(() => window.uni.connects[1].subs || {});
  const sub = reconnected[uniChannel] || {};
  assert.equal(sub.recovered, true, `the reconnect did not recover: ${JSON.stringify(reconnected)}`);

  log('uni_sse: publish 7 live after the resume');
  await publish(uniChannel, 7, 7);
  await waitFor(page, () => window.uni.received.length >= 7);
  const final = await page.evaluate(() => window.uni);
  assert.deepEqual(final.received, [1, 2, 3, 4, 5, 6, 7], 'the full sequence, with no gap and no duplicate');
  assert.equal(final.opens, 2, 'one automatic reconnect');
  await page.evaluate(() => window.source.close());
  await page.context().close();
  console.log('[browser] uni_sse OK');
}

async function main() {
  log('launch chromium');
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    timeout: 30_000,
    // Playwright gives each launch a fresh temporary --user-data-dir.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  await sdkScenario('websocket', ['websocket', 'http_stream', 'sse'], 'websocket', tokens.ws);
  await sdkScenario('http_stream', ['websocket', 'http_stream'], 'http_stream', tokens.http_stream);
  await sdkScenario('sse', ['websocket', 'sse'], 'sse', tokens.sse);
  await uniSseScenario();
  await browser.close();
  clearTimeout(hardTimeout);
  console.log('[browser] OK');
}

main().catch(async (err) => {
  console.error(`run.mjs: FAILED at step "${step}": ${err && err.stack ? err.stack : err}`);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
});
