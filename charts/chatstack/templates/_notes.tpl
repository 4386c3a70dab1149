{{/*
Sections of NOTES.txt that explain how calls are balanced, what an operator must set, and how to
reach the OpenAI-compatible HTTP API.
*/}}

{{/* Step 4: the OpenAI-compatible HTTP API through a port-forward (or why there is none). */}}
{{- define "chatstack.notesOpenAI" -}}
{{- $gateway := include "chatstack.componentName" (dict "root" . "component" "gateway") }}
{{- $port := .Values.gateway.httpPort }}
{{- if include "chatstack.httpEnabled" . }}

4. Or use the OpenAI-compatible HTTP API, on the same Service's port http with the same API keys (as Bearer tokens):

     kubectl -n {{ .Release.Namespace }} port-forward svc/{{ $gateway }} {{ $port }}
     export OPENAI_BASE_URL=http://localhost:{{ $port }}/v1
     export OPENAI_API_KEY=<your-api-key>
     curl -s "$OPENAI_BASE_URL/models" -H "Authorization: Bearer $OPENAI_API_KEY"

   OpenAI's SDKs read OPENAI_BASE_URL and OPENAI_API_KEY (Python: openai.OpenAI()); the model is the id
   /v1/models lists. It serves /v1/chat/completions, /v1/responses and /v1/conversations; streams are
   server-sent events.
{{- if eq .Values.runtime "ray" }}
   (In the Ray runtime the port leads to Ray Serve's HTTP proxy, where the gateway application serves /v1.)
{{- end }}
{{- else }}

4. The OpenAI-compatible HTTP API is switched off (gateway.http.enabled: false).
{{- end }}
{{- end }}
{{- define "chatstack.notesBalancing" -}}
{{- if and .Values.gateway.enabled (eq .Values.runtime "kubernetes") }}
{{- $b := .Values.gateway.balancing }}

How the gateway's calls are balanced: a Kubernetes Service balances per connection (kube-proxy picks a
pod when a connection opens) and gRPC sends every call over one long-lived HTTP/2 connection, so
through a ClusterIP Service all of a gateway's calls would reach one pod of each backend.
{{- if eq $b.discovery "dns" }}
The gateway therefore resolves each backend's headless Service (every ready pod), keeps a channel
per pod and picks one per call:
{{- range $backend := list "tokenizer" "generation" "reward" "session" "safety" }}
{{- if (index $.Values $backend).enabled }}
     {{ $backend }}: {{ include "chatstack.backendTarget" (dict "root" $ "name" $backend) }} ({{ index $b.routing $backend }})
{{- end }}
{{- end }}
A new pod gets calls within {{ $b.resolveIntervalSeconds }} s of becoming ready
{{- if include "chatstack.autoscaled" (dict "root" . "name" "generation") }}, so scaling generation out (HPA/KEDA)
relieves its queue at once
{{- end }}. Set clusterDomain if your cluster's DNS domain is not cluster.local.
{{- else }}
gateway.balancing.discovery is "service": the gateway calls the ClusterIP Services over one connection
each, so it relies on a service mesh to balance per request; without one, extra backend pods idle.
{{- end }}
Every service sends GOAWAY to a connection older than <service>.maxConnectionAgeSeconds (0 = never),
so long-lived clients reconnect and reach pods added since.
{{- end }}
{{- end }}

{{- define "chatstack.notesClients" -}}
{{- if .Values.gateway.enabled }}
{{- $gateway := include "chatstack.componentName" (dict "root" . "component" "gateway") }}
{{- $route := .Values.gateway.grpcRoute }}
{{- $ingress := .Values.gateway.ingress }}
{{- if $route.enabled }}

Clients outside the cluster: GRPCRoute {{ $gateway }} attaches ChatService to
{{- range $route.parentRefs }} Gateway {{ .namespace | default $.Release.Namespace }}/{{ .name }}{{ with .sectionName }} (listener {{ . }}){{ end }}{{ end }}
{{- with $route.hostnames }} for {{ join ", " . }}{{ end }}; the Gateway's proxy balances each call over the gateway's pods.
   The Gateway's listener must allow routes from namespace {{ .Release.Namespace }}: check the route is Accepted with
     kubectl -n {{ .Release.Namespace }} get grpcroute {{ $gateway }} -o jsonpath='{.status.parents[*].conditions}'
{{- end }}
{{- if $ingress.enabled }}

Clients outside the cluster: Ingress {{ $gateway }} serves ChatService on {{ $ingress.host }}{{ if $ingress.tls.secretName }}:443 (TLS, Secret {{ $ingress.tls.secretName }}){{ end }}; the controller balances each call over the gateway's pods.
{{- if not $ingress.tls.secretName }}
   WARNING: gateway.ingress.tls.secretName is empty. ingress-nginx serves HTTP/2, hence gRPC, only over TLS:
   set it (a kubernetes.io/tls Secret for {{ $ingress.host }}) unless your controller accepts h2c.
{{- end }}
{{- end }}
{{- if include "chatstack.httpEnabled" . }}
{{- $httpRoute := .Values.gateway.httpRoute }}
{{- if $httpRoute.enabled }}

OpenAI API from outside the cluster: HTTPRoute {{ $gateway }} attaches /v1 to
{{- range $httpRoute.parentRefs }} Gateway {{ .namespace | default $.Release.Namespace }}/{{ .name }}{{ with .sectionName }} (listener {{ . }}){{ end }}{{ end }}
{{- with $httpRoute.hostnames }} for {{ join ", " . }}{{ end }}:
     export OPENAI_BASE_URL=https://{{ if $httpRoute.hostnames }}{{ first $httpRoute.hostnames }}{{ else }}<the Gateway's address>{{ end }}/v1   (http:// on a plain-HTTP listener)
{{- if $httpRoute.requestTimeout }}
   A request, a whole stream included, may take up to {{ $httpRoute.requestTimeout }} (timeouts.request; gateway.httpRoute.requestTimeout).
{{- end }}
   Check the route is Accepted with
     kubectl -n {{ .Release.Namespace }} get httproute {{ $gateway }} -o jsonpath='{.status.parents[*].conditions}'
{{- end }}
{{- if $ingress.http.enabled }}

OpenAI API from outside the cluster: Ingress {{ $gateway }}-http serves /v1 on {{ $ingress.host }}:
     export OPENAI_BASE_URL={{ if $ingress.tls.secretName }}https{{ else }}http{{ end }}://{{ $ingress.host }}/v1
{{- if not $ingress.tls.secretName }}
   WARNING: gateway.ingress.tls.secretName is empty: API keys cross the network in clear.
{{- end }}
{{- end }}
{{- if not (or $httpRoute.enabled $ingress.http.enabled) }}

The OpenAI API's clients keep their connections open too (HTTP keep-alive), each on one gateway pod
through the Service. gateway.httpRoute (set parentRefs) or gateway.ingress.http (set host) expose /v1
outside the cluster and balance each request over the gateway's pods.
{{- end }}
{{- end }}
{{- if not (or $route.enabled $ingress.enabled) }}

The gateway's Service {{ $gateway }} balances per connection too: a client that keeps one connection
(an app server, a batch job) stays on one gateway pod. To spread clients' calls over the gateway's pods,
put a per-request balancer in front: gateway.grpcRoute (Gateway API; set parentRefs) or gateway.ingress
(set className, host, tls.secretName; ingress-nginx needs the backend-protocol GRPC annotation, the default).
{{- end }}
{{- end }}
{{- end }}
