"""An idle worker's wait for work: a blocking command and the script that follows it, in one write.

redis-py's pipeline spends, around two replies, more Python than an idle worker spends on the rest of the way
from its wake to its job's first line, and on a machine that was idle every line of it runs cold. So the two
commands go out on a connection of the worker's own, written and read directly, as the worker's other scripts are
(``worker.batching``): connected as the pool connects (a Sentinel's connection asks for the master), a lost
connection retried with the connection's own Retry, and an error reply named by its command, as the pipeline
named it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import redis
from redis.exceptions import NoScriptError

from task_processor.connection import name_error
from task_processor.packing import Packer, read_reply


class Waker:
    """A blocking wait then a script, for one worker slot (one thread), on a connection of its own."""

    def __init__(self, connection: redis.Redis) -> None:
        self._pool = connection.connection_pool
        self._wire: redis.Connection | None = None
        self._packer: Packer | None = None

    def wait_then_call(
        self,
        wait_key: str,
        wait: float,
        sha: str,
        keys: Sequence[Any],
        args: Sequence[Any],
        again: Sequence[Any] | None = None,
    ) -> Any:
        """Once ``wait_key`` holds an item or ``wait`` seconds passed, the reply of the script ``sha``, or the
        NoScriptError Redis answered when it has no such script (nothing ran then). Any other error reply
        raises. A lost connection is tried again with the script alone, with ``again`` for its arguments when
        given: the first send may have run it, and the script can tell that from them (lua/pop.lua)."""
        wire = self._wire
        if wire is None:
            wire = self._wire = cast(redis.Connection, self._pool.make_connection())
            self._packer = Packer(wire)
        assert self._packer is not None  # made with the connection
        # BLMOVE with the list as its own destination: nothing moves, and it returns once the list holds something.
        wait_command = ("BLMOVE", wait_key, wait_key, "RIGHT", "RIGHT", wait)
        script_command = ("EVALSHA", sha, len(keys), *keys, *args)
        packer, sent = self._packer, [False]

        def exchange() -> tuple[Any, Any]:
            wire.connect()
            if sent[0]:  # a retry: the script alone, as it may have run already
                wire.send_packed_command(packer.pack([("EVALSHA", sha, len(keys), *keys, *(again or args))]))
                return None, read_reply(wire)
            sent[0] = True
            wire.send_packed_command(packer.pack([wait_command, script_command]))
            return read_reply(wire), read_reply(wire)  # error replies too: the connection stays usable

        try:
            waited, reply = wire.retry.call_with_retry(exchange, lambda _: wire.disconnect())
        except BaseException:
            wire.disconnect()  # whatever was half sent or half read must not reach the next wait
            raise
        for command, outcome in ((wait_command, waited), (script_command, reply)):
            if isinstance(outcome, redis.ResponseError) and not isinstance(outcome, NoScriptError):
                raise name_error(outcome, command)
        return reply
