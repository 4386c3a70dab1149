{{/*
Checks across values that values.schema.json cannot express; each fails with what to change.
*/}}
{{- define "chatstack.validate" -}}
{{- $v := .Values }}
{{- if $v.gateway.enabled }}
{{- if and (not $v.gateway.apiKeys.existingSecret) (not $v.gateway.apiKeys.keys) }}
{{- fail "gateway.apiKeys: set existingSecret (a Secret holding the keys file) or list keys ({owner, sha256} or {owner, key}); the gateway refuses every call without keys" }}
{{- end }}
{{- if eq $v.runtime "kubernetes" }}
{{- range $backend := list "tokenizer" "generation" "session" }}
{{- if not (index $v $backend).enabled }}
{{- fail (printf "gateway.enabled needs %s.enabled: the gateway calls it on every chat turn" $backend) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- range $name := list "generation" "reward" "safety" }}
{{- $svc := index $v $name }}
{{- if and $svc.enabled $svc.gpu.enabled $svc.gpu.count }}
{{- $tp := int (default 1 $svc.config.tensor_parallel_size) }}
{{- if gt $tp (int $svc.gpu.count) }}
{{- fail (printf "%s.config.tensor_parallel_size (%d) needs at least that many GPUs; %s.gpu.count is %d" $name $tp $name (int $svc.gpu.count)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $v.gateway.grpcRoute.enabled (not $v.gateway.grpcRoute.parentRefs) }}
{{- fail "gateway.grpcRoute.parentRefs: name the Gateway the route attaches to, e.g. [{name: public, namespace: gateway-system}]; a route without a parent serves nothing" }}
{{- end }}
{{- if and $v.gateway.ingress.enabled (not $v.gateway.ingress.host) }}
{{- fail "gateway.ingress.host is required when gateway.ingress.enabled (the host name clients call)" }}
{{- end }}
{{- /* The HTTP API's route and Ingress lead to the Service's http port, there only with http.enabled. */}}
{{- if $v.gateway.enabled }}
{{- if not $v.gateway.http.enabled }}
{{- if $v.gateway.httpRoute.enabled }}
{{- fail "gateway.httpRoute.enabled needs gateway.http.enabled: it would route to an HTTP API the gateway does not serve" }}
{{- end }}
{{- if $v.gateway.ingress.http.enabled }}
{{- fail "gateway.ingress.http.enabled needs gateway.http.enabled: it would route to an HTTP API the gateway does not serve" }}
{{- end }}
{{- end }}
{{- if and $v.gateway.httpRoute.enabled (not $v.gateway.httpRoute.parentRefs) }}
{{- fail "gateway.httpRoute.parentRefs: name the Gateway the route attaches to, e.g. [{name: public, namespace: gateway-system}]; a route without a parent serves nothing" }}
{{- end }}
{{- if and $v.gateway.ingress.http.enabled (not $v.gateway.ingress.host) }}
{{- fail "gateway.ingress.host is required when gateway.ingress.http.enabled (the host name clients call)" }}
{{- end }}
{{- end }}
{{- if and $v.keda.enabled $v.autoscaling.llmSignals.enabled }}
{{- fail "keda.enabled and autoscaling.llmSignals.enabled both scale generation: enable one" }}
{{- end }}
{{- if and $v.keda.enabled (eq $v.runtime "kubernetes") }}
{{- $_ := required "keda.prometheus.serverAddress is required when keda.enabled (the Prometheus KEDA queries)" $v.keda.prometheus.serverAddress }}
{{- end }}
{{- end }}
