// Runs the built component (dist/moderation.wasm transpiled by jco into
// dist/js) and checks init and on-publish through the real bindings: the
// QuickJS engine inside must agree with Node on the Unicode handling.
// Run by build.sh; not a `node --test` file (it needs the build).
import assert from "node:assert/strict";

import { lifecycle, publishHook } from "../dist/js/moderation.js";

const enc = new TextEncoder();
const dec = new TextDecoder();
const message = (text) => ({
  channel: "chat:1",
  publisher: { user: "alice", client: "c1" },
  data: enc.encode(text),
  tags: [["k", "v"]],
  contentType: "application/json",
  trace: { traceparent: "", tracestate: "" },
});

assert.throws(() => lifecycle.init('{"words":"darn"}'), (e) => /list of strings/.test(e.payload ?? e.message));

lifecycle.init(JSON.stringify({ words: ["darn", "drat it"], mode: "mask" }));
const masked = publishHook.onPublish(message('{"text":"Oh DARN, Ｄａｒｎ! darning. Drat-it café"}'));
assert.equal(masked.tag, "replace");
assert.equal(dec.decode(masked.val.data), '{"text":"Oh ****, ****! darning. ****-** café"}');
assert.equal(masked.val.channel, "chat:1");
assert.deepEqual(masked.val.publisher, { user: "alice", client: "c1" });
assert.deepEqual(masked.val.tags, [["k", "v"]]);
assert.equal(publishHook.onPublish(message('{"text":"clean"}')).tag, "pass");
assert.equal(dec.decode(publishHook.onPublish(message("plain darn")).val.data), "plain ****");

lifecycle.init(JSON.stringify({ words: ["darn"], mode: "block", code: 451, reason: "language" }));
assert.deepEqual(publishHook.onPublish(message('{"text":"darn"}')), { tag: "deny", val: { code: 451, reason: "language" } });

const big = message(JSON.stringify({ text: "hello wörld ".repeat(85) }));
const t0 = performance.now();
for (let i = 0; i < 50; i++) publishHook.onPublish(big);
console.log(`component smoke test ok (on-publish ~1 KiB under node/jco: ${((performance.now() - t0) / 50).toFixed(2)} ms)`);
