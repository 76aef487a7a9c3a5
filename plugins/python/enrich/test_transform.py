"""Logic tests of the enrich plugin (plain CPython, no component runtime).

Run from plugins/python/enrich: python -m unittest -v test_transform
"""

import json
import unittest

from transform import ConfigError, normalize_user, parse_config, transform


def run(config: dict, payload, now_ms=None, user=None):
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    out = transform(data, parse_config(json.dumps(config)), now_ms=now_ms, user=user)
    return None if out is None else json.loads(out)


class ConfigTests(unittest.TestCase):
    def test_empty_config_is_valid(self):
        for text in ("", "{}", "  "):
            c = parse_config(text)
            self.assertEqual((c.add_fields, c.rename, c.drop, c.received_at, c.user_field), ({}, {}, [], None, None))
            self.assertFalse(c.needs_clock)

    def test_full_config(self):
        c = parse_config(json.dumps({
            "add_fields": {"v": 2, "src": "gw"}, "rename": {"msg": "text"}, "drop": ["secret"],
            "received_at": "received_at", "user_field": "user",
        }))
        self.assertEqual(c.add_fields, {"v": 2, "src": "gw"})
        self.assertEqual(c.rename, {"msg": "text"})
        self.assertEqual(c.drop, ["secret"])
        self.assertTrue(c.needs_clock)

    def test_invalid_configs(self):
        cases = [
            ("nope", "not valid JSON"),
            ("[]", "must be a table"),
            ('{"add":{}}', "unknown config key `add`"),
            ('{"add_fields":[1]}', "`add_fields` must be a table"),
            ('{"add_fields":{"":1}}', "non-empty string"),
            ('{"rename":["a"]}', "`rename` must be a table"),
            ('{"rename":{"a":1}}', "`rename.a`"),
            ('{"rename":{"a":""}}', "`rename.a`"),
            ('{"drop":"a"}', "`drop` must be a list"),
            ('{"drop":[1]}', "a `drop` entry"),
            ('{"received_at":true}', "`received_at`"),
            ('{"user_field":""}', "`user_field`"),
        ]
        for text, message in cases:
            with self.subTest(text=text):
                with self.assertRaises(ConfigError) as ctx:
                    parse_config(text)
                self.assertIn(message, str(ctx.exception))


class TransformTests(unittest.TestCase):
    def test_drop_rename_add_in_order(self):
        out = run(
            {"drop": ["secret"], "rename": {"msg": "text", "secret": "leak"}, "add_fields": {"v": 2, "meta": {"a": [1]}}},
            {"msg": "hi", "secret": "s", "n": 1},
        )
        self.assertEqual(out, {"text": "hi", "n": 1, "v": 2, "meta": {"a": [1]}})

    def test_rename_keeps_position(self):
        data = transform(b'{"a":1,"b":2,"c":3}', parse_config('{"rename":{"b":"B"}}'))
        self.assertEqual(data, b'{"a":1,"B":2,"c":3}')

    def test_rename_overwrites_an_existing_target(self):
        self.assertEqual(run({"rename": {"a": "b"}}, {"a": 1, "b": 2}), {"b": 1})
        self.assertEqual(run({"rename": {"b": "a"}}, {"a": 1, "b": 2}), {"a": 2})
        self.assertEqual(run({"rename": {"a": "b", "b": "a"}}, {"a": 1, "b": 2}), {"b": 1, "a": 2})
        self.assertEqual(run({"rename": {"a": "b"}, "drop": ["a"]}, {"a": 1, "b": 2}), {"b": 2})

    def test_server_fields_cannot_be_forged(self):
        out = run({"received_at": "at", "user_field": "user"}, {"at": 1, "user": "mallory", "x": 1}, now_ms=1700000000123, user="  ÁLICE ")
        self.assertEqual(out, {"at": 1700000000123, "user": "álice", "x": 1})
        # Server publishes have no publisher: a client-looking field is removed.
        self.assertEqual(run({"user_field": "user"}, {"user": "mallory"}), {})

    def test_received_at_omitted_without_clock(self):
        self.assertIsNone(run({"received_at": "at"}, {"x": 1}, now_ms=None))

    def test_unchanged_and_non_object_payloads_pass(self):
        cfg = {"drop": ["missing"], "add_fields": {"v": 1}}
        self.assertIsNone(run({"drop": ["missing"]}, {"x": 1}))
        self.assertIsNone(run({"add_fields": {"x": 1}}, {"x": 1}))
        for payload in ([1, 2], "text", 3, None):
            self.assertIsNone(run(cfg, payload))
        self.assertIsNone(run(cfg, b"not json"))
        self.assertIsNone(run(cfg, b"\xff\xfe"))

    def test_output_is_compact_utf8(self):
        data = transform('{"t": "日本 😀"}'.encode(), parse_config('{"add_fields":{"k":"é"}}'))
        self.assertEqual(data, '{"t":"日本 😀","k":"é"}'.encode())

    def test_normalize_user(self):
        self.assertEqual(normalize_user("  Ａｌｉｃｅ "), "alice")
        self.assertEqual(normalize_user("STRASSE"), normalize_user("straße"))


if __name__ == "__main__":
    unittest.main()
