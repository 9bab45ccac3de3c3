"""The raw limit: a redis-py loop that moves list entries with BLMOVE and does nothing else.

An entry is ``noop``, ``done`` (the sentinel) or a float (the time a latency probe was sent).
"""

from __future__ import annotations

import time

from benchmarks.tasks import DONE_KEY, LATENCY_KEY, _redis

QUEUE, PROCESSING = "raw:queue", "raw:processing"


def main() -> None:
    connection = _redis()
    while True:
        entry = connection.blmove(QUEUE, PROCESSING, 1)
        if entry is None or entry == b"noop":
            continue
        if entry == b"done":
            connection.set(DONE_KEY, repr(time.time()))
        else:
            connection.rpush(LATENCY_KEY, repr(time.time() - float(entry)))


if __name__ == "__main__":
    main()
