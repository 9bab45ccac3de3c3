"""The core both sides share: settings, the Redis connection, errors, logs, key names, reads and Lua scripts.

Nothing here runs an RQ worker or talks to Kubernetes: ``worker`` and ``producer`` build on it, never the reverse.
"""
