"""Switchboard enrich plugin in Python, built into a WebAssembly component
with componentize-py (world ``enrich`` in wit/enrich.wit: exports
``switchboard:plugin/lifecycle`` and ``publish-hook``, imports the host
``clock``). The logic lives in transform.py."""

from typing import Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import clock, types

import transform

_config: Optional[transform.Config] = None


class Lifecycle(exports.Lifecycle):
    def init(self, config: str) -> None:
        global _config
        try:
            _config = transform.parse_config(config)
        except transform.ConfigError as e:
            raise Err(str(e))


class PublishHook(exports.PublishHook):
    def on_publish(self, msg: types.Message) -> types.PublishResult:
        if _config is None:
            raise RuntimeError("on-publish called before init")
        now = clock.now_ms() if _config.needs_clock else None
        user = msg.publisher.user if msg.publisher is not None else None
        data = transform.transform(msg.data, _config, now_ms=now, user=user)
        if data is None:
            return types.PublishResult_Pass()
        msg.data = data
        return types.PublishResult_Replace(msg)
