// Logic tests of the moderation plugin, run by `node --test` without any
// component runtime (the component uses the same functions).
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  DEFAULT_CODE,
  DEFAULT_REASON,
  findMatches,
  fold,
  lifecycle,
  maskText,
  moderateText,
  onPublish,
  parseConfig,
  publishHook,
  utf8Decode,
  utf8DecodeJs,
  utf8Encode,
  utf8EncodeJs,
} from "../moderation.js";

const mask = (words, text) => maskText(text, parseConfig({ words, mode: "mask" }).matcher).text;

function message(text, extra = {}) {
  return {
    channel: "chat:1",
    publisher: { user: "alice", client: "c1" },
    data: utf8Encode(text),
    tags: [["k", "v"]],
    contentType: "application/json",
    trace: { traceparent: "00-abc-def-01", tracestate: "" },
    ...extra,
  };
}

test("config defaults and validation", () => {
  const c = parseConfig("{}");
  assert.equal(c.mode, "block");
  assert.equal(c.code, DEFAULT_CODE);
  assert.equal(c.reason, DEFAULT_REASON);
  assert.equal(parseConfig("").mode, "block");
  const full = parseConfig(JSON.stringify({ words: ["a"], mode: "mask", code: 451, reason: "r", mask: "#" }));
  assert.deepEqual([full.mode, full.code, full.reason, full.mask], ["mask", 451, "r", "#"]);
  for (const [bad, why] of [
    ["not json", /not valid JSON/],
    ["[]", /must be a table/],
    ['{"words":"darn"}', /list of strings/],
    ['{"words":[1]}', /list of strings/],
    ['{"words":["  "]}', /no letters/],
    ['{"mode":"shout"}', /mode/],
    ['{"code":200}', /400..=499/],
    ['{"code":500}', /400..=499/],
    ['{"code":401.5}', /400..=499/],
    ['{"reason":""}', /reason/],
    ['{"mask":"**"}', /single character/],
    ['{"word":["typo"]}', /unknown config key `word`/],
  ]) {
    assert.throws(() => parseConfig(bad), (e) => typeof e === "string" && why.test(e), bad);
  }
});

test("fold is NFKC + lowercase", () => {
  assert.equal(fold("DARN"), "darn");
  assert.equal(fold("Ｄａｒｎ"), "darn"); // full-width
  assert.equal(fold("ﬁne"), "fine"); // ligature
  assert.equal(fold("Ä"), fold("A\u0308")); // composed vs decomposed
  assert.equal(fold("İstanbul").normalize("NFD").replace(/\p{M}/gu, ""), "istanbul");
});

test("matching is case-insensitive, Unicode-aware and on word boundaries", () => {
  assert.equal(mask(["darn"], "Darn it, DARN, darn!"), "**** it, ****, ****!");
  assert.equal(mask(["darn"], "darning darned undarn darn_it"), "darning darned undarn darn_it");
  assert.equal(mask(["darn"], "Ｄａｒｎ it"), "**** it");
  assert.equal(mask(["café"], "CAFE\u0301 and café and cafe"), "***** and **** and cafe");
  assert.equal(mask(["straße"], "STRASSE Straße"), "STRASSE ******");
  assert.equal(mask(["ärger"], "Ärger! ÄRGER?"), "*****! *****?");
  assert.equal(mask(["日本"], "日本語 と 日本"), "日本語 と **");
  assert.equal(mask(["darn"], "(darn)\n\"darn\""), "(****)\n\"****\"");
  assert.equal(mask(["😀x"], "😀x"), "😀*", "emoji are not word characters: the entry is the word x");
  assert.equal(mask(["x"], "😀x😀"), "😀*😀");
  assert.equal(mask([], "darn"), "darn");
});

test("phrases match across separators, longest first", () => {
  assert.equal(mask(["drat it"], "Drat-it! drat   IT; drat that"), "****-**! ****   **; drat that");
  assert.equal(mask(["drat", "drat it"], "drat it drat"), "**** ** ****");
  assert.deepEqual(findMatches("a drat it", parseConfig({ words: ["drat it"] }).matcher), [[2, 9]]);
  assert.equal(mask(["drat it"], "drat"), "drat");
});

test("JSON payloads: only string values are masked, JSON stays valid", () => {
  const state = parseConfig({ words: ["darn", "text"], mode: "mask" });
  const r = moderateText('{"text":"darn\\nok","n":[1,"Darn"],"darn":true}', state);
  assert.equal(r.action, "replace");
  assert.deepEqual(JSON.parse(r.text), { text: "****\nok", n: [1, "****"], darn: true });
  assert.deepEqual(moderateText('{"text":"fine"}', state), { action: "pass" });
  assert.deepEqual(moderateText("not json: darn", state), { action: "replace", text: "not json: ****" });
});

test("block mode denies with the configured code and reason", () => {
  const state = parseConfig({ words: ["darn"], mode: "block", code: 451, reason: "language" });
  assert.deepEqual(onPublish(message('{"text":"oh DARN"}'), state), {
    tag: "deny",
    val: { code: 451, reason: "language" },
  });
  assert.deepEqual(onPublish(message('{"text":"oh dear"}'), state), { tag: "pass" });
});

test("mask mode replaces data and keeps every other field", () => {
  const state = parseConfig({ words: ["darn"], mode: "mask" });
  const msg = message('{"text":"darn it"}');
  const r = onPublish(msg, state);
  assert.equal(r.tag, "replace");
  assert.equal(utf8Decode(r.val.data), '{"text":"**** it"}');
  for (const k of ["channel", "publisher", "tags", "contentType", "trace"]) assert.deepEqual(r.val[k], msg[k], k);
});

test("binary payloads pass untouched", () => {
  const state = parseConfig({ words: ["darn"], mode: "block" });
  assert.deepEqual(onPublish(message("", { data: new Uint8Array([0x64, 0xff, 0x61]) }), state), { tag: "pass" });
});

test("UTF-8 helpers round-trip and reject invalid input", () => {
  for (const s of ["", "ascii", "é", "日本", "😀", "a\u0000b"]) {
    const bytes = new TextEncoder().encode(s);
    assert.deepEqual(utf8Encode(s), bytes);
    assert.deepEqual(utf8EncodeJs(s), bytes);
    assert.equal(utf8Decode(bytes), s);
    assert.equal(utf8DecodeJs(bytes), s);
  }
  const long = "héllo wörld 😀 ".repeat(1000);
  assert.equal(utf8DecodeJs(new TextEncoder().encode(long)), long);
  for (const bad of [[0xc3], [0xed, 0xa0, 0x80], [0xc0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x80], [0xe2, 0x28, 0xa1]]) {
    assert.equal(utf8Decode(new Uint8Array(bad)), null, String(bad));
    assert.equal(utf8DecodeJs(new Uint8Array(bad)), null, String(bad));
  }
});

test("component exports: init then on-publish, init errors throw", () => {
  assert.throws(() => publishHook.onPublish(message("x")), /before init/);
  assert.throws(() => lifecycle.init('{"mode":"x"}'), /mode/);
  lifecycle.init(JSON.stringify({ words: ["darn"], mode: "mask" }));
  assert.equal(utf8Decode(publishHook.onPublish(message("darn")).val.data), "****");
});
