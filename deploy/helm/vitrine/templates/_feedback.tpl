{{/* Where curators' feedback lives, and the checks that keep it durable and shared. */}}

{{- define "vitrine.postgresqlName" -}}
{{- include "vitrine.componentName" (dict "root" . "component" "postgresql") }}
{{- end }}

{{/* Secret and key holding the chart-run PostgreSQL's password. */}}
{{- define "vitrine.postgresqlSecretName" -}}
{{- default (include "vitrine.postgresqlName" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Where the tagger's feedback is: "chart" (this release's PostgreSQL), "secret" (an external
database's URL in secrets.existingSecret), "url" (tagger.feedbackDatabaseUrl, in the chart's
Secret) or "sqlite" (one file on a claim). */}}
{{- define "vitrine.feedbackBackend" -}}
{{- $t := .Values.tagger }}
{{- if eq $t.feedbackStore.mode "sqlite" }}sqlite
{{- else if .Values.postgresql.enabled }}chart
{{- else if .Values.secrets.existingSecret }}secret
{{- else if $t.feedbackDatabaseUrl }}url
{{- end }}
{{- end }}

{{- define "vitrine.feedbackClaimName" -}}
{{- default (printf "%s-feedback" (include "vitrine.componentName" (dict "root" . "component" "tagger"))) .Values.tagger.feedbackStore.sqlite.existingClaim }}
{{- end }}

{{/* Env of a container that opens the feedback database: VITRINE_TAGGER_FEEDBACK_DATABASE_URL, and
PGPASSWORD for the chart's PostgreSQL (libpq reads it, so the password never sits in a URL). */}}
{{- define "vitrine.feedbackDatabaseEnv" -}}
{{- $backend := include "vitrine.feedbackBackend" . }}
{{- if eq $backend "chart" }}
- name: VITRINE_TAGGER_FEEDBACK_DATABASE_URL
  value: {{ printf "postgresql://%s@%s:5432/%s" .Values.postgresql.username (include "vitrine.postgresqlName" .) .Values.postgresql.database | quote }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "vitrine.postgresqlSecretName" . }}
      key: postgres-password
{{- else if or (eq $backend "secret") (eq $backend "url") }}
{{- /* Not optional: a missing key must stop the pod, never fall back to a local SQLite file. */}}
- name: VITRINE_TAGGER_FEEDBACK_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "vitrine.secretName" . }}
      key: feedback-database-url
{{- end }}
{{- end }}

{{/* Refuses value combinations that would lose or split data, with what to change. Rendered
once, from validate.yaml. */}}
{{- define "vitrine.validate" -}}
{{- $t := .Values.tagger }}
{{- $backend := include "vitrine.feedbackBackend" . }}
{{- if eq $backend "sqlite" }}
{{- if .Values.postgresql.enabled }}
{{- fail "tagger.feedbackStore.mode=sqlite keeps feedback in a SQLite file: set postgresql.enabled=false too (or keep mode postgresql to use the chart's PostgreSQL)" }}
{{- end }}
{{- if $t.autoscaling.enabled }}
{{- fail "tagger.feedbackStore.mode=sqlite is one file on one pod: set tagger.autoscaling.enabled=false and tagger.replicaCount=1, or use PostgreSQL (postgresql.enabled=true or tagger.feedbackDatabaseUrl) so replicas share feedback" }}
{{- end }}
{{- if gt (int $t.replicaCount) 1 }}
{{- fail (printf "tagger.feedbackStore.mode=sqlite is one file on one pod, but tagger.replicaCount=%v: set it to 1, or use PostgreSQL (postgresql.enabled=true or tagger.feedbackDatabaseUrl) so replicas share feedback" $t.replicaCount) }}
{{- end }}
{{- if $t.retraining.enabled }}
{{- fail "tagger.retraining reads the feedback from PostgreSQL; with tagger.feedbackStore.mode=sqlite the file belongs to the tagger pod: use PostgreSQL, or retrain by hand (vitrine-tagger retrain --feedback <file>)" }}
{{- end }}
{{- else if not $backend }}
{{- fail "no database for curators' feedback: keep postgresql.enabled=true (the chart's PostgreSQL), or set tagger.feedbackDatabaseUrl or secrets.existingSecret (key feedback-database-url) for an external one; tagger.feedbackStore.mode=sqlite with one replica keeps it in a file on a claim" }}
{{- else if and (eq $backend "chart") $t.feedbackDatabaseUrl }}
{{- fail "tagger.feedbackDatabaseUrl names an external database but postgresql.enabled=true runs one in the chart: set postgresql.enabled=false to use the URL, or clear it" }}
{{- end }}
{{- if not (or $t.modelStore.create $t.modelStore.existingClaim) }}
{{- fail "tagger.modelStore needs a claim (trained versions must outlive pods): keep tagger.modelStore.create=true or set tagger.modelStore.existingClaim" }}
{{- end }}
{{- if and $t.modelStore.create (not $t.modelStore.existingClaim) (not (has "ReadWriteMany" $t.modelStore.accessModes)) (or $t.autoscaling.enabled (gt (int $t.replicaCount) 1) $t.training.enabled $t.retraining.enabled) }}
{{- fail "tagger.modelStore.accessModes needs ReadWriteMany: several tagger pods and the training Jobs mount the model store, on any node (or run one tagger pod without training Jobs)" }}
{{- end }}
{{- if and $t.retraining.enabled (not $t.training.evalDataset.kind) }}
{{- fail "tagger.retraining keeps a new version only if it scores at least as well on dev objects: set tagger.training.evalDataset" }}
{{- end }}
{{- range $component := list "tagger" "search" "explorer" "embedder" }}
{{- $a := (index $.Values $component).autoscaling }}
{{- if and $a.enabled (gt (int $a.minReplicas) (int $a.maxReplicas)) }}
{{- fail (printf "%s.autoscaling.minReplicas (%v) is above maxReplicas (%v)" $component $a.minReplicas $a.maxReplicas) }}
{{- end }}
{{- end }}
{{- $e := .Values.embedder }}
{{- if and (eq $e.modelSource "claim") (not $e.modelCache.existingClaim) }}
{{- fail "embedder.modelSource=claim mounts a claim that already holds the models: set embedder.modelCache.existingClaim" }}
{{- end }}
{{- if and (ne $e.modelSource "image") $e.modelCache.persistence (not $e.modelCache.existingClaim) (not (has "ReadWriteMany" $e.modelCache.accessModes)) (or $e.autoscaling.enabled (gt (int $e.replicaCount) 1)) }}
{{- fail "several embedder pods share the model cache: set embedder.modelCache.accessModes to [ReadWriteMany], or embedder.modelSource=image (models in the image, no claim)" }}
{{- end }}
{{- if and .Values.edge.ingress.enabled (not (and .Values.edge.ingress.host .Values.edge.ingress.tlsSecretName)) }}
{{- fail "edge.ingress needs edge.ingress.host and edge.ingress.tlsSecretName: gRPC reaches the Ingress controller over HTTP/2, which needs TLS" }}
{{- end }}
{{- if and .Values.edge.grpcRoute.enabled (not .Values.edge.grpcRoute.parentRefs) }}
{{- fail "edge.grpcRoute needs edge.grpcRoute.parentRefs: the Gateway (name, namespace) the route attaches to" }}
{{- end }}
{{- end }}
