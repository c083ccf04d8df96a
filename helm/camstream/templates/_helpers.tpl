{{/*
Names and labels shared by every template. Object names follow the contract
the operator and workers rely on: <fullname>-operator (Deployment and Lease),
<fullname>-worker (StatefulSet and headless Service), <fullname>-ring
(ConfigMap, created by the operator, never by the chart).
*/}}

{{- define "camstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release name by default, so names stay <release>-worker etc. */}}
{{- define "camstream.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "camstream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "camstream.labels" -}}
helm.sh/chart: {{ include "camstream.chart" . }}
app.kubernetes.io/name: {{ include "camstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: camstream
{{- end -}}

{{/* Selector labels; call with (dict "ctx" . "component" "worker"). */}}
{{- define "camstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "camstream.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "camstream.componentLabels" -}}
{{ include "camstream.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "camstream.operatorName" -}}
{{- printf "%s-operator" (include "camstream.fullname" .) -}}
{{- end -}}

{{- define "camstream.workerName" -}}
{{- printf "%s-worker" (include "camstream.fullname" .) -}}
{{- end -}}

{{- define "camstream.ringName" -}}
{{- printf "%s-ring" (include "camstream.fullname" .) -}}
{{- end -}}

{{- define "camstream.edgeName" -}}
{{- printf "%s-edge" (include "camstream.fullname" .) -}}
{{- end -}}

{{/* Whether the ingest edge runs: it fronts RTMP, so only with rtmp.enabled. */}}
{{- define "camstream.edgeEnabled" -}}
{{- if and .Values.rtmp.enabled .Values.edge.enabled -}}true{{- end -}}
{{- end -}}

{{- define "camstream.edgeSrt" -}}
{{- if and (include "camstream.edgeEnabled" .) (not (kindIs "invalid" .Values.edge.srt.port)) -}}true{{- end -}}
{{- end -}}

{{- define "camstream.edgeTokenSecret" -}}
{{- printf "%s-edge-token" (include "camstream.fullname" .) -}}
{{- end -}}

{{- define "camstream.peerTokenSecret" -}}
{{- printf "%s-peer-token" (include "camstream.fullname" .) -}}
{{- end -}}

{{/* The edge token, for the edge and the workers (protocols/rtmp/forwarded.py). */}}
{{- define "camstream.edgeTokenEnv" -}}
- name: CAMSTREAM_EDGE_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "camstream.edgeTokenSecret" . }}
      key: token
{{- end -}}

{{- define "camstream.edgeServiceAccount" -}}
{{- if .Values.edge.serviceAccount.create -}}
{{- default (include "camstream.edgeName" .) .Values.edge.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.edge.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "camstream.operatorServiceAccount" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "camstream.operatorName" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "camstream.workerServiceAccount" -}}
{{- if .Values.worker.serviceAccount.create -}}
{{- default (include "camstream.workerName" .) .Values.worker.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.worker.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image reference; call with (dict "ctx" . "image" .Values.worker.image). */}}
{{- define "camstream.image" -}}
{{- $tag := default .ctx.Chart.AppVersion .ctx.Values.image.tag -}}
{{- printf "%s%s:%s" .ctx.Values.image.registry .image.repository $tag -}}
{{- end -}}

{{/* Downward-API environment both components read. */}}
{{- define "camstream.podEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- end -}}

{{/*
The recordings store, for the workers and the operator (its janitor): the same
settings for both, credentials from the Secret named in the values.
*/}}
{{- define "camstream.recordingEnv" -}}
{{- $r := .Values.recording -}}
- name: CAMSTREAM_RECORDING_STORE
  value: {{ $r.store | quote }}
{{- if eq $r.store "s3" }}
- name: CAMSTREAM_RECORDING_S3_BUCKET
  value: {{ $r.s3.bucket | quote }}
- name: CAMSTREAM_RECORDING_S3_ENDPOINT
  value: {{ $r.s3.endpoint | quote }}
- name: CAMSTREAM_RECORDING_S3_REGION
  value: {{ $r.s3.region | quote }}
{{- with $r.s3.credentialsSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $r.s3.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $r.s3.secretAccessKeyKey }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The namespaces whose CameraStreams to watch, as command-line flags; none means all.
Matches the RBAC the chart grants (ClusterRoles for all, Roles per namespace
otherwise), so a component that lists cluster-wide without the ClusterRole
would be forbidden.
*/}}
{{- define "camstream.watchArgs" -}}
{{- range .Values.watchNamespaces }}
- --watch-namespace
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/*
Cross-field checks the JSON schema cannot state readably. Each message names
the value to change.
*/}}
{{- define "camstream.validate" -}}
{{- $w := .Values.worker -}}
{{- if and $w.autoscaling.enabled (gt (int $w.autoscaling.minReplicas) (int $w.autoscaling.maxReplicas)) -}}
{{- fail (printf "worker.autoscaling.minReplicas (%d) must not exceed worker.autoscaling.maxReplicas (%d)" (int $w.autoscaling.minReplicas) (int $w.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- $maxWorkers := ternary $w.autoscaling.maxReplicas $w.replicas $w.autoscaling.enabled | int -}}
{{- if gt $maxWorkers (int .Values.ring.partitions) -}}
{{- fail (printf "ring.partitions (%d) must be at least the number of workers (%d); choose about 10x the largest worker count" (int .Values.ring.partitions) $maxWorkers) -}}
{{- end -}}
{{- if and .Values.playback.ingress.enabled (not .Values.playback.ingress.host) -}}
{{- fail "playback.ingress.host is required when playback.ingress.enabled is true (the host name viewers open)" -}}
{{- end -}}
{{- if and .Values.worker.podDisruptionBudget.enabled (not $w.autoscaling.enabled) (le (int $w.replicas) (int $w.podDisruptionBudget.maxUnavailable)) (gt (int $w.replicas) 1) -}}
{{- fail (printf "worker.podDisruptionBudget.maxUnavailable (%d) must be below worker.replicas (%d), or every worker could be evicted at once" (int $w.podDisruptionBudget.maxUnavailable) (int $w.replicas)) -}}
{{- end -}}
{{- $e := .Values.edge -}}
{{- if and (include "camstream.edgeEnabled" .) (le (int $e.terminationGracePeriodSeconds) (int $e.drainSeconds)) -}}
{{- fail (printf "edge.terminationGracePeriodSeconds (%d) must exceed edge.drainSeconds (%d), or the kubelet kills the edge before its cameras are let go" (int $e.terminationGracePeriodSeconds) (int $e.drainSeconds)) -}}
{{- end -}}
{{- $hook := .Values.operator.webhook -}}
{{- if and $hook.enabled $hook.certManager.enabled (not $hook.certManager.issuerRef) -}}
{{- fail "operator.webhook.certManager.issuerRef is required when operator.webhook.certManager.enabled is true (e.g. {kind: ClusterIssuer, name: my-ca})" -}}
{{- end -}}
{{- $r := .Values.recording -}}
{{- if and (eq $r.store "s3") (not $r.s3.bucket) -}}
{{- fail "recording.s3.bucket is required when recording.store is s3" -}}
{{- end -}}
{{- if and (eq $r.store "s3") (eq $w.hls.storage "memory") -}}
{{- fail "recording.store s3 needs worker.hls.storage emptyDir or pvc: recordings wait for upload on that volume, and tmpfs would hold them in memory" -}}
{{- end -}}
{{- $secrets := .Values.rbac.workerSecrets -}}
{{- if and $secrets.allNamespaces $secrets.namespaces -}}
{{- fail "rbac.workerSecrets.allNamespaces and rbac.workerSecrets.namespaces exclude each other: list the namespaces, or allow all" -}}
{{- end -}}
{{- $net := .Values.worker.networkPolicy -}}
{{- if and $net.enabled (not $net.apiServer.cidrs) -}}
{{- fail "worker.networkPolicy.apiServer.cidrs is required when worker.networkPolicy.enabled is true (the API server's endpoint addresses, e.g. from kubectl get endpoints kubernetes)" -}}
{{- end -}}
{{- if gt (int .Values.ring.partitions) 65536 -}}
{{- fail (printf "ring.partitions (%d) must be at most 65536: streams carry partition labels for rings up to that size" (int .Values.ring.partitions)) -}}
{{- end -}}
{{- end -}}
