// Switchboard moderation plugin, written in JavaScript and built into a
// WebAssembly component (world `switchboard:plugin/publish-plugin@0.1.0`).
//
// It blocks or masks the words of a configured list in published messages.
// Matching is Unicode-aware: text is split into words (runs of letters,
// marks, digits and connector punctuation), and each word is compared after
// NFKC normalization and lowercasing, so "DARN", "Ｄａｒｎ" and "darn" are
// the same word while "darning" is not. An entry of several words ("drat
// it") matches those words in sequence, whatever separates them.
//
// The pure logic (config parsing, matching, message handling) is exported
// by name so `node --test` can exercise it without a component runtime; the
// component itself uses only `lifecycle` and `publishHook`.

/** Code used to deny when the config does not name one. */
export const DEFAULT_CODE = 403;
/** Reason used to deny when the config does not give one. */
export const DEFAULT_REASON = "message contains a blocked word";

const WORD = /[\p{L}\p{M}\p{N}\p{Pc}]+/gu;
const ASCII = /^[\x00-\x7f]*$/;
const CONFIG_KEYS = new Set(["words", "mode", "code", "reason", "mask"]);

/** The comparison key of one word: NFKC, lowercased, NFKC again. */
export function fold(word) {
  if (ASCII.test(word)) return word.toLowerCase();
  return word.normalize("NFKC").toLocaleLowerCase().normalize("NFKC");
}

/** The words of `text` with their UTF-16 offsets: `[{ start, end, key }]`. */
export function words(text) {
  const out = [];
  for (const m of text.matchAll(WORD)) {
    out.push({ start: m.index, end: m.index + m[0].length, key: fold(m[0]) });
  }
  return out;
}

/**
 * Parses and validates the plugin's config (the TOML table as JSON text or
 * an already parsed object). Throws a string describing the first problem.
 */
export function parseConfig(input) {
  let raw = input;
  if (typeof input === "string") {
    try {
      raw = input.trim() === "" ? {} : JSON.parse(input);
    } catch (e) {
      throw `config is not valid JSON: ${e && e.message ? e.message : e}`;
    }
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw "config must be a table";
  }
  for (const key of Object.keys(raw)) {
    if (!CONFIG_KEYS.has(key)) throw `unknown config key \`${key}\` (expected one of: ${[...CONFIG_KEYS].join(", ")})`;
  }
  const list = raw.words ?? [];
  if (!Array.isArray(list)) throw "`words` must be a list of strings";
  const phrases = [];
  for (const entry of list) {
    if (typeof entry !== "string") throw "`words` must be a list of strings";
    const keys = words(entry).map((w) => w.key);
    if (keys.length === 0) throw `\`words\` entry ${JSON.stringify(entry)} has no letters or digits`;
    phrases.push(keys);
  }
  const mode = raw.mode ?? "block";
  if (mode !== "block" && mode !== "mask") throw `\`mode\` must be "block" or "mask", not ${JSON.stringify(mode)}`;
  const code = raw.code ?? DEFAULT_CODE;
  if (!Number.isInteger(code) || code < 400 || code > 499) throw `\`code\` must be an integer in 400..=499, not ${JSON.stringify(code)}`;
  const reason = raw.reason ?? DEFAULT_REASON;
  if (typeof reason !== "string" || reason === "") throw "`reason` must be a non-empty string";
  const mask = raw.mask ?? "*";
  if (typeof mask !== "string" || [...mask].length !== 1) throw "`mask` must be a single character";
  return { mode, code, reason, mask, matcher: buildMatcher(phrases) };
}

/** Indexes phrases (lists of word keys) by their first word. */
function buildMatcher(phrases) {
  const byFirst = new Map();
  for (const phrase of phrases) {
    const bucket = byFirst.get(phrase[0]);
    if (bucket) bucket.push(phrase);
    else byFirst.set(phrase[0], [phrase]);
  }
  // Longest phrase first, so "drat it" wins over "drat".
  for (const bucket of byFirst.values()) bucket.sort((a, b) => b.length - a.length);
  return byFirst;
}

/** The UTF-16 spans `[start, end)` of `text` that match the list. */
export function findMatches(text, matcher) {
  if (matcher.size === 0) return [];
  // Cheap pre-check with one normalization of the whole text: a word's key
  // is a substring of the folded text, so when no first word of any entry
  // occurs in it there is nothing to find.
  const folded = fold(text);
  let possible = false;
  for (const key of matcher.keys()) {
    if (folded.includes(key)) {
      possible = true;
      break;
    }
  }
  if (!possible) return [];
  const ws = words(text);
  const spans = [];
  for (let i = 0; i < ws.length; ) {
    const bucket = matcher.get(ws[i].key);
    const hit = bucket && bucket.find((p) => p.length <= ws.length - i && p.every((k, j) => ws[i + j].key === k));
    if (hit) {
      spans.push([ws[i].start, ws[i + hit.length - 1].end]);
      i += hit.length;
    } else {
      i += 1;
    }
  }
  return spans;
}

/**
 * Masks every matched span: each letter, mark, digit or connector of a match
 * becomes `mask` (one per code point), separators inside a phrase are kept.
 * Returns `{ text, count }`.
 */
export function maskText(text, matcher, mask = "*") {
  const spans = findMatches(text, matcher);
  if (spans.length === 0) return { text, count: 0 };
  let out = "";
  let at = 0;
  for (const [start, end] of spans) {
    out += text.slice(at, start);
    out += text.slice(start, end).replace(WORD, (w) => mask.repeat([...w].length));
    at = end;
  }
  out += text.slice(at);
  return { text: out, count: spans.length };
}

/** Applies `fn` to every string value of a JSON value (not to keys). */
function mapStrings(value, fn) {
  if (typeof value === "string") return fn(value);
  if (Array.isArray(value)) return value.map((v) => mapStrings(v, fn));
  if (value !== null && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = mapStrings(v, fn);
    return out;
  }
  return value;
}

/**
 * Moderates a payload given as text. JSON payloads are parsed and only their
 * string values are inspected; anything else is treated as plain text.
 * Returns `{ action: "pass" }`, `{ action: "deny" }` or
 * `{ action: "replace", text }`.
 */
export function moderateText(text, state) {
  let json;
  let isJson = false;
  try {
    json = JSON.parse(text);
    isJson = true;
  } catch {
    isJson = false;
  }
  let count = 0;
  let masked;
  if (isJson) {
    const next = mapStrings(json, (s) => {
      const r = maskText(s, state.matcher, state.mask);
      count += r.count;
      return r.text;
    });
    masked = count > 0 ? JSON.stringify(next) : text;
  } else {
    const r = maskText(text, state.matcher, state.mask);
    count = r.count;
    masked = r.text;
  }
  if (count === 0) return { action: "pass" };
  if (state.mode === "block") return { action: "deny" };
  return { action: "replace", text: masked };
}

// --- UTF-8 (TextEncoder/TextDecoder are not in every JS engine) -----------

/** Decodes strict UTF-8; returns null for invalid input. */
export function utf8Decode(bytes) {
  if (typeof TextDecoder === "function") {
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      return null;
    }
  }
  return utf8DecodeJs(bytes);
}

/** `utf8Decode` in plain JavaScript, for engines without `TextDecoder`. */
export function utf8DecodeJs(bytes) {
  // Code units are collected and turned into a string in chunks: building
  // the string one character at a time is quadratic-ish in small engines.
  const units = [];
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i];
    if (b < 0x80) {
      units.push(b);
      i += 1;
      continue;
    }
    let cp;
    let n;
    if (b >= 0xc2 && b < 0xe0) {
      cp = b & 0x1f;
      n = 1;
    } else if (b >= 0xe0 && b < 0xf0) {
      cp = b & 0x0f;
      n = 2;
    } else if (b >= 0xf0 && b < 0xf5) {
      cp = b & 0x07;
      n = 3;
    } else {
      return null;
    }
    for (let j = 1; j <= n; j++) {
      const c = bytes[i + j];
      if (c === undefined || (c & 0xc0) !== 0x80) return null;
      cp = (cp << 6) | (c & 0x3f);
    }
    if ((n === 2 && (cp < 0x800 || (cp >= 0xd800 && cp < 0xe000))) || (n === 3 && (cp < 0x10000 || cp > 0x10ffff))) {
      return null;
    }
    if (cp >= 0x10000) units.push(0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
    else units.push(cp);
    i += n + 1;
  }
  let out = "";
  for (let i = 0; i < units.length; i += 4096) out += String.fromCharCode.apply(null, units.slice(i, i + 4096));
  return out;
}

/** Encodes a string as UTF-8. */
export function utf8Encode(text) {
  if (typeof TextEncoder === "function") return new TextEncoder().encode(text);
  return utf8EncodeJs(text);
}

/** `utf8Encode` in plain JavaScript, for engines without `TextEncoder`. */
export function utf8EncodeJs(text) {
  const out = [];
  for (const ch of text) {
    const cp = ch.codePointAt(0);
    if (cp < 0x80) out.push(cp);
    else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
    else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  }
  return new Uint8Array(out);
}

/**
 * The hook's decision for one message (a `message` record as the component
 * bindings give it), as a `publish-result` variant.
 */
export function onPublish(msg, state) {
  const text = utf8Decode(msg.data);
  if (text === null) return { tag: "pass" }; // binary payloads are not inspected
  const verdict = moderateText(text, state);
  switch (verdict.action) {
    case "deny":
      return { tag: "deny", val: { code: state.code, reason: state.reason } };
    case "replace":
      return { tag: "replace", val: { ...msg, data: utf8Encode(verdict.text) } };
    default:
      return { tag: "pass" };
  }
}

// --- component exports ---------------------------------------------------

let current = null;

/** `switchboard:plugin/lifecycle`: an invalid config throws (= `err`). */
export const lifecycle = {
  init(config) {
    current = parseConfig(config);
  },
};

/** `switchboard:plugin/publish-hook`. */
export const publishHook = {
  onPublish(msg) {
    if (current === null) throw new Error("on-publish called before init");
    return onPublish(msg, current);
  },
};
