"""Drives the unchanged PyPI `cent` client (Centrifugo HTTP API) against a
running Switchboard gateway: publish, history, presence, presence_stats and
an API error.

Env: SWITCHBOARD_API_URL (the /api prefix), SWITCHBOARD_API_KEY,
SWITCHBOARD_CLIENT_ID and SWITCHBOARD_USER (the WebSocket client the caller
keeps subscribed to chat:py). Exits 0 on success, 1 with a message otherwise.
"""

import os
import sys
import traceback

from cent import (
    Client,
    HistoryRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    StreamPosition,
)
from cent.exceptions import CentApiResponseError, CentUnauthorizedError

CHANNEL = "chat:py"


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        print(f"api_test.py: missing env {name}", file=sys.stderr)
        sys.exit(1)
    return value


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


def main() -> None:
    api_url = env("SWITCHBOARD_API_URL").rstrip("/")
    api_key = env("SWITCHBOARD_API_KEY")
    client_id = env("SWITCHBOARD_CLIENT_ID")
    user = env("SWITCHBOARD_USER")
    client = Client(api_url, api_key, timeout=5.0)

    print("[cent] publish")
    results = [client.publish(PublishRequest(channel=CHANNEL, data={"n": n})) for n in (1, 2, 3)]
    check([r.offset for r in results] == [1, 2, 3], f"publish offsets: {results}")
    epoch = results[0].epoch
    check(epoch != "", f"publish returned no epoch: {results[0]}")
    check(all(r.epoch == epoch for r in results), f"epoch changed between publishes: {results}")

    print("[cent] history")
    history = client.history(HistoryRequest(channel=CHANNEL, limit=10))
    check(history.epoch == epoch, f"history epoch {history.epoch!r} != {epoch!r}")
    check(history.offset == 3, f"history top offset {history.offset}")
    check([p.data for p in history.publications] == [{"n": 1}, {"n": 2}, {"n": 3}], f"history data: {history}")
    check([p.offset for p in history.publications] == [1, 2, 3], f"history offsets: {history}")

    position_only = client.history(HistoryRequest(channel=CHANNEL))
    check(position_only.publications == [], f"history without limit returned publications: {position_only}")
    check((position_only.offset, position_only.epoch) == (3, epoch), f"stream position: {position_only}")

    since = client.history(
        HistoryRequest(channel=CHANNEL, limit=10, since=StreamPosition(offset=1, epoch=epoch))
    )
    check([p.offset for p in since.publications] == [2, 3], f"history since offset 1: {since}")

    reverse = client.history(HistoryRequest(channel=CHANNEL, limit=2, reverse=True))
    check([p.offset for p in reverse.publications] == [3, 2], f"reverse history: {reverse}")

    print("[cent] presence")
    presence = client.presence(PresenceRequest(channel=CHANNEL))
    check(list(presence.presence.keys()) == [client_id], f"presence clients: {presence}")
    info = presence.presence[client_id]
    check(info.client == client_id and info.user == user, f"presence entry: {info}")

    stats = client.presence_stats(PresenceStatsRequest(channel=CHANNEL))
    check((stats.num_clients, stats.num_users) == (1, 1), f"presence stats: {stats}")

    empty = client.presence_stats(PresenceStatsRequest(channel="chat:py-nobody"))
    check((empty.num_clients, empty.num_users) == (0, 0), f"presence stats of an empty channel: {empty}")

    print("[cent] errors")
    try:
        client.publish(PublishRequest(channel="nosuchns:x", data={}))
    except CentApiResponseError as err:
        check(err.code == 102, f"unknown namespace gave code {err.code}: {err.message}")
    else:
        raise AssertionError("publish to an unknown namespace did not raise")

    try:
        Client(api_url, "wrong-key", timeout=5.0).publish(PublishRequest(channel=CHANNEL, data={}))
    except CentUnauthorizedError:
        pass
    else:
        raise AssertionError("a wrong API key did not raise CentUnauthorizedError")

    after = client.history(HistoryRequest(channel=CHANNEL))
    check(after.offset == 3, f"failed calls changed the stream: {after}")

    client.close()
    print("[cent] OK: publish, history, presence, presence_stats and errors checked")


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001 - report any failure with its trace
        print("api_test.py: FAILED", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
