// Drives the chat example page (examples/chat/index.html, served by the Rust
// test with the centrifuge UMD bundle) in headless Debian Chromium: two
// browser contexts, alice and bob, chat in one room through the page's UI.
// Alice posts; bob's page marks it read and alice sees the receipt; alice
// edits and bob sees the new text; bob reacts and both see the count; bob
// types and alice sees the indicator; bob answers and sees alice's receipt.
// Every wait is page.waitForFunction with a bounded timeout; no sleeps.
//
// Env: SWITCHBOARD_WS_URL (ws://host:port of the gateway), SWITCHBOARD_PAGE_URL,
//      SWITCHBOARD_CHANNEL, SWITCHBOARD_TOKEN_ALICE, SWITCHBOARD_TOKEN_BOB.
//      CHROMIUM_PATH overrides /usr/bin/chromium.
// Exits 0 on success, 1 with a message on any failure, 2 on timeout.

import { chromium } from 'playwright-core';

const HARD_TIMEOUT_MS = 60_000;
const STEP_TIMEOUT_MS = 10_000;

function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`chat.mjs: missing env ${name}`);
    process.exit(1);
  }
  return value;
}

const gateway = env('SWITCHBOARD_WS_URL').replace(/\/$/, '');
const pageUrl = env('SWITCHBOARD_PAGE_URL');
const channel = env('SWITCHBOARD_CHANNEL');
const tokens = { alice: env('SWITCHBOARD_TOKEN_ALICE'), bob: env('SWITCHBOARD_TOKEN_BOB') };

let step = 'start';
let browser = null;
const hardTimeout = setTimeout(() => {
  console.error(`chat.mjs: FAILED: hard timeout after ${HARD_TIMEOUT_MS} ms (last step: ${step})`);
  process.exit(2);
}, HARD_TIMEOUT_MS);

function log(msg) {
  step = msg;
  console.log(`[browser-chat] ${msg}`);
}

const waitFor = (page, fn, arg) => page.waitForFunction(fn, arg, { timeout: STEP_TIMEOUT_MS, polling: 50 });

/** Waits until `selector` inside message `offset` has exactly `text`. */
const waitText = (page, offset, selector, text) =>
  waitFor(
    page,
    ({ offset, selector, text }) =>
      document.querySelector(`li[data-offset="${offset}"] ${selector}`)?.textContent === text,
    { offset, selector, text },
  );

async function open(user) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('console', (m) => console.log(`[${user} ${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => console.log(`[${user} error] ${e}`));
  const query = new URLSearchParams({ gateway, token: tokens[user], channel });
  await page.goto(`${pageUrl}?${query}`, { timeout: STEP_TIMEOUT_MS });
  await waitFor(page, () => window.chat && window.chat.sub.state === 'subscribed');
  return page;
}

async function main() {
  log('launch chromium');
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    timeout: 30_000,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-sync'],
  });
  log('open alice and bob');
  const alice = await open('alice');
  const bob = await open('bob');

  log('alice posts; both see it');
  await alice.fill('#text', 'hello bob');
  await alice.click('#send');
  for (const page of [alice, bob]) await waitText(page, 1, '.text', 'hello bob');
  await waitText(bob, 1, '.user', 'alice');

  log('bob read it: alice sees the receipt');
  await waitText(alice, 1, '.seen', 'seen by bob');

  log('alice edits; bob sees the new text');
  await alice.click('li[data-offset="1"] .edit');
  await alice.fill('#text', 'hello bob, edited');
  await alice.click('#send');
  for (const page of [alice, bob]) {
    await waitText(page, 1, '.text', 'hello bob, edited');
    await waitText(page, 1, '.edited', '(edited)');
  }

  log('bob reacts; both see the count');
  await bob.click('li[data-offset="1"] .react');
  for (const page of [alice, bob]) await waitText(page, 1, '.reactions', '👍 1');

  log('bob types; alice sees the indicator');
  await bob.type('#text', 'hi');
  await waitFor(alice, () => document.getElementById('typing').textContent === 'bob is typing…');

  log('bob answers; alice reads it and bob sees the receipt');
  await bob.click('#send');
  // Offsets: 1 message, 2 edit, 3 reaction, 4 bob's answer (typing and
  // receipts are not stored, so they take no offset).
  for (const page of [alice, bob]) await waitText(page, 4, '.text', 'hi');
  await waitText(bob, 4, '.seen', 'seen by alice');

  log('bob un-reacts; the count is gone for both');
  await bob.click('li[data-offset="1"] .react');
  for (const page of [alice, bob]) await waitText(page, 1, '.reactions', '');

  await browser.close();
  clearTimeout(hardTimeout);
  console.log('[browser-chat] OK');
}

main().catch(async (err) => {
  console.error(`chat.mjs: FAILED at step "${step}": ${err && err.stack ? err.stack : err}`);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
});
