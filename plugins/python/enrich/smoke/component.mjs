// Runs the built component (dist/enrich.wasm, transpiled by jco into
// dist/js with smoke/clock.js as the host clock) through init and
// on-publish. Run by build.sh after the build.
import assert from "node:assert/strict";

import { lifecycle, publishHook } from "../dist/js/enrich.js";

const enc = new TextEncoder();
const dec = new TextDecoder();
const message = (text, publisher = { user: " Ａlice ", client: "c1" }) => ({
  channel: "chat:1",
  publisher,
  data: enc.encode(text),
  tags: [["k", "v"]],
  contentType: "application/json",
  trace: { traceparent: "", tracestate: "" },
});

assert.throws(() => lifecycle.init('{"drop":"x"}'), (e) => /`drop` must be a list/.test(e.payload ?? e.message));

lifecycle.init(
  JSON.stringify({ drop: ["secret"], rename: { msg: "text" }, add_fields: { v: 1 }, received_at: "received_at", user_field: "user" }),
);
const r = publishHook.onPublish(message('{"msg":"hi","secret":1,"user":"mallory"}'));
assert.equal(r.tag, "replace");
assert.deepEqual(JSON.parse(dec.decode(r.val.data)), { text: "hi", v: 1, received_at: 1700000000123, user: "alice" });
assert.equal(r.val.channel, "chat:1");
assert.deepEqual(r.val.tags, [["k", "v"]]);
assert.deepEqual(r.val.publisher, { user: " Ａlice ", client: "c1" });
assert.equal(publishHook.onPublish(message("[1,2]")).tag, "pass");
assert.equal(publishHook.onPublish(message("not json")).tag, "pass");

const big = message(JSON.stringify({ msg: "hello wörld ".repeat(85) }));
const t0 = performance.now();
for (let i = 0; i < 50; i++) publishHook.onPublish(big);
console.log(`component smoke test ok (on-publish ~1 KiB under node/jco: ${((performance.now() - t0) / 50).toFixed(2)} ms)`);
