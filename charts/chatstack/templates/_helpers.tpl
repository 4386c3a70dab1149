{{/*
Names, labels and the small pieces every template shares.
*/}}

{{/* Chart name (nameOverride wins). */}}
{{- define "chatstack.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name prefix of every resource: fullnameOverride, else the release name (plus the chart
name unless the release name already contains it). Truncated so "<fullname>-generation-headless"
style suffixes still fit in 63 characters.
*/}}
{{- define "chatstack.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "chatstack-0.1.0" for the helm.sh/chart label. */}}
{{- define "chatstack.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of one component's resources: "<fullname>-<component>". ctx: (dict "root" $ "component" "gateway") */}}
{{- define "chatstack.componentName" -}}
{{- printf "%s-%s" (include "chatstack.fullname" .root) .component }}
{{- end }}

{{/* Labels that select a release's pods (stable across upgrades). */}}
{{- define "chatstack.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chatstack.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Standard labels of every resource. */}}
{{- define "chatstack.labels" -}}
helm.sh/chart: {{ include "chatstack.chart" . }}
{{ include "chatstack.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chatstack
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component. ctx: (dict "root" $ "component" "gateway") */}}
{{- define "chatstack.componentSelectorLabels" -}}
{{ include "chatstack.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Standard labels of one component's resources. ctx: (dict "root" $ "component" "gateway") */}}
{{- define "chatstack.componentLabels" -}}
{{ include "chatstack.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "chatstack.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "chatstack.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The gRPC services, in the order the gateway calls them (safety: beside generation), with their
Python module and the proto service name their gRPC health service reports (what the probes ask for).
*/}}
{{- define "chatstack.serviceNames" -}}
gateway tokenizer generation reward session safety
{{- end }}

{{- define "chatstack.catalog" -}}
gateway:
  module: gateway
  protoService: chatstack.v1.ChatService
tokenizer:
  module: tokenizer
  protoService: chatstack.v1.TokenizerService
generation:
  module: generation
  protoService: chatstack.v1.GenerationService
reward:
  module: reward
  protoService: chatstack.v1.RewardService
session:
  module: session
  protoService: chatstack.v1.SessionService
safety:
  module: safety
  protoService: chatstack.v1.SafetyService
{{- end }}

{{/* Names of the enabled services (space-separated), for `range splitList " " ...`. */}}
{{- define "chatstack.enabledServices" -}}
{{- $enabled := list }}
{{- range $name := splitList " " (include "chatstack.serviceNames" .) }}
{{- if (index $.Values $name).enabled }}
{{- $enabled = append $enabled $name }}
{{- end }}
{{- end }}
{{- join " " $enabled }}
{{- end }}

{{/* "repository:tag" of a service's image (per-service overrides win). ctx: (dict "root" $ "svc" $svc) */}}
{{- define "chatstack.image" -}}
{{- $image := merge (deepCopy (.svc.image | default dict)) .root.Values.image }}
{{- $repository := required "image.repository is required" $image.repository }}
{{- printf "%s:%s" $repository (toString (default .root.Chart.AppVersion $image.tag)) }}
{{- end }}

{{- define "chatstack.imagePullPolicy" -}}
{{- $image := merge (deepCopy (.svc.image | default dict)) .root.Values.image }}
{{- $image.pullPolicy | default "IfNotPresent" }}
{{- end }}

{{/* Prefix of a service's env vars: CHATSTACK_<SERVICE>_ */}}
{{- define "chatstack.envPrefix" -}}
{{- printf "CHATSTACK_%s_" (upper .) }}
{{- end }}

{{/* Mount path and file name of the API keys Secret; deploy/ray/serve-config.yaml uses the same. */}}
{{- define "chatstack.apiKeysMountPath" -}}
/etc/chatstack/api-keys
{{- end }}

{{- define "chatstack.apiKeysFileName" -}}
keys
{{- end }}

{{/* Name of the Secret with the API keys file (an existing one, or the one this chart creates). */}}
{{- define "chatstack.apiKeysSecretName" -}}
{{- $apiKeys := .Values.gateway.apiKeys }}
{{- if $apiKeys.existingSecret }}
{{- $apiKeys.existingSecret }}
{{- else }}
{{- include "chatstack.componentName" (dict "root" . "component" "api-keys") }}
{{- end }}
{{- end }}

{{/* Key of the API keys file inside that Secret. */}}
{{- define "chatstack.apiKeysSecretKey" -}}
{{- if .Values.gateway.apiKeys.existingSecret }}
{{- .Values.gateway.apiKeys.existingSecretKey | default "keys" }}
{{- else }}
{{- include "chatstack.apiKeysFileName" . }}
{{- end }}
{{- end }}

{{/*
The API keys file: one `<owner>:<sha256 hex>` line per entry; plaintext keys are hashed here
with sha256sum, so they never reach a manifest.
*/}}
{{- define "chatstack.apiKeysFile" -}}
{{- range $i, $entry := .Values.gateway.apiKeys.keys }}
{{- $owner := required (printf "gateway.apiKeys.keys[%d].owner is required" $i) $entry.owner }}
{{- if and $entry.sha256 $entry.key }}
{{- fail (printf "gateway.apiKeys.keys[%d] (%s): give sha256 or key, not both" $i $owner) }}
{{- end }}
{{- $hash := "" }}
{{- if $entry.sha256 }}
{{- $hash = lower $entry.sha256 }}
{{- else }}
{{- $hash = sha256sum (required (printf "gateway.apiKeys.keys[%d] (%s): sha256 or key is required" $i $owner) $entry.key) }}
{{- end }}
{{- printf "%s:%s\n" $owner $hash }}
{{- end }}
{{- end }}

{{/* Host name of the bundled Redis' Service. */}}
{{- define "chatstack.redisHost" -}}
{{- include "chatstack.componentName" (dict "root" . "component" "redis") }}
{{- end }}

{{/* True ("true"/"") when Redis is external (no StatefulSet). */}}
{{- define "chatstack.redisExternal" -}}
{{- if or .Values.redis.external.url .Values.redis.external.existingSecret }}true{{ end }}
{{- end }}

{{/* Env var carrying the session service's Redis URL. */}}
{{- define "chatstack.redisUrlEnv" -}}
- name: CHATSTACK_SESSION_REDIS_URL
{{- if .Values.redis.external.existingSecret }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.external.existingSecret }}
      key: {{ .Values.redis.external.existingSecretKey | default "url" }}
{{- else if .Values.redis.external.url }}
  value: {{ .Values.redis.external.url | quote }}
{{- else }}
  value: {{ printf "redis://%s:%d/0" (include "chatstack.redisHost" .) (int .Values.redis.port) | quote }}
{{- end }}
{{- end }}

{{/* Address "host:port" of a service's Kubernetes Service. ctx: (dict "root" $ "name" "tokenizer") */}}
{{- define "chatstack.serviceAddress" -}}
{{- printf "%s:%d" (include "chatstack.componentName" (dict "root" .root "component" .name)) (int (index .root.Values .name).port) }}
{{- end }}

{{/* Name of a backend's headless Service (one DNS record per ready pod). ctx: (dict "root" $ "component" "generation") */}}
{{- define "chatstack.headlessName" -}}
{{- printf "%s-headless" (include "chatstack.componentName" .) }}
{{- end }}

{{/*
What the gateway's CHATSTACK_GATEWAY_<BACKEND>_ADDRESS says (gateway.balancing.discovery):
dns:///<headless>.<namespace>.svc.<clusterDomain>:<port>, every ready pod, balanced per call by
the gateway; or the ClusterIP Service's host:port (one connection: for meshes that balance
themselves). ctx: (dict "root" $ "name" "generation")
*/}}
{{- define "chatstack.backendTarget" -}}
{{- if eq .root.Values.gateway.balancing.discovery "dns" }}
{{- $headless := include "chatstack.headlessName" (dict "root" .root "component" .name) }}
{{- printf "dns:///%s.%s.svc.%s:%d" $headless .root.Release.Namespace .root.Values.clusterDomain (int (index .root.Values .name).port) }}
{{- else }}
{{- include "chatstack.serviceAddress" . }}
{{- end }}
{{- end }}

{{/*
Where a service's model is, as the service's env var should say: a path on the models PVC, a
hub id, or (for the tokenizer with a hub id) the directory its init container downloads into.
ctx: (dict "root" $ "name" "generation")
*/}}
{{- define "chatstack.modelRef" -}}
{{- $svc := index .root.Values .name }}
{{- $model := $svc.model }}
{{- if eq $model.source "pvc" }}
{{- if not .root.Values.models.pvc.enabled }}
{{- fail (printf "%s.model.source is pvc: set models.pvc.enabled (and models.pvc.claimName or models.pvc.create)" .name) }}
{{- end }}
{{- $path := required (printf "%s.model.path is required when %s.model.source is pvc" .name .name) $model.path }}
{{- printf "%s/%s" (trimSuffix "/" .root.Values.models.pvc.mountPath) (trimPrefix "/" $path) }}
{{- else if eq $model.source "hf" }}
{{- $id := required (printf "%s.model.hfId is required when %s.model.source is hf" .name .name) $model.hfId }}
{{- if eq .name "tokenizer" }}
{{- include "chatstack.hfTokenizerDir" . }}
{{- else }}
{{- $id }}
{{- end }}
{{- else }}
{{- fail (printf "%s.model.source must be pvc or hf, got %q" .name $model.source) }}
{{- end }}
{{- end }}

{{- define "chatstack.hfTokenizerDir" -}}
/home/chatstack/tokenizer
{{- end }}

{{/* Name of the models PVC. */}}
{{- define "chatstack.modelsClaimName" -}}
{{- if .Values.models.pvc.create }}
{{- include "chatstack.componentName" (dict "root" . "component" "models") }}
{{- else }}
{{- required "models.pvc.claimName is required when models.pvc.enabled and not models.pvc.create" .Values.models.pvc.claimName }}
{{- end }}
{{- end }}

{{/* Does this service read its model from the PVC? ("true"/"") ctx: (dict "root" $ "name" ...) */}}
{{- define "chatstack.usesModelsPvc" -}}
{{- $svc := index .root.Values .name }}
{{- if and (hasKey $svc "model") (eq $svc.model.source "pvc") }}true{{ end }}
{{- end }}

{{/* Does this service use a hub id? ("true"/"") */}}
{{- define "chatstack.usesHub" -}}
{{- $svc := index .root.Values .name }}
{{- if and (hasKey $svc "model") (eq $svc.model.source "hf") }}true{{ end }}
{{- end }}

{{/* HF_TOKEN from the configured Secret (nothing when none is configured). */}}
{{- define "chatstack.hfTokenEnv" -}}
{{- with .Values.models.hfToken.secretName }}
- name: HF_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.models.hfToken.key | default "token" }}
{{- end }}
{{- end }}

{{/*
resources plus the GPU request: limits[<gpu.resourceName>] = gpu.count when gpu.enabled.
ctx: (dict "resources" $resources "gpu" $gpu "what" "generation.gpu")
*/}}
{{- define "chatstack.resources" -}}
{{- $resources := deepCopy (.resources | default dict) }}
{{- if and .gpu .gpu.enabled }}
{{- $count := required (printf "%s.count is required when %s.enabled is true" .what .what) .gpu.count }}
{{- $limits := $resources.limits | default dict }}
{{- $_ := set $limits (.gpu.resourceName | default "nvidia.com/gpu") (int $count) }}
{{- $_ := set $resources "limits" $limits }}
{{- end }}
{{- toYaml $resources }}
{{- end }}

{{/* Whole seconds a pod gets between SIGTERM and SIGKILL: preStop pause + drain + shutdown. */}}
{{- define "chatstack.terminationGrace" -}}
{{- add (int .preStopSleepSeconds) (int (ceil .graceSeconds)) 15 }}
{{- end }}

{{/* Is the Deployment's replica count managed by an autoscaler? ("true"/"") ctx: (dict "root" $ "name" ...) */}}
{{- define "chatstack.autoscaled" -}}
{{- $svc := index .root.Values .name }}
{{- if $svc.autoscaling.enabled }}true
{{- else if and (eq .name "generation") (or .root.Values.autoscaling.llmSignals.enabled .root.Values.keda.enabled) }}true
{{- end }}
{{- end }}

{{/*
Does the gateway serve its OpenAI-compatible HTTP API? ("true"/"") Only the Deployments of
runtime kubernetes do; the Ray runtime's gateway serves gRPC only (yet), so nothing HTTP-specific
is rendered there.
*/}}
{{- define "chatstack.httpEnabled" -}}
{{- if and .Values.gateway.enabled .Values.gateway.http.enabled }}true{{ end }}
{{- end }}

{{/* PromQL label matchers scoping queries to this release's namespace. */}}
{{- define "chatstack.promNamespace" -}}
namespace={{ .Release.Namespace | quote }}
{{- end }}
