{{/*
Pieces of the RayService (runtime: ray).
*/}}

{{/* The Serve config, verbatim (a copy of deploy/ray/serve-config.yaml). */}}
{{- define "chatstack.serveConfig" -}}
{{- $doc := .Files.Get "files/serve-config.yaml" }}
{{- if not $doc }}
{{- fail "files/serve-config.yaml is missing from the chart (copy deploy/ray/serve-config.yaml)" }}
{{- end }}
{{- $doc }}
{{- end }}

{{/*
The Serve config hard-codes where things are; refuse a release that would not match it.
*/}}
{{- define "chatstack.validateServeConfig" -}}
{{- $serve := include "chatstack.serveConfig" . | fromYaml }}
{{- $mount := trimSuffix "/" .Values.models.pvc.mountPath }}
{{- range $app := $serve.applications }}
{{- $args := $app.args | default dict }}
{{- if and (hasKey $args "redis_url") (not (include "chatstack.redisExternal" $)) }}
{{- $want := printf "redis://%s:%d/" (include "chatstack.redisHost" $) (int $.Values.redis.port) }}
{{- if not (hasPrefix $want $args.redis_url) }}
{{- fail (printf "runtime ray: the Serve config's %s app uses %s, but this release's Redis is %s...; install the release as \"chatstack\" or set fullnameOverride: chatstack" $app.name $args.redis_url $want) }}
{{- end }}
{{- end }}
{{- if hasKey $args "api_keys_file" }}
{{- $want := printf "%s/%s" (include "chatstack.apiKeysMountPath" $) (include "chatstack.apiKeysSecretKey" $) }}
{{- if ne $args.api_keys_file $want }}
{{- fail (printf "runtime ray: the Serve config's %s app reads %s, but the API keys Secret is mounted as %s (use gateway.apiKeys.existingSecretKey: %s)" $app.name $args.api_keys_file $want (base $args.api_keys_file)) }}
{{- end }}
{{- end }}
{{- range $key := list "model" "model_dir" }}
{{- $path := toString (index $args $key | default "") }}
{{- if hasPrefix "/" $path }}
{{- if not (and $.Values.models.pvc.enabled (hasPrefix (printf "%s/" $mount) $path)) }}
{{- fail (printf "runtime ray: the Serve config's %s app loads %s: enable models.pvc with mountPath %s" $app.name $path (dir (dir $path))) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod template of a Ray node. ctx: (dict "root" $ "group" $groupValues "role" "head"|"cpu"|"gpu") */}}
{{- define "chatstack.rayPodTemplate" -}}
{{- $root := .root -}}
{{- $g := .group }}
{{- $component := dict "root" $root "component" "ray" }}
{{- $ray := $root.Values.ray }}
metadata:
  labels:
    {{- include "chatstack.componentSelectorLabels" $component | nindent 4 }}
    chatstack.io/ray-group: {{ .role }}
spec:
  serviceAccountName: {{ include "chatstack.serviceAccountName" $root }}
  automountServiceAccountToken: {{ $root.Values.serviceAccount.automountToken }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $ray.podSecurityContext | nindent 4 }}
  containers:
    - name: {{ if eq .role "head" }}ray-head{{ else }}ray-worker{{ end }}
      image: "{{ $ray.image.repository }}:{{ $ray.image.tag | default $root.Chart.AppVersion }}"
      imagePullPolicy: {{ $ray.image.pullPolicy | default "IfNotPresent" }}
      ports:
        {{- if eq .role "head" }}
        - {name: gcs-server, containerPort: 6379, protocol: TCP}
        - {name: dashboard, containerPort: 8265, protocol: TCP}
        - {name: client, containerPort: 10001, protocol: TCP}
        {{- end }}
        # Serve proxies run on every node (proxy_location: EveryNode).
        - {name: serve, containerPort: 8000, protocol: TCP}
        - {name: serve-grpc, containerPort: {{ $ray.serveGrpcPort }}, protocol: TCP}
        - {name: metrics, containerPort: 8080, protocol: TCP}
      env:
        {{- include "chatstack.hfTokenEnv" $root | trim | nindent 8 }}
        - name: RAY_SERVE_ENABLE_JSON_LOGGING
          value: "1"
      lifecycle:
        preStop:
          exec:
            command: ["/bin/sh", "-c", "ray stop"]
      resources:
        {{- include "chatstack.resources" (dict "resources" $g.resources "gpu" $g.gpu "what" (printf "ray.%sWorkers.gpu" .role)) | nindent 8 }}
      securityContext:
        allowPrivilegeEscalation: false
        capabilities:
          drop: ["ALL"]
      volumeMounts:
        - name: dshm
          mountPath: /dev/shm
        {{- if $root.Values.models.pvc.enabled }}
        - name: models
          mountPath: {{ $root.Values.models.pvc.mountPath }}
          readOnly: true
        {{- end }}
        {{- if $root.Values.gateway.enabled }}
        - name: api-keys
          mountPath: {{ include "chatstack.apiKeysMountPath" $root }}
          readOnly: true
        {{- end }}
  volumes:
    - name: dshm
      emptyDir:
        medium: Memory
        {{- with $g.shm }}
        sizeLimit: {{ .sizeLimit }}
        {{- end }}
    {{- if $root.Values.models.pvc.enabled }}
    - name: models
      persistentVolumeClaim:
        claimName: {{ include "chatstack.modelsClaimName" $root }}
    {{- end }}
    {{- if $root.Values.gateway.enabled }}
    - name: api-keys
      secret:
        secretName: {{ include "chatstack.apiKeysSecretName" $root }}
        defaultMode: 0440
        items:
          - key: {{ include "chatstack.apiKeysSecretKey" $root }}
            path: {{ include "chatstack.apiKeysSecretKey" $root }}
    {{- end }}
  {{- with $g.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* rayStartParams as strings (KubeRay requires string values). */}}
{{- define "chatstack.rayStartParams" -}}
{{- $params := dict }}
{{- range $k, $v := . }}
{{- $_ := set $params $k (include "chatstack.envValue" $v) }}
{{- end }}
{{- toYaml $params }}
{{- end }}
