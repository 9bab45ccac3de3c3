{{/*
Expand the name of the chart.
*/}}
{{- define "task-processor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fully qualified app name: the worker Deployment's name and the prefix of every other object.
Unlike the `helm create` default it does not prepend the release name: the autoscaler, the README and ops
commands (`kubectl scale deployment task-processor`) expect "task-processor" whatever the release is called.
fullnameOverride wins; nameOverride replaces the chart name. Truncated at 63 characters (DNS label).
*/}}
{{- define "task-processor.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- include "task-processor.name" . }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "task-processor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "task-processor.labels" -}}
helm.sh/chart: {{ include "task-processor.chart" . }}
{{ include "task-processor.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "task-processor.name" . }}
{{- end }}

{{/*
Selector labels (shared by every component; each adds app.kubernetes.io/component).
*/}}
{{- define "task-processor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "task-processor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Per-component names, labels and selector labels. Call with (dict "ctx" $ "component" "worker").
*/}}
{{- define "task-processor.componentSelectorLabels" -}}
{{ include "task-processor.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "task-processor.componentLabels" -}}
{{ include "task-processor.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The default pool's Deployment name (what WORKER_DEPLOYMENT points at) and the prefix of the other pools' (_pools.tpl).
*/}}
{{- define "task-processor.workerName" -}}
{{- include "task-processor.fullname" . }}
{{- end }}

{{- define "task-processor.producerName" -}}
{{- printf "%s-producer" (include "task-processor.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "task-processor.redisName" -}}
{{- printf "%s-redis" (include "task-processor.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "task-processor.dashboardName" -}}
{{- printf "%s-dashboard" (include "task-processor.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The Lease the autoscalers elect their leader with: "<WORKER_DEPLOYMENT>-autoscaler" (producer/commands/autoscale.py).
*/}}
{{- define "task-processor.leaseName" -}}
{{- printf "%s-autoscaler" (include "task-processor.workerName" .) }}
{{- end }}

{{/*
Create the name of the service account to use (the autoscaler's).
*/}}
{{- define "task-processor.serviceAccountName" -}}
{{- if .Values.producer.serviceAccount.create }}
{{- default (include "task-processor.producerName" .) .Values.producer.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.producer.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference; call with (dict "image" .Values.worker.image "ctx" $).
*/}}
{{- define "task-processor.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag | toString) }}
{{- end }}

{{/*
The Secret holding the in-chart Redis users' passwords, one key "<role>-password" per user (templates/redis/_acl.tpl).
*/}}
{{- define "task-processor.redisSecretName" -}}
{{- default (include "task-processor.redisName" .) .Values.redis.auth.existingSecret }}
{{- end }}

{{/*
The Redis Pods' governing (headless) Service: each Pod's stable DNS name is <pod>.<this>.<namespace>.svc.
*/}}
{{- define "task-processor.redisHeadlessName" -}}
{{- printf "%s-headless" (include "task-processor.redisName" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The in-chart Redis Pods' DNS names with Sentinel, in ordinal order, space-separated: what the Sentinels announce
(so they agree on every address whatever IP a restarted Pod gets), and where clients find the Sentinels.
*/}}
{{- define "task-processor.redisHosts" -}}
{{- $name := include "task-processor.redisName" . }}
{{- $domain := printf "%s.%s.svc" (include "task-processor.redisHeadlessName" .) .Release.Namespace }}
{{- $hosts := list }}
{{- range $i := until (int .Values.redis.sentinel.replicas) }}
{{- $hosts = append $hosts (printf "%s-%d.%s" $name $i $domain) }}
{{- end }}
{{- join " " $hosts }}
{{- end }}

{{/*
The in-chart Sentinels as REDIS_URL lists them: host:26379,host:26379,...
*/}}
{{- define "task-processor.sentinelAddresses" -}}
{{- $addresses := list }}
{{- range $host := splitList " " (include "task-processor.redisHosts" .) }}
{{- $addresses = append $addresses (printf "%s:26379" $host) }}
{{- end }}
{{- join "," $addresses }}
{{- end }}

{{/*
Sentinel values a JSON schema cannot compare, refused with one line naming the fix (the schema itself refuses fewer
than 3 Redis Pods, a Sentinel host that is not host:port, and the like).
*/}}
{{- define "task-processor.validateSentinel" -}}
{{- $in := .Values.redis.sentinel }}
{{- $ext := .Values.externalRedis.sentinel }}
{{- if and $in.enabled (not .Values.redis.enabled) }}
{{- fail "redis.sentinel.enabled runs the in-chart Redis with Sentinel, but redis.enabled is false: set redis.enabled=true, or use externalRedis.sentinel for your own Sentinels" }}
{{- end }}
{{- if and $ext.enabled .Values.redis.enabled }}
{{- fail "externalRedis.sentinel.enabled is for your own Redis, but redis.enabled is true: set redis.enabled=false (or redis.sentinel.enabled=true for the in-chart Redis with Sentinel)" }}
{{- end }}
{{- if and .Values.redis.enabled $in.enabled }}
{{- if gt (int $in.quorum) (int $in.replicas) }}
{{- fail (printf "redis.sentinel.quorum (%d) is above redis.sentinel.replicas (%d): no failover could ever start" (int $in.quorum) (int $in.replicas)) }}
{{- end }}
{{- if ge (int $in.replicaAcks) (int $in.replicas) }}
{{- fail (printf "redis.sentinel.replicaAcks (%d) must be below redis.sentinel.replicas (%d): there are only %d replicas to acknowledge an enqueue" (int $in.replicaAcks) (int $in.replicas) (sub (int $in.replicas) 1)) }}
{{- end }}
{{- end }}
{{- if and (not .Values.redis.enabled) $ext.enabled }}
{{- if not $ext.hosts }}
{{- fail "externalRedis.sentinel.enabled needs externalRedis.sentinel.hosts: list your Sentinels as host:port" }}
{{- end }}
{{- if .Values.externalRedis.roleSecretKeys }}
{{- fail "externalRedis.roleSecretKeys names whole URLs, but with externalRedis.sentinel the chart builds the URL: leave roleSecretKeys empty" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Refuse inconsistent values with one line naming the fix (what a JSON schema cannot compare).
*/}}
{{- define "task-processor.validate" -}}
{{- if and (not .Values.redis.enabled) (not .Values.externalRedis.existingSecret) }}
{{- fail "redis.enabled is false but externalRedis.existingSecret is empty: name a Secret holding REDIS_URL, or set redis.enabled=true" }}
{{- end }}
{{- if gt (int .Values.autoscale.min) (int .Values.autoscale.max) }}
{{- fail (printf "autoscale.min (%d) is above autoscale.max (%d): lower min or raise max" (int .Values.autoscale.min) (int .Values.autoscale.max)) }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "serviceMonitor.enabled needs metrics.enabled (the ServiceMonitor scrapes the metrics Service)" }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (not .Values.redis.enabled) }}
{{- fail "networkPolicy.enabled guards the in-chart Redis: it needs redis.enabled=true" }}
{{- end }}
{{- include "task-processor.validateSentinel" . }}
{{- include "task-processor.validatePools" . }}
{{- include "task-processor.validateCron" . }}
{{- end }}

{{/*
REDIS_URL for a container of one role; call with (dict "ctx" $ "role" "worker"). Roles: worker, autoscaler,
producer (and the helm test Pod), dashboard. In-chart Redis: the container logs in as the Redis user of its role;
that user's password comes from the Secret as REDIS_PASSWORD and Kubernetes expands $(REDIS_PASSWORD) into the
URL when the container starts, so no password is in values or in the manifest. External Redis: the whole URL comes
from the user's Secret, under externalRedis.roleSecretKeys.<role> when set, else externalRedis.existingSecretKey.
With Sentinel (redis.sentinel or externalRedis.sentinel) the URL is redis+sentinel://user:$(REDIS_PASSWORD)@<the
Sentinels>/<master set>/<db>, the password again expanded from a Secret (and, for Sentinels of one's own that
require a password, ?sentinel_password=$(REDIS_SENTINEL_PASSWORD)), and TASK_REPLICA_ACKS comes beside it.
*/}}
{{- define "task-processor.redisEnv" -}}
{{- $values := .ctx.Values }}
{{- if and $values.redis.enabled $values.redis.sentinel.enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "task-processor.redisSecretName" .ctx }}
      key: {{ printf "%s-password" .role }}
- name: REDIS_URL
  value: {{ printf "redis+sentinel://%s:$(REDIS_PASSWORD)@%s/%s/0" .role (include "task-processor.sentinelAddresses" .ctx) $values.redis.sentinel.masterSet | quote }}
- name: TASK_REPLICA_ACKS
  value: {{ int $values.redis.sentinel.replicaAcks | quote }}
{{- else if $values.redis.enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "task-processor.redisSecretName" .ctx }}
      key: {{ printf "%s-password" .role }}
- name: REDIS_URL
  value: {{ printf "redis://%s:$(REDIS_PASSWORD)@%s:6379/0" .role (include "task-processor.redisName" .ctx) | quote }}
{{- else if $values.externalRedis.sentinel.enabled }}
{{- $sentinel := $values.externalRedis.sentinel }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $values.externalRedis.existingSecret }}
      key: {{ $sentinel.passwordKey }}
{{- with $sentinel.sentinelPasswordKey }}
- name: REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $values.externalRedis.existingSecret }}
      key: {{ . }}
{{- end }}
{{- $query := ternary "?sentinel_password=$(REDIS_SENTINEL_PASSWORD)" "" (not (empty $sentinel.sentinelPasswordKey)) }}
- name: REDIS_URL
  value: {{ printf "redis+sentinel://%s:$(REDIS_PASSWORD)@%s/%s/%d%s" $sentinel.username (join "," $sentinel.hosts) $sentinel.masterSet (int $sentinel.db) $query | quote }}
- name: TASK_REPLICA_ACKS
  value: {{ int $sentinel.replicaAcks | quote }}
{{- else }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $values.externalRedis.existingSecret }}
      key: {{ (index ($values.externalRedis.roleSecretKeys | default dict) .role) | default $values.externalRedis.existingSecretKey }}
{{- end }}
{{- end }}

{{/*
The settings both sides read (README, Configuration), plus POD_NAME (and METRICS_BIND) from the downward API.
REDIS_URL is not among them: it depends on the container's role (redisEnv, included beside this).
config.taskModules is a list or a comma string; TASK_MODULES is the comma string either way.
*/}}
{{- define "task-processor.commonEnv" -}}
- name: TASK_QUEUES
  value: {{ join "," .Values.config.queues | quote }}
{{ include "task-processor.settingsEnv" . }}
{{- end }}

{{/*
commonEnv without TASK_QUEUES: a worker pool's Pods serve the pool's queues, not config.queues.
*/}}
{{- define "task-processor.settingsEnv" -}}
- name: TASK_SERIALIZER
  value: {{ .Values.config.serializer | quote }}
- name: TASK_MODULES
  value: {{ join "," .Values.config.taskModules | nospace | quote }}
- name: TASK_TIMEOUT
  value: {{ int .Values.config.taskTimeout | quote }}
- name: LOG_FORMAT
  value: {{ .Values.config.logFormat | quote }}
- name: LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- if .Values.metrics.enabled }}
- name: METRICS_PORT
  value: {{ int .Values.metrics.port | quote }}
{{- /* The Pod's IP: the Services (and Prometheus) reach /metrics there; the default, 127.0.0.1, they could not. */}}
- name: METRICS_BIND
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- end }}
{{- end }}

{{/*
The container port Prometheus scrapes (/metrics), on workers and autoscalers when metrics.enabled.
*/}}
{{- define "task-processor.metricsPort" -}}
{{- if .Values.metrics.enabled }}
ports:
  - name: metrics
    containerPort: {{ .Values.metrics.port }}
    protocol: TCP
{{- end }}
{{- end }}

{{/*
The writable /tmp every Pod gets beside its read-only root filesystem.
*/}}
{{- define "task-processor.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end }}

{{- define "task-processor.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}
