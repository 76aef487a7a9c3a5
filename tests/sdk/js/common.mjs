// What every SDK script in this folder shares: the server API call and
// waiting reads with a step timeout. Each script keeps its own environment,
// progress log and hard timeout, since those name the script.

import assert from 'node:assert/strict';

export const STEP_TIMEOUT_MS = 5_000;

/** A caller of the server HTTP API under `apiUrl` (the `/api` prefix) that
 * returns a method's `result` and fails on an HTTP error or an `error`. */
export function apiCaller(apiUrl, apiKey) {
  return async function api(method, params) {
    const resp = await fetch(`${apiUrl}/${method}`, {
      method: 'POST',
      headers: { 'X-API-Key': apiKey, 'Content-Type': 'application/json' },
      body: JSON.stringify(params),
    });
    const text = await resp.text();
    assert.equal(resp.status, 200, `api ${method} answered HTTP ${resp.status}: ${text}`);
    const body = JSON.parse(text);
    assert.ok(!body.error, `api ${method} failed: ${text}`);
    return body.result;
  };
}

/** Resolves with the next `event` of `emitter`, or rejects after a timeout. */
export function once(emitter, event, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.removeListener(event, handler);
      reject(new Error(`timed out waiting for ${what}`));
    }, STEP_TIMEOUT_MS);
    const handler = (ctx) => {
      clearTimeout(timer);
      emitter.removeListener(event, handler);
      resolve(ctx);
    };
    emitter.on(event, handler);
  });
}

/** The publications of one subscription, each passed through `map`, with a
 * waiting read; `all` keeps every one ever received. */
export class Inbox {
  constructor(sub, map = (ctx) => ctx) {
    this.all = [];
    this.items = [];
    this.waiters = [];
    sub.on('publication', (ctx) => {
      const item = map(ctx);
      this.all.push(item);
      const waiter = this.waiters.shift();
      if (waiter) waiter(item);
      else this.items.push(item);
    });
  }

  next(what) {
    if (this.items.length > 0) return Promise.resolve(this.items.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), STEP_TIMEOUT_MS);
      this.waiters.push((item) => {
        clearTimeout(timer);
        resolve(item);
      });
    });
  }

  async take(n, what) {
    const out = [];
    for (let i = 0; i < n; i++) out.push(await this.next(`${what} #${i + 1}`));
    return out;
  }
}
