{{/* Names, labels, images and shared pod pieces of the Vitrine chart. */}}

{{- define "vitrine.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vitrine.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<fullname>-<component>", e.g. vitrine-embedder; call with (dict "root" $ "component" "embedder"). */}}
{{- define "vitrine.componentName" -}}
{{- printf "%s-%s" (include "vitrine.fullname" .root | trunc 50 | trimSuffix "-") .component }}
{{- end }}

{{- define "vitrine.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vitrine.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vitrine.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vitrine.labels" -}}
helm.sh/chart: {{ include "vitrine.chart" . }}
{{ include "vitrine.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vitrine
{{- end }}

{{/* Labels of one component; call with (dict "root" $ "component" "embedder"). */}}
{{- define "vitrine.componentLabels" -}}
{{ include "vitrine.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "vitrine.componentSelectorLabels" -}}
{{ include "vitrine.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "vitrine.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vitrine.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vitrine.secretName" -}}
{{- default (include "vitrine.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Image reference; call with (dict "root" $ "repository" "vitrine/search" "suffix" ""). */}}
{{- define "vitrine.image" -}}
{{- $tag := default .root.Chart.AppVersion .root.Values.image.tag }}
{{- $repo := .repository }}
{{- if .root.Values.image.registry }}
{{- $repo = printf "%s/%s" (trimSuffix "/" .root.Values.image.registry) .repository }}
{{- end }}
{{- printf "%s:%s%s" $repo $tag (default "" .suffix) }}
{{- end }}

{{/* gRPC address of a component for its callers: the headless Service through gRPC's DNS resolver
(same namespace), so a client sees every ready pod and balances over them (round_robin); call with
(dict "root" $ "component" "tagger"). */}}
{{- define "vitrine.grpcAddress" -}}
{{- $values := index .root.Values .component }}
{{- printf "dns:///%s-headless:%v" (include "vitrine.componentName" .) $values.service.port }}
{{- end }}

{{- define "vitrine.embedderAddress" -}}
{{- include "vitrine.grpcAddress" (dict "root" . "component" "embedder") }}
{{- end }}

{{/* Headless twin of a component's Service: callers resolve every ready pod through gRPC's DNS
resolver (not-ready pods are left out); call with (dict "root" $ "component" "tagger"). */}}
{{- define "vitrine.headlessService" -}}
{{- $values := index .root.Values .component }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "vitrine.componentName" . }}-headless
  labels:
    {{- include "vitrine.componentLabels" . | nindent 4 }}
    vitrine.io/headless: "true"
spec:
  clusterIP: None
  publishNotReadyAddresses: false
  selector:
    {{- include "vitrine.componentSelectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $values.service.port }}
      targetPort: grpc
      protocol: TCP
      appProtocol: grpc
{{- end }}

{{/* Which store search uses: "subchart", "external" or "embedded". */}}
{{- define "vitrine.searchStore" -}}
{{- if .Values.qdrant.enabled }}subchart{{ else if .Values.search.qdrant.url }}external{{ else }}embedded{{ end }}
{{- end }}

{{/* The Qdrant URL search uses with a server (the official chart's Service is "<release>-qdrant"). */}}
{{- define "vitrine.qdrantUrl" -}}
{{- if .Values.search.qdrant.url }}
{{- .Values.search.qdrant.url }}
{{- else }}
{{- $name := "" }}
{{- if .Values.qdrant.fullnameOverride }}
{{- $name = .Values.qdrant.fullnameOverride }}
{{- else if contains "qdrant" .Release.Name }}
{{- $name = .Release.Name }}
{{- else }}
{{- $name = printf "%s-qdrant" .Release.Name }}
{{- end }}
{{- printf "http://%s:6333" ($name | trunc 63 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{/* Whether a Prometheus Operator resource is rendered: enabled is true, or "auto" and the API exists. */}}
{{- define "vitrine.monitoringEnabled" -}}
{{- $enabled := toString .enabled }}
{{- if or (eq $enabled "true") (and (eq $enabled "auto") (.root.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")) }}true{{ end }}
{{- end }}

{{/* An env var from the Secret; call with (dict "root" $ "name" "ENV" "key" "secret-key" "value" .Values.x).
Rendered when the chart's Secret holds the value, or (optional) from an existing Secret. */}}
{{- define "vitrine.secretEnv" -}}
{{- if or .root.Values.secrets.existingSecret .value }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "vitrine.secretName" .root }}
      key: {{ .key }}
      {{- if .root.Values.secrets.existingSecret }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}

{{/* OpenTelemetry: on when tracing.otlpEndpoint is set; call with (dict "root" $ "component" "tagger"). */}}
{{- define "vitrine.tracingEnv" -}}
{{- with .root.Values.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "vitrine-%s" $.component | quote }}
{{- end }}
{{- end }}

{{/* Settings every service shares; call with (dict "root" $ "component" "search" "prefix" "VITRINE_SEARCH_" "values" .Values.search).
Optional: "port" (the container port, when it is not the Service's: the explorer's HTTP port) and
"tokenSetting" (the setting that gets the Secret's auth-token: AUTH_TOKEN, or the explorer's WRITE_TOKEN). */}}
{{- define "vitrine.commonEnv" -}}
- name: {{ .prefix }}HOST
  value: "0.0.0.0"
- name: {{ .prefix }}PORT
  value: {{ default .values.service.port .port | quote }}
- name: {{ .prefix }}METRICS_PORT
  value: {{ .values.service.metricsPort | quote }}
- name: {{ .prefix }}LOG_LEVEL
  value: {{ .root.Values.logLevel | quote }}
- name: {{ .prefix }}LOG_FORMAT
  value: {{ .root.Values.logFormat | quote }}
- name: {{ .prefix }}GRACE_SECONDS
  value: {{ .values.graceSeconds | quote }}
- name: {{ .prefix }}ACCESS_LOG
  value: {{ .root.Values.accessLog | quote }}
{{- if hasKey .values "maxConnectionAgeSeconds" }}
- name: {{ .prefix }}MAX_CONNECTION_AGE_S
  value: {{ .values.maxConnectionAgeSeconds | quote }}
{{- end }}
{{- include "vitrine.tracingEnv" (dict "root" .root "component" .component) }}
{{- with include "vitrine.secretEnv" (dict "root" .root "name" (printf "%s%s" .prefix (default "AUTH_TOKEN" .tokenSetting)) "key" "auth-token" "value" .root.Values.secrets.authToken) | trim }}
{{ . }}
{{- end }}
- name: HOME
  value: /tmp
{{- end }}

{{/* Container ports, probes and lifecycle shared by the three services; call with (dict "values" .Values.x).
Optional "readinessService": the grpc.health.v1 service name the readiness probe asks about
(start-up and liveness ask about the whole server, ""). */}}
{{- define "vitrine.containerRuntime" -}}
ports:
  - name: grpc
    containerPort: {{ .values.service.port }}
    protocol: TCP
  - name: metrics
    containerPort: {{ .values.service.metricsPort }}
    protocol: TCP
startupProbe:
  grpc:
    port: {{ .values.service.port }}
  periodSeconds: {{ .values.probes.startup.periodSeconds }}
  failureThreshold: {{ .values.probes.startup.failureThreshold }}
  timeoutSeconds: 5
readinessProbe:
  grpc:
    port: {{ .values.service.port }}
    {{- with .readinessService }}
    service: {{ . }}
    {{- end }}
  periodSeconds: {{ .values.probes.readiness.periodSeconds }}
  timeoutSeconds: {{ .values.probes.readiness.timeoutSeconds }}
  failureThreshold: {{ .values.probes.readiness.failureThreshold }}
livenessProbe:
  grpc:
    port: {{ .values.service.port }}
  periodSeconds: {{ .values.probes.liveness.periodSeconds }}
  timeoutSeconds: {{ .values.probes.liveness.timeoutSeconds }}
  failureThreshold: {{ .values.probes.liveness.failureThreshold }}
{{- if .values.preStopSleepSeconds }}
lifecycle:
  preStop:
    sleep:
      seconds: {{ .values.preStopSleepSeconds }}
{{- end }}
{{- end }}

{{/* terminationGracePeriodSeconds: the preStop sleep, the service's drain time and a margin. */}}
{{- define "vitrine.terminationGrace" -}}
{{- add (int (ceil .values.graceSeconds)) (int (default 0 .values.preStopSleepSeconds)) 15 }}
{{- end }}

{{/* Pod-level settings shared by the Vitrine pods; call with (dict "root" $ "component" "search" "values" .Values.x).
Without a topologySpreadConstraints list of its own a component's pods are spread softly over zones,
then nodes (defaultTopologySpread), so one lost node or zone takes only part of them. */}}
{{- define "vitrine.podCommon" -}}
serviceAccountName: {{ include "vitrine.serviceAccountName" .root }}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ include "vitrine.terminationGrace" . }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml .values.topologySpreadConstraints | nindent 2 }}
{{- else if .root.Values.defaultTopologySpread }}
topologySpreadConstraints:
  {{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
  - maxSkew: 1
    topologyKey: {{ $key }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "vitrine.componentSelectorLabels" (dict "root" $.root "component" $.component) | nindent 8 }}
  {{- end }}
{{- end }}
{{- end }}

{{/* Pod annotations: a checksum of the Secret restarts pods when keys change. */}}
{{- define "vitrine.podAnnotations" -}}
checksum/secret: {{ include (print .root.Template.BasePath "/secret.yaml") .root | sha256sum }}
{{- with .values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}
