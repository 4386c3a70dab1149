{{/*
Pieces of a chatstack service's pod: env, probes, volumes, init containers.
Every helper takes ctx = (dict "root" $ "name" "<service>").
*/}}

{{/*
Config fields the chart sets itself; setting them in <service>.config would render the env var
twice, so it is refused with a pointer to the right value.
*/}}
{{- define "chatstack.managedFields" -}}
host: "set by the chart (0.0.0.0)"
port: "use <service>.port"
metrics_host: "set by the chart (0.0.0.0)"
metrics_port: "use <service>.metricsPort"
grace_seconds: "use <service>.graceSeconds"
log_level: "use <service>.logLevel"
model: "use <service>.model"
model_dir: "use tokenizer.model"
redis_url: "use redis.external"
api_keys_file: "use gateway.apiKeys"
tokenizer_address: "set by the chart"
generation_address: "set by the chart"
reward_address: "set by the chart"
session_address: "set by the chart"
safety_address: "set by the chart (safety.enabled)"
tokenizer_routing: "use gateway.balancing.routing"
generation_routing: "use gateway.balancing.routing"
reward_routing: "use gateway.balancing.routing"
session_routing: "use gateway.balancing.routing"
safety_routing: "use gateway.balancing.routing"
affinity_load_factor: "use gateway.balancing.affinityLoadFactor"
resolve_interval_seconds: "use gateway.balancing.resolveIntervalSeconds"
max_connection_age_seconds: "use <service>.maxConnectionAgeSeconds"
max_connection_age_grace_seconds: "use <service>.maxConnectionAgeGraceSeconds"
http_port: "use gateway.httpPort"
http_enabled: "use gateway.http.enabled"
{{- end }}

{{/*
A value as an env var string: integral numbers without an exponent (YAML numbers reach templates
as float64, and 1000000 would otherwise print as 1e+06), booleans as true/false.
*/}}
{{- define "chatstack.envValue" -}}
{{- if and (kindIs "float64" .) (eq . (float64 (int64 .))) }}
{{- printf "%d" (int64 .) }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/* The env of a service's container: CHATSTACK_<SERVICE>_<FIELD> for every setting. */}}
{{- define "chatstack.env" -}}
{{- $root := .root }}
{{- $name := .name }}
{{- $svc := index $root.Values $name }}
{{- $p := include "chatstack.envPrefix" $name }}
- name: {{ $p }}HOST
  value: "0.0.0.0"
- name: {{ $p }}PORT
  value: {{ include "chatstack.envValue" $svc.port | quote }}
- name: {{ $p }}METRICS_HOST
  value: "0.0.0.0"
- name: {{ $p }}METRICS_PORT
  value: {{ include "chatstack.envValue" $svc.metricsPort | quote }}
- name: {{ $p }}GRACE_SECONDS
  value: {{ include "chatstack.envValue" $svc.graceSeconds | quote }}
- name: {{ $p }}LOG_LEVEL
  value: {{ $svc.logLevel | quote }}
{{- /* GOAWAY after this age: long-lived clients reconnect (and re-resolve), new pods get calls. */}}
- name: {{ $p }}MAX_CONNECTION_AGE_SECONDS
  value: {{ include "chatstack.envValue" $svc.maxConnectionAgeSeconds | quote }}
- name: {{ $p }}MAX_CONNECTION_AGE_GRACE_SECONDS
  value: {{ include "chatstack.envValue" $svc.maxConnectionAgeGraceSeconds | quote }}
{{- if eq $name "gateway" }}
{{- /* The OpenAI-compatible HTTP API, on HOST like gRPC. Said either way: the gateway's default is on. */}}
- name: {{ $p }}HTTP_ENABLED
  value: {{ if include "chatstack.httpEnabled" $root }}"true"{{ else }}"false"{{ end }}
{{- if include "chatstack.httpEnabled" $root }}
- name: {{ $p }}HTTP_PORT
  value: {{ include "chatstack.envValue" $svc.httpPort | quote }}
{{- end }}
{{- $balancing := $svc.balancing }}
{{- range $backend := list "tokenizer" "generation" "reward" "session" "safety" }}
{{- if (index $root.Values $backend).enabled }}
- name: {{ $p }}{{ upper $backend }}_ADDRESS
  value: {{ include "chatstack.backendTarget" (dict "root" $root "name" $backend) | quote }}
- name: {{ $p }}{{ upper $backend }}_ROUTING
  value: {{ index $balancing.routing $backend | quote }}
{{- end }}
{{- end }}
- name: {{ $p }}AFFINITY_LOAD_FACTOR
  value: {{ include "chatstack.envValue" $balancing.affinityLoadFactor | quote }}
- name: {{ $p }}RESOLVE_INTERVAL_SECONDS
  value: {{ include "chatstack.envValue" $balancing.resolveIntervalSeconds | quote }}
- name: {{ $p }}API_KEYS_FILE
  value: {{ printf "%s/%s" (include "chatstack.apiKeysMountPath" $root) (include "chatstack.apiKeysSecretKey" $root) | quote }}
{{- else if eq $name "tokenizer" }}
- name: {{ $p }}MODEL_DIR
  value: {{ include "chatstack.modelRef" . | quote }}
{{- else if has $name (list "generation" "reward" "safety") }}
- name: {{ $p }}MODEL
  value: {{ include "chatstack.modelRef" . | quote }}
{{- if include "chatstack.usesHub" . }}
{{- include "chatstack.hfTokenEnv" $root }}
{{- end }}
{{- else if eq $name "session" }}
{{ include "chatstack.redisUrlEnv" $root }}
{{- end }}
{{- $managed := include "chatstack.managedFields" . | fromYaml }}
{{- range $field, $value := $svc.config }}
{{- if hasKey $managed $field }}
{{- fail (printf "%s.config.%s: %s" $name $field (index $managed $field)) }}
{{- end }}
{{- if not (kindIs "invalid" $value) }}
- name: {{ $p }}{{ upper $field }}
  value: {{ include "chatstack.envValue" $value | quote }}
{{- end }}
{{- end }}
{{- with $svc.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* One native gRPC probe. ctx: (dict "svc" $svc "protoService" "..." "timing" $svc.probes.startup) */}}
{{- define "chatstack.grpcProbe" -}}
grpc:
  port: {{ .svc.port }}
  service: {{ .protoService }}
periodSeconds: {{ .timing.periodSeconds }}
failureThreshold: {{ .timing.failureThreshold }}
timeoutSeconds: {{ .timing.timeoutSeconds | default 2 }}
{{- end }}

{{/* startupProbe, readinessProbe and livenessProbe of a service's container. */}}
{{- define "chatstack.probes" -}}
{{- $svc := index .root.Values .name }}
{{- $catalog := include "chatstack.catalog" .root | fromYaml }}
{{- $proto := (index $catalog .name).protoService }}
startupProbe:
  {{- include "chatstack.grpcProbe" (dict "svc" $svc "protoService" $proto "timing" $svc.probes.startup) | nindent 2 }}
readinessProbe:
  {{- include "chatstack.grpcProbe" (dict "svc" $svc "protoService" $proto "timing" $svc.probes.readiness) | nindent 2 }}
livenessProbe:
  {{- include "chatstack.grpcProbe" (dict "svc" $svc "protoService" $proto "timing" $svc.probes.liveness) | nindent 2 }}
{{- end }}

{{/* volumeMounts of a service's main container. */}}
{{- define "chatstack.volumeMounts" -}}
{{- $root := .root }}
{{- $svc := index $root.Values .name }}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/chatstack
{{- if include "chatstack.usesModelsPvc" . }}
- name: models
  mountPath: {{ $root.Values.models.pvc.mountPath }}
  readOnly: true
{{- end }}
{{- if hasKey $svc "shm" }}
- name: dshm
  mountPath: /dev/shm
{{- end }}
{{- if eq .name "gateway" }}
- name: api-keys
  mountPath: {{ include "chatstack.apiKeysMountPath" $root }}
  readOnly: true
{{- end }}
{{- end }}

{{/* volumes of a service's pod. */}}
{{- define "chatstack.volumes" -}}
{{- $root := .root }}
{{- $svc := index $root.Values .name }}
- name: tmp
  emptyDir: {}
- name: home
  emptyDir:
    {{- if hasKey $svc "model" }}
    sizeLimit: {{ $root.Values.models.cache.sizeLimit }}
    {{- else }}
    sizeLimit: 1Gi
    {{- end }}
{{- if include "chatstack.usesModelsPvc" . }}
- name: models
  persistentVolumeClaim:
    claimName: {{ include "chatstack.modelsClaimName" $root }}
{{- end }}
{{- if hasKey $svc "shm" }}
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ $svc.shm.sizeLimit }}
{{- end }}
{{- if eq .name "gateway" }}
- name: api-keys
  secret:
    secretName: {{ include "chatstack.apiKeysSecretName" $root }}
    defaultMode: 0440
    items:
      - key: {{ include "chatstack.apiKeysSecretKey" $root }}
        path: {{ include "chatstack.apiKeysSecretKey" $root }}
{{- end }}
{{- end }}

{{/*
Init containers: the dev tiny-model build onto the PVC, and the tokenizer files of a hub id.
The tiny models are built into a private directory and renamed into place, so pods starting
together never see a half-written model.
*/}}
{{- define "chatstack.initContainers" -}}
{{- $root := .root }}
{{- $svc := index $root.Values .name }}
{{- if and $root.Values.models.buildTiny.enabled (include "chatstack.usesModelsPvc" .) }}
- name: build-tiny-models
  image: {{ include "chatstack.image" (dict "root" $root "svc" $svc) }}
  imagePullPolicy: {{ include "chatstack.imagePullPolicy" (dict "root" $root "svc" $svc) }}
  command: ["sh", "-c"]
  args:
    - |
      set -e
      target={{ $root.Values.models.pvc.mountPath }}/tiny
      if [ ! -f "$target/MANIFEST.json" ]; then
        tmp={{ $root.Values.models.pvc.mountPath }}/.tiny-$HOSTNAME
        rm -rf "$tmp"
        chatstack models build-tiny "$tmp"
        mv -T "$tmp" "$target" 2>/dev/null || rm -rf "$tmp"
      fi
  securityContext:
    {{- toYaml $root.Values.securityContext | nindent 4 }}
  resources:
    requests: {cpu: 500m, memory: 1Gi}
    limits: {memory: 2Gi}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    - name: home
      mountPath: /home/chatstack
    - name: models
      mountPath: {{ $root.Values.models.pvc.mountPath }}
{{- end }}
{{- if and (eq .name "tokenizer") (include "chatstack.usesHub" .) }}
- name: fetch-tokenizer
  image: {{ include "chatstack.image" (dict "root" $root "svc" $svc) }}
  imagePullPolicy: {{ include "chatstack.imagePullPolicy" (dict "root" $root "svc" $svc) }}
  command: ["python", "-c"]
  args:
    - |
      import os
      from huggingface_hub import snapshot_download
      snapshot_download(os.environ["MODEL_ID"], local_dir=os.environ["TARGET"],
                        allow_patterns=["tokenizer*", "special_tokens_map.json", "*.jinja",
                                        "chat_template.json", "config.json"])
  env:
    - name: MODEL_ID
      value: {{ $svc.model.hfId | quote }}
    - name: TARGET
      value: {{ include "chatstack.hfTokenizerDir" . | quote }}
    {{- include "chatstack.hfTokenEnv" $root | trim | nindent 4 }}
  securityContext:
    {{- toYaml $root.Values.securityContext | nindent 4 }}
  resources:
    requests: {cpu: 100m, memory: 256Mi}
    limits: {memory: 1Gi}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    - name: home
      mountPath: /home/chatstack
{{- end }}
{{- end }}
