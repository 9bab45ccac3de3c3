{{/*
The periodic tasks (values: cron) as the file TASK_CRON names: one JSON object a line (toJson keeps each entry on one
line; producer/scaling/cron.py reads it). The ConfigMap holds it, the autoscaler mounts it read-only, and its
checksum on the autoscaler's Pods rolls them when it changes (the file is read, and checked, at start-up only).
*/}}
{{- define "task-processor.cronLines" -}}
{{- range $index, $entry := .Values.cron }}
{{- if $index }}{{ "\n" }}{{ end }}
{{- toJson $entry }}
{{- end }}
{{- end }}

{{- define "task-processor.cronName" -}}
{{- printf "%s-cron" (include "task-processor.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Where the autoscaler finds the file: the ConfigMap's directory and the file in it.
*/}}
{{- define "task-processor.cronDir" -}}
/etc/task-processor/cron
{{- end }}

{{- define "task-processor.cronFile" -}}
{{- printf "%s/cron.jsonl" (include "task-processor.cronDir" .) }}
{{- end }}

{{/*
What the schema cannot check: the leader of the autoscalers fires them, so they need it; and names are unique (an
entry without one is named from its content, which only the autoscaler computes: it refuses an identical line).
*/}}
{{- define "task-processor.validateCron" -}}
{{- if and .Values.cron (not .Values.autoscale.enabled) }}
{{- fail "cron has entries but autoscale.enabled is false: the autoscaler enqueues the periodic tasks; set autoscale.enabled=true, or empty cron" }}
{{- end }}
{{- $seen := dict }}
{{- range $index, $entry := .Values.cron }}
{{- with $entry.name }}
{{- if hasKey $seen . }}
{{- fail (printf "cron[%d].name %q is also the name of cron[%d]: give each entry a name of its own" $index . (get $seen .)) }}
{{- end }}
{{- $_ := set $seen . $index }}
{{- end }}
{{- end }}
{{- end }}
