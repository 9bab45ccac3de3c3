{{/*
The worker pools with every fallback applied, as JSON: pool name -> {deployment, component, queues, min, max,
jobsPerWorker, targetWait, scaleDownDelay, replicas, image, resources, nodeSelector, tolerations, affinity,
extraArgs, extraEnv}.
The Deployments, the PodDisruptionBudgets, the checks and NOTES all read this, never .Values.pools, so a fallback
is decided in one place. A key the pool sets replaces the chart-wide value (hasKey, not `default`: min 0 or
nodeSelector {} are choices, not gaps); only image is merged key by key, so a pool may change the tag alone.
Pool "default" keeps the name and the component ("worker") the autoscaler, kubectl habits and installs from
before pools know; the others get a suffix to both (poolLabels says why the component).
*/}}
{{- define "task-processor.pools" -}}
{{- $worker := include "task-processor.workerName" . }}
{{- $fallback := dict
  "queues" .Values.config.queues
  "min" .Values.autoscale.min
  "max" .Values.autoscale.max
  "jobsPerWorker" .Values.autoscale.jobsPerWorker
  "targetWait" .Values.autoscale.targetWait
  "scaleDownDelay" .Values.autoscale.scaleDownDelay
  "replicas" .Values.worker.replicas
  "resources" .Values.worker.resources
  "nodeSelector" .Values.worker.nodeSelector
  "tolerations" .Values.worker.tolerations
  "affinity" .Values.worker.affinity
  "extraArgs" .Values.worker.extraArgs
  "extraEnv" .Values.worker.extraEnv }}
{{- $pools := dict }}
{{- range $name, $values := .Values.pools }}
{{- $values = $values | default dict }}
{{- $default := eq $name "default" }}
{{- $pool := dict
  "deployment" (ternary $worker (printf "%s-%s" $worker $name) $default)
  "component" (ternary "worker" (printf "worker-%s" $name) $default) }}
{{- range $key, $chartWide := $fallback }}
{{- $_ := set $pool $key (ternary (index $values $key) $chartWide (hasKey $values $key)) }}
{{- end }}
{{- $_ := set $pool "image" (merge (deepCopy ($values.image | default dict)) $.Values.worker.image) }}
{{- $_ := set $pools $name $pool }}
{{- end }}
{{- toJson $pools }}
{{- end }}

{{/*
A pool's labels, on its Deployment, its PodDisruptionBudget and its Pods; call with (dict "ctx" $ "name" $name
"pool" $pool). The selector of the pool's Deployment and budget is the component part alone
(componentSelectorLabels with $pool.component), which is what keeps pools apart and upgrades in place:
- pool "default" has component "worker", so its selector is exactly the worker Deployment's from before pools
  (Kubernetes never changes a Deployment's selector: `helm upgrade` and `kubectl apply` change it in place);
- pool <p> has component "worker-<p>": no other pool's selector, the default one included, matches its Pods
  (the eviction API refuses a Pod two budgets cover, and the autoscaler, which finds a pool's Pods by its
  Deployment's selector, would count and mark them as two pools' workers).
task-processor.io/pool names the pool for the autoscaler and for WORKER_POOL (downward API);
task-processor.io/worker is on every pool's Pods, so what is meant for all workers (the metrics Service)
selects them by equality, without listing the pools.
*/}}
{{- define "task-processor.poolLabels" -}}
{{ include "task-processor.componentLabels" (dict "ctx" .ctx "component" .pool.component) }}
task-processor.io/pool: {{ .name | quote }}
task-processor.io/worker: "true"
{{- end }}

{{/*
Selects the worker Pods of every pool of this release, and nothing else (see poolLabels).
*/}}
{{- define "task-processor.allWorkersSelectorLabels" -}}
{{ include "task-processor.selectorLabels" . }}
task-processor.io/worker: "true"
{{- end }}

{{/*
What the schema cannot check: lengths and names that depend on the fullname, and min <= max after fallbacks.
*/}}
{{- define "task-processor.validatePools" -}}
{{- $worker := include "task-processor.workerName" . }}
{{- $pools := fromJson (include "task-processor.pools" .) }}
{{- if not $pools }}
{{- fail "pools is empty: keep at least one worker pool (pools.default serves config.queues)" }}
{{- end }}
{{- $taken := dict (include "task-processor.producerName" .) "the autoscaler's" (include "task-processor.dashboardName" .) "the dashboard's" }}
{{- range $name, $pool := $pools }}
{{- $named := printf "pools.%s: its Deployment would be named %q" $name $pool.deployment }}
{{- if gt (len $pool.deployment) 63 }}
{{- $most := sub 62 (len $worker) }}
{{- fail (printf "%s, %d characters, and Kubernetes allows 63: with the fullname %q a pool name may have at most %d characters" $named (len $pool.deployment) $worker $most) }}
{{- end }}
{{- with get $taken $pool.deployment }}
{{- fail (printf "%s, which is %s Deployment: choose another pool name" $named .) }}
{{- end }}
{{- if gt (int $pool.min) (int $pool.max) }}
{{- $why := "a pool without min or max takes autoscale.min or autoscale.max" }}
{{- fail (printf "pools.%s: min (%d) is above max (%d) (%s): lower min or raise max" $name (int $pool.min) (int $pool.max) $why) }}
{{- end }}
{{- end }}
{{- end }}
