"""Run the commands RQ queued for an enqueue as one Lua script: all of them or none, and at most once.

MULTI/EXEC does not roll back: when one command fails (a queue key holding foreign data), the others still
apply, leaving a task queued on one queue and an orphaned job hash for the other. The script first checks that
every key it will write holds the type RQ keeps there (or nothing), and writes only then.

redis-py resends a command whose connection broke before the reply came (a Redis restart). The script's
receipt makes that resend harmless: when the batch's first job hash already carries this batch's
``created_at``, the batch was applied and the script writes nothing again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

# KEYS[1]: the receipt (first job's hash); KEYS[1 + i]: the key command i writes.
# ARGV[1]: the receipt value; then per command its name, its argument count and its arguments after the key.
# Returns 1 when it wrote, 0 when the receipt shows this batch was already written.
_RUN_CHECKED = """
local wants = {SADD = 'set', HSET = 'hash', RPUSH = 'list', LPUSH = 'list', ZADD = 'zset', EXPIRE = '', PERSIST = ''}
local commands, pos = {}, 2
for i = 2, #KEYS do
  local name, argc = string.upper(ARGV[pos]), tonumber(ARGV[pos + 1])
  local want = wants[name]
  if want == nil then return redis.error_reply('ERR enqueue does not expect the command ' .. name) end
  if want ~= '' then
    local have = redis.call('TYPE', KEYS[i])['ok']
    if have ~= 'none' and have ~= want then
      return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. have .. ', not a ' .. want)
    end
  end
  commands[#commands + 1] = {name, KEYS[i], unpack(ARGV, pos + 2, pos + 1 + argc)}
  pos = pos + 2 + argc
end
if redis.call('HGET', KEYS[1], 'created_at') == ARGV[1] then return 0 end
for _, command in ipairs(commands) do redis.call(unpack(command)) end
return 1
"""


class CheckedRun:
    """One registered script per client; ``run`` takes the command stack of a pipeline RQ filled."""

    def __init__(self, connection: redis.Redis) -> None:
        self._script = connection.register_script(_RUN_CHECKED)

    def run(self, commands: Sequence[tuple[tuple[Any, ...], dict[str, Any]]], receipt: tuple[str, str]) -> bool:
        """True when this call wrote the batch, False when an earlier (resent) call already had."""
        keys: list[Any] = [receipt[0]]
        args: list[Any] = [receipt[1]]
        for (name, key, *rest), _options in commands:
            keys.append(key)
            args += [name, len(rest), *rest]
        return bool(self._script(keys=keys, args=args))
