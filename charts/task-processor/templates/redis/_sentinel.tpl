{{/*
Redis with Sentinel (redis.sentinel.enabled): what each Redis Pod's init container writes before Redis and its
Sentinel start, from the ConfigMap "<fullname>-redis-sentinel" (sentinel-configmap.yaml).

The ConfigMap's redis.conf and sentinel.conf hold what every Pod shares; the init script (sentinelInitScript)
appends what depends on the Pod and on who the master is, and puts both files in /conf, an in-memory emptyDir
(they carry the replication and Sentinel passwords; Redis and Sentinel rewrite them on a failover).

Who the master is: whatever a Sentinel of another Pod answers (SENTINEL GET-MASTER-ADDR-BY-NAME), so a restarted Pod
comes back as a replica of the current master; when no Sentinel answers (first install, or every Pod restarting),
the first Pod (ordinal 0). Every address is the Pod's DNS name through the headless Service
(<pod>.<headless>.<namespace>.svc), announced by Redis (replica-announce-ip) and Sentinel (announce-ip,
announce-hostnames), so a Pod that restarts with a new IP keeps its address in every Sentinel's view.
*/}}

{{- define "task-processor.sentinelRedisConf" -}}
# Shared by every Redis Pod; the init container appends port, dir, aclfile, replica-announce-ip, masteruser,
# masterauth and, on a replica, replicaof.
appendonly yes
appendfsync {{ .Values.redis.appendfsync }}
stream-node-max-bytes {{ int .Values.redis.streamNodeMaxBytes }}
{{- end }}

{{- define "task-processor.sentinelConf" -}}
# Shared by every Sentinel; the init container appends port, dir, aclfile, announce-ip and the master set
# (sentinel monitor and its settings, the logins to Redis and to the other Sentinels).
# Reachable from other Pods: the default user may only ask where the master is (sentinel-users.acl).
protected-mode no
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
{{- end }}

{{- define "task-processor.sentinelInitScript" -}}
set -eu
umask 077
# The users of Redis and of the Sentinels, each password's hash in place of its placeholder.
ACL_TEMPLATE="$ACL_DIR/users.acl" ACL_FILE="$CONF_DIR/users.acl" sh "$ACL_DIR/build-acl.sh"
ACL_TEMPLATE="$ACL_DIR/sentinel-users.acl" ACL_FILE="$CONF_DIR/sentinel-users.acl" sh "$ACL_DIR/build-acl.sh"
case "$REPLICA_PASSWORD$SENTINEL_PASSWORD" in
  *[!A-Za-z0-9._~-]*)
    echo "replica-password and sentinel-password may hold letters, digits, '.', '_', '~' and '-' only:" \
      "they are written into redis.conf and sentinel.conf" >&2
    exit 1
    ;;
esac
# This Pod's address and the first Pod's, from REDIS_HOSTS (every Pod's, in ordinal order).
ordinal="${POD_NAME##*-}"
self=""
first=""
i=0
for host in $REDIS_HOSTS; do
  if [ "$i" -eq 0 ]; then first="$host"; fi
  if [ "$i" = "$ordinal" ]; then self="$host"; fi
  i=$((i + 1))
done
if [ -z "$self" ]; then
  echo "$POD_NAME: ordinal $ordinal has no address in REDIS_HOSTS ($REDIS_HOSTS)" >&2
  exit 1
fi
# The master: the one another Pod's Sentinel names (only an address of REDIS_HOSTS counts), else the first Pod.
master=""
for host in $REDIS_HOSTS; do
  if [ "$host" = "$self" ]; then continue; fi
  answer=$(timeout 5 redis-cli -h "$host" -p "$SENTINEL_PORT" --raw \
    sentinel get-master-addr-by-name "$MASTER_SET" 2> /dev/null | head -n 1) || answer=""
  for known in $REDIS_HOSTS; do
    if [ "$answer" = "$known" ]; then master="$answer"; fi
  done
  if [ -n "$master" ]; then
    echo "the Sentinel on $host names $master as the master"
    break
  fi
done
if [ -z "$master" ]; then
  master="$first"
  echo "no Sentinel answered: $master, the first Pod, is the master"
fi
# Sentinel refuses to start on a master name it cannot resolve: wait for the Pod's DNS record (an IPv4 address needs
# no lookup, and `getent hosts` would look its name up instead).
case "$master" in
  *[!0-9.]*)
    waited=0
    until getent hosts "$master" > /dev/null; do
      if [ "$waited" -ge "$RESOLVE_TIMEOUT" ]; then
        echo "$master does not resolve after $RESOLVE_TIMEOUT s" >&2
        exit 1
      fi
      sleep 1
      waited=$((waited + 1))
    done
    ;;
esac
{
  cat "$TEMPLATE_DIR/redis.conf"
  echo "port $REDIS_PORT"
  echo "dir $DATA_DIR"
  echo "aclfile $CONF_DIR/users.acl"
  echo "replica-announce-ip $self"
  echo "masteruser replica"
  echo "masterauth $REPLICA_PASSWORD"
  if [ "$master" != "$self" ]; then echo "replicaof $master $REDIS_PORT"; fi
} > "$CONF_DIR/redis.conf"
{
  cat "$TEMPLATE_DIR/sentinel.conf"
  echo "port $SENTINEL_PORT"
  echo "dir $CONF_DIR"
  echo "aclfile $CONF_DIR/sentinel-users.acl"
  echo "sentinel announce-ip $self"
  echo "sentinel monitor $MASTER_SET $master $REDIS_PORT $SENTINEL_QUORUM"
  echo "sentinel down-after-milliseconds $MASTER_SET $SENTINEL_DOWN_AFTER_MILLISECONDS"
  echo "sentinel failover-timeout $MASTER_SET $SENTINEL_FAILOVER_TIMEOUT"
  echo "sentinel parallel-syncs $MASTER_SET 1"
  echo "sentinel auth-user $MASTER_SET sentinel"
  echo "sentinel auth-pass $MASTER_SET $SENTINEL_PASSWORD"
  echo "sentinel sentinel-user sentinel"
  echo "sentinel sentinel-pass $SENTINEL_PASSWORD"
} > "$CONF_DIR/sentinel.conf"
if [ "$master" = "$self" ]; then
  echo "wrote $CONF_DIR/redis.conf and sentinel.conf: $self starts as the master"
else
  echo "wrote $CONF_DIR/redis.conf and sentinel.conf: $self starts as a replica of $master"
fi
{{- end }}

{{- define "task-processor.sentinelConfigName" -}}
{{- printf "%s-sentinel" (include "task-processor.redisName" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The Redis Pods' affinity with Sentinel: redis.affinity, plus a podAntiAffinity on kubernetes.io/hostname (preferred
or required, redis.sentinel.antiAffinity) unless redis.affinity sets one.
*/}}
{{- define "task-processor.sentinelAffinity" -}}
{{- $affinity := deepCopy (.Values.redis.affinity | default dict) }}
{{- if not (hasKey $affinity "podAntiAffinity") }}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "task-processor.componentSelectorLabels" (dict "ctx" . "component" "redis") | fromYaml)) }}
{{- if eq .Values.redis.sentinel.antiAffinity "required" }}
{{- $_ := set $affinity "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) }}
{{- else }}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) }}
{{- end }}
{{- end }}
{{- toYaml $affinity }}
{{- end }}
