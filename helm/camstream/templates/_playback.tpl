{{/*
Viewer auth, CORS, the admin surface and HTTP limits of the workers
(README.md "Playback access"). Flags are passed only when a value differs
from the worker's own default, so the default install runs exactly as before.
*/}}

{{- define "camstream.validatePlayback" -}}
{{- $a := .Values.playback.auth -}}
{{- $w := .Values.worker -}}
{{- if and (eq $a.defaultMode "jwt") (not $a.jwt.jwksUrl) (not $a.jwt.keysSecret.name) -}}
{{- fail "playback.auth.defaultMode jwt needs playback.auth.jwt.jwksUrl or playback.auth.jwt.keysSecret.name (where the workers find the keys that sign viewers' JWTs)" -}}
{{- end -}}
{{- if and $a.jwt.jwksUrl $a.jwt.keysSecret.name -}}
{{- fail "set one of playback.auth.jwt.jwksUrl and playback.auth.jwt.keysSecret.name, not both" -}}
{{- end -}}
{{- if and $w.admin.port (or (eq (int $w.admin.port) (int $w.httpPort)) (eq (int $w.admin.port) (int $w.rtmpPort))) -}}
{{- fail (printf "worker.admin.port (%d) must differ from worker.httpPort and worker.rtmpPort" (int $w.admin.port)) -}}
{{- end -}}
{{- end -}}

{{- define "camstream.playbackArgs" -}}
{{- $a := .Values.playback.auth -}}
{{- $w := .Values.worker -}}
{{- if ne $a.defaultMode "none" }}
- --playback-auth
- {{ $a.defaultMode | quote }}
{{- end }}
{{- if $a.required }}
- --require-playback-auth
{{- end }}
{{- with $a.jwt.jwksUrl }}
- --jwt-jwks-url
- {{ . | quote }}
{{- end }}
{{- if $a.jwt.keysSecret.name }}
- --jwt-keys-file
- /etc/camstream/jwt/{{ $a.jwt.keysSecret.key }}
{{- end }}
{{- if or $a.jwt.jwksUrl $a.jwt.keysSecret.name }}
{{- with $a.jwt.issuer }}
- --jwt-issuer
- {{ . | quote }}
{{- end }}
{{- if ne $a.jwt.audience "camstream" }}
- --jwt-audience
- {{ $a.jwt.audience | quote }}
{{- end }}
{{- end }}
{{- if ne (toJson .Values.playback.corsOrigins) (toJson (list "*")) }}
{{- range .Values.playback.corsOrigins }}
- --cors-origin
- {{ . | quote }}
{{- end }}
{{- end }}
{{- with $w.http.idleTimeoutSeconds }}
- --http-idle-timeout
- {{ . | quote }}
{{- end }}
{{- with $w.http.maxConnections }}
- --http-max-connections
- {{ . | quote }}
{{- end }}
{{- with $w.http.maxHeaderBytes }}
- --http-max-header-bytes
- {{ . | quote }}
{{- end }}
{{- if $w.admin.port }}
- --admin-port
- {{ $w.admin.port | quote }}
{{- end }}
{{- if $w.admin.tokenSecret.name }}
- --admin-token-file
- /etc/camstream/admin/{{ $w.admin.tokenSecret.key }}
{{- end }}
{{- end -}}

{{- define "camstream.playbackMounts" -}}
{{- if .Values.playback.auth.jwt.keysSecret.name }}
- name: jwt-keys
  mountPath: /etc/camstream/jwt
  readOnly: true
{{- end }}
{{- if .Values.worker.admin.tokenSecret.name }}
- name: admin-token
  mountPath: /etc/camstream/admin
  readOnly: true
{{- end }}
{{- end -}}

{{- define "camstream.playbackVolumes" -}}
{{- with .Values.playback.auth.jwt.keysSecret }}
{{- if .name }}
- name: jwt-keys
  secret:
    secretName: {{ .name }}
    items:
      - key: {{ .key }}
        path: {{ .key }}
{{- end }}
{{- end }}
{{- with .Values.worker.admin.tokenSecret }}
{{- if .name }}
- name: admin-token
  secret:
    secretName: {{ .name }}
    items:
      - key: {{ .key }}
        path: {{ .key }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The port Prometheus scrapes /metrics on: the admin port when it has one. */}}
{{- define "camstream.metricsPortName" -}}
{{- if .Values.worker.admin.port }}admin{{ else }}http{{ end }}
{{- end -}}
