{{/*
Sections of NOTES.txt that explain how calls are balanced and what an operator must set.
*/}}
{{- define "chatstack.notesBalancing" -}}
{{- if and .Values.gateway.enabled (eq .Values.runtime "kubernetes") }}
{{- $b := .Values.gateway.balancing }}

How the gateway's calls are balanced: a Kubernetes Service balances per connection (kube-proxy picks a
pod when a connection opens) and gRPC sends every call over one long-lived HTTP/2 connection, so
through a ClusterIP Service all of a gateway's calls would reach one pod of each backend.
{{- if eq $b.discovery "dns" }}
The gateway therefore resolves each backend's headless Service (every ready pod), keeps a channel
per pod and picks one per call:
{{- range $backend := list "tokenizer" "generation" "reward" "session" }}
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
{{- if not (or $route.enabled $ingress.enabled) }}

The gateway's Service {{ $gateway }} balances per connection too: a client that keeps one connection
(an app server, a batch job) stays on one gateway pod. To spread clients' calls over the gateway's pods,
put a per-request balancer in front: gateway.grpcRoute (Gateway API; set parentRefs) or gateway.ingress
(set className, host, tls.secretName; ingress-nginx needs the backend-protocol GRPC annotation, the default).
{{- end }}
{{- end }}
{{- end }}
