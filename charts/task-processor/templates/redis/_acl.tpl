{{/*
The in-chart Redis' ACL: one user per role, each limited to the keys and commands that role was measured to send
(tests/test_acl_roles.py runs every role's whole job against this file, as rendered, on a real redis-server).

The file carries no password: each user's line holds a placeholder (ROLE_PASSWORD_SHA256) that the Redis Pod's
init container replaces with the SHA-256 of that role's password from the Secret (build-acl.sh below), so the same
file serves generated passwords and redis.auth.existingSecret alike.

Why each part is there:
- every role: data commands (@read/@write; key patterns below decide where), MULTI/EXEC pipelines, connection
  commands (HELLO, PING, CLIENT SETNAME for RQ's workers, CLIENT SETINFO for redis-py on Redis 7.2+), EVALSHA with
  SCRIPT LOAD/EXISTS (our Lua and RQ's; never EVAL), and INFO (RQ reads the server version). Then off again:
  @admin and @dangerous (FLUSHALL, FLUSHDB, CONFIG, MODULE, DEBUG, SHUTDOWN, KEYS, MONITOR, ACL, CLIENT KILL/LIST,
  SORT, MIGRATE, RESTORE, SWAPDB...), @scripting but those three (FUNCTION FLUSH/LOAD are @write, SCRIPT FLUSH is
  not @dangerous), and SCAN/RANDOMKEY (KEYS in installments: key patterns do not filter them).
- worker: all of RQ's keys (RQ's worker writes queues, jobs, registries, results, its own worker hash, the
  scheduler locks, rq:suspended reads and the registries' maintenance), SUBSCRIBE on its rq:pubsub:<name> channel
  (RQ's stop/kill commands), the reaper's task-processor:intermediate-seen:* and, write only (RENAME target),
  task-processor:foreign:*, and reads task-processor:autoscaler:* (`task-producer status` in a worker Pod, as
  NOTES.txt suggests without the autoscaler); and TIME, which the pop an idle worker sends ahead of its blocking
  wait calls for the job's start time.
- autoscaler: reads all of rq:*, writes the job data (RQ's scheduler step and the reaper move jobs between queues
  and registries and may fail a poison job), rq:workers (the reaper forgets dead workers) and the scheduler's
  locks and heartbeat hash, its status hash task-processor:autoscaler:* (the periodic tasks' schedule,
  task-processor:autoscaler:_cron, among them), and the reaper's keys as the worker. The periodic tasks (TASK_CRON)
  it enqueues need the producer's job data (it has it already) and the record of the ticks fired,
  task-processor:cron:ticks, that one key and no other. Workers' own hashes and rq:suspended stay read-only.
- producer: reads all of rq:* (status, wait, the workers), writes the job data (enqueue, enqueue_many, requeue,
  and what RQ's API does to jobs: enqueue_in, depends_on, cancel, delete), reads task-processor:autoscaler:*.
- dashboard: reads all of rq:* with read commands only when dashboard.readOnly is true; else also writes the job
  data (requeue, delete, empty, compact), like a producer.
- admin: everything; the Redis Pod's probes and humans (redis-cli --user admin).
- replica, sentinel (redis.sentinel.enabled): the replicas' login to the master (PSYNC, REPLCONF, PING) and the
  Sentinels' to every Redis (what the Redis Sentinel documentation lists: INFO, ROLE, SUBSCRIBE and PUBLISH on their
  hello channel, SLAVEOF/REPLICAOF and CONFIG REWRITE in MULTI/EXEC to promote and repoint, CLIENT KILL and SCRIPT
  KILL after a failover).
- default: off (no connection can log in as it) but allowed everything. Redis replays
  the MULTI/EXEC blocks of its AOF (every RQ pipeline, every Lua script's writes) as the default user and re-checks
  them against its ACL at EXEC: refused, they are silently skipped, and a Redis restarted from its AOF loses those
  jobs (redis/redis#14541, fixed by redis/redis#14545 in later releases).
*/}}
{{- define "task-processor.redisAcl" -}}
{{- $commands := "-@all +@read +@write +@transaction +@connection -@scripting -@admin -@dangerous -scan -randomkey +evalsha +script|load +script|exists +info" -}}
{{- $jobData := "~rq:queue:* ~rq:queues ~rq:job:* ~rq:results:* ~rq:execution:* ~rq:executions:* ~rq:wip:* ~rq:failed:* ~rq:finished:* ~rq:scheduled:* ~rq:deferred:* ~rq:canceled:* ~rq:group:* ~rq:groups" -}}
{{- $reaper := "~task-processor:intermediate-seen:* %W~task-processor:foreign:*" -}}
{{- $extra := .Values.redis.acl.extraRules -}}
user default off resetpass ~* &* +@all
user admin on #ADMIN_PASSWORD_SHA256 ~* &* +@all
user worker on #WORKER_PASSWORD_SHA256 resetkeys resetchannels ~rq:* {{ $reaper }} %R~task-processor:autoscaler:* &rq:pubsub:* {{ $commands }} +subscribe +unsubscribe +time{{ with $extra.worker }} {{ . }}{{ end }}
user autoscaler on #AUTOSCALER_PASSWORD_SHA256 resetkeys resetchannels %R~rq:* {{ $jobData }} ~rq:workers ~rq:workers:* ~rq:scheduler:* ~rq:scheduler-lock:* ~task-processor:autoscaler:* ~task-processor:cron:ticks {{ $reaper }} {{ $commands }}{{ with $extra.autoscaler }} {{ . }}{{ end }}
user producer on #PRODUCER_PASSWORD_SHA256 resetkeys resetchannels %R~rq:* {{ $jobData }} %R~task-processor:autoscaler:* {{ $commands }}{{ with $extra.producer }} {{ . }}{{ end }}
{{- if .Values.dashboard.readOnly }}
user dashboard on #DASHBOARD_PASSWORD_SHA256 resetkeys resetchannels %R~rq:* -@all +@read +@connection -@admin -@dangerous -scan -randomkey +info{{ with $extra.dashboard }} {{ . }}{{ end }}
{{- else }}
user dashboard on #DASHBOARD_PASSWORD_SHA256 resetkeys resetchannels %R~rq:* {{ $jobData }} {{ $commands }}{{ with $extra.dashboard }} {{ . }}{{ end }}
{{- end }}
{{- if .Values.redis.sentinel.enabled }}
user replica on #REPLICA_PASSWORD_SHA256 resetkeys resetchannels -@all +psync +replconf +ping
user sentinel on #SENTINEL_PASSWORD_SHA256 resetkeys allchannels -@all +multi +exec +slaveof +replicaof +ping +info +role +config|rewrite +client|setname +client|kill +script|kill +subscribe +publish
{{- end }}
{{- end }}

{{/*
The Sentinels' own users (redis.sentinel.enabled), in the ACL file each Sentinel reads (--sentinel with aclfile);
the same placeholders, filled in by the same script.
- default: no password, but it may only ask where the master and its replicas are (what a client's discovery
  sends: SENTINEL GET-MASTER-ADDR-BY-NAME, MASTERS, MASTER, REPLICAS/SLAVES, SENTINELS) and connection commands;
  the init container asks it at start, and clients that send no credentials to Sentinels use it.
- worker, autoscaler, producer, dashboard: the same, for clients that log in to Sentinels with their Redis user.
- sentinel: what the Sentinels log in to each other with (sentinel sentinel-user); everything.
- admin: everything; the probes and humans (redis-cli --user admin -p 26379).
Nobody else may change what a Sentinel monitors or force a failover (SENTINEL SET, REMOVE, FAILOVER, RESET...).
*/}}
{{- define "task-processor.sentinelAcl" -}}
{{- $discovery := "-@all +@connection -@admin -@dangerous +sentinel|get-master-addr-by-name +sentinel|masters +sentinel|master +sentinel|replicas +sentinel|slaves +sentinel|sentinels" -}}
user default on nopass resetchannels {{ $discovery }}
user admin on #ADMIN_PASSWORD_SHA256 ~* &* +@all
user sentinel on #SENTINEL_PASSWORD_SHA256 ~* &* +@all
{{- range $role := list "worker" "autoscaler" "producer" "dashboard" }}
user {{ $role }} on #{{ upper $role }}_PASSWORD_SHA256 resetchannels {{ $discovery }}
{{- end }}
{{- end }}

{{/*
The init container's script: the ACL file above with each placeholder replaced by the SHA-256 of that role's
password (from the environment, i.e. the Secret), written where redis-server reads it (--aclfile). Hashes, not
passwords, end up in the file (and in ACL LIST); an empty password stops the Pod with a line naming its key.
*/}}
{{- define "task-processor.redisAclScript" -}}
set -eu
umask 077
sha256() {
  if [ -z "$2" ]; then
    echo "the Redis password of the $1 user is empty: fill the key $1-password of the Secret" >&2
    exit 1
  fi
  printf '%s' "$2" | sha256sum | cut -d ' ' -f 1
}
admin=$(sha256 admin "$ADMIN_PASSWORD")
worker=$(sha256 worker "$WORKER_PASSWORD")
autoscaler=$(sha256 autoscaler "$AUTOSCALER_PASSWORD")
producer=$(sha256 producer "$PRODUCER_PASSWORD")
dashboard=$(sha256 dashboard "$DASHBOARD_PASSWORD")
{{- if .Values.redis.sentinel.enabled }}
replica=$(sha256 replica "$REPLICA_PASSWORD")
sentinel=$(sha256 sentinel "$SENTINEL_PASSWORD")
{{- end }}
sed -e "s/ADMIN_PASSWORD_SHA256/$admin/" \
    -e "s/WORKER_PASSWORD_SHA256/$worker/" \
    -e "s/AUTOSCALER_PASSWORD_SHA256/$autoscaler/" \
    -e "s/PRODUCER_PASSWORD_SHA256/$producer/" \
    -e "s/DASHBOARD_PASSWORD_SHA256/$dashboard/" \
{{- if .Values.redis.sentinel.enabled }}
    -e "s/REPLICA_PASSWORD_SHA256/$replica/" \
    -e "s/SENTINEL_PASSWORD_SHA256/$sentinel/" \
{{- end }}
    "$ACL_TEMPLATE" > "$ACL_FILE"
{{- if .Values.redis.sentinel.enabled }}
echo "wrote $ACL_FILE: $(cut -d ' ' -f 2 "$ACL_FILE" | tr '\n' ' ')"
{{- else }}
echo "wrote $ACL_FILE: users default (off), admin, worker, autoscaler, producer, dashboard"
{{- end }}
{{- end }}

{{/*
The roles with a Redis user and a password in the Secret (key "<role>-password"); with Sentinel also "replica"
(the replicas' login to the master, masteruser) and "sentinel" (the Sentinels' login to Redis and to each other).
*/}}
{{- define "task-processor.redisRoles" -}}
admin worker autoscaler producer dashboard{{ if .Values.redis.sentinel.enabled }} replica sentinel{{ end }}
{{- end }}

{{- define "task-processor.redisAclName" -}}
{{- printf "%s-acl" (include "task-processor.redisName" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
