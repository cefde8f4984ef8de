{{/* The tagger's training and retraining pods: dataset sources and the pod they share. */}}

{{- define "vitrine.modelStoreClaim" -}}
{{- default (printf "%s-models" (include "vitrine.componentName" (dict "root" . "component" "tagger"))) .Values.tagger.modelStore.existingClaim }}
{{- end }}

{{/* The file a dataset source is read from, as `vitrine-tagger --data` takes it; call with
(dict "source" .Values.tagger.training.dataset "name" "data"). URLs are downloaded by the command,
ConfigMap keys and claim files are mounted read-only under /var/lib/vitrine/datasets/<name>. */}}
{{- define "vitrine.datasetPath" -}}
{{- if eq .source.kind "url" }}{{ .source.url }}
{{- else if eq .source.kind "configMap" }}{{ printf "/var/lib/vitrine/datasets/%s/%s" .name .source.configMap.key }}
{{- else if eq .source.kind "existingClaim" }}{{ printf "/var/lib/vitrine/datasets/%s/%s" .name (trimPrefix "/" .source.existingClaim.path) }}
{{- end }}
{{- end }}

{{- define "vitrine.datasetVolume" -}}
{{- if eq .source.kind "configMap" }}
- name: dataset-{{ .name }}
  configMap:
    name: {{ .source.configMap.name }}
    items:
      - key: {{ .source.configMap.key }}
        path: {{ .source.configMap.key }}
{{- else if eq .source.kind "existingClaim" }}
- name: dataset-{{ .name }}
  persistentVolumeClaim:
    claimName: {{ .source.existingClaim.claimName }}
    readOnly: true
{{- end }}
{{- end }}

{{- define "vitrine.datasetMount" -}}
{{- if has .source.kind (list "configMap" "existingClaim") }}
- name: dataset-{{ .name }}
  mountPath: /var/lib/vitrine/datasets/{{ .name }}
  readOnly: true
{{- end }}
{{- end }}

{{/* A hash of everything that decides what a training run produces: a new value trains again. */}}
{{- define "vitrine.trainingHash" -}}
{{- $t := .Values.tagger }}
{{- $spec := dict "training" (omit $t.training "enabled" "backoffLimit" "activeDeadlineSeconds" "ttlSecondsAfterFinished" "resources" "nodeSelector" "tolerations" "podAnnotations") "vocabulary" $t.vocabulary "image" (include "vitrine.image" (dict "root" . "repository" $t.image.repository)) }}
{{- toJson $spec | sha256sum | trunc 8 }}
{{- end }}

{{/* Job names stay within 63 characters: the pods' job-name label must. */}}
{{- define "vitrine.trainingJobName" -}}
{{- printf "%s-tagger-train-%s" (include "vitrine.fullname" . | trunc 40 | trimSuffix "-") (include "vitrine.trainingHash" .) }}
{{- end }}

{{- define "vitrine.retrainingCronJobName" -}}
{{- printf "%s-tagger-retrain" (include "vitrine.fullname" . | trunc 40 | trimSuffix "-") }}
{{- end }}

{{- define "vitrine.trainingVersion" -}}
{{- default (printf "train-%s" (include "vitrine.trainingHash" .)) .Values.tagger.training.version }}
{{- end }}

{{/* The pod template of the training Job and the retraining CronJob's Jobs; call with
(dict "root" $ "command" "train" "values" .Values.tagger.training|retraining "args" (list ...)). The
model store is mounted read-write; an init container waits until the embedder is SERVING, so a
fresh install's Job does not fail while the embedder still loads its models. */}}
{{- define "vitrine.trainingPod" -}}
{{- $root := .root }}
{{- $t := $root.Values.tagger }}
{{- $training := $t.training }}
metadata:
  labels:
    {{- include "vitrine.componentLabels" (dict "root" $root "component" (printf "tagger-%s" .command)) | nindent 4 }}
  {{- with $training.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  restartPolicy: Never
  serviceAccountName: {{ include "vitrine.serviceAccountName" $root }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . }}
    {{- end }}
  {{- end }}
  {{- with $training.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $training.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  initContainers:
    - name: wait-for-embedder
      image: {{ include "vitrine.image" (dict "root" $root "repository" $t.image.repository) }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      command:
        - python
        - -c
        - |
          import sys, time
          from vitrine.launcher import health_status
          while health_status(sys.argv[1], timeout_s=5) != 1:
              print("waiting for the embedder at", sys.argv[1], flush=True)
              time.sleep(10)
        - {{ include "vitrine.embedderAddress" $root }}
      env:
        - name: HOME
          value: /tmp
      securityContext:
        {{- toYaml $root.Values.containerSecurityContext | nindent 8 }}
      resources:
        requests:
          cpu: 10m
          memory: 64Mi
        limits:
          memory: 256Mi
      volumeMounts:
        - name: tmp
          mountPath: /tmp
  containers:
    - name: {{ .command }}
      image: {{ include "vitrine.image" (dict "root" $root "repository" $t.image.repository "suffix" $training.imageTagSuffix) }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      {{- if eq .command "train" }}
      # The version folder already complete (a Job Helm created again): nothing to train.
      command:
        - sh
        - -c
        - |
          if [ -f "/var/lib/vitrine/tagger/models/$TRAINING_VERSION/meta.json" ]; then
            echo "version $TRAINING_VERSION is already in the model store; nothing to train"
            exit 0
          fi
          exec "$@"
        - train
      {{- end }}
      args:
        {{- toYaml .args | nindent 8 }}
      env:
        - name: HOME
          value: /tmp
        {{- if eq .command "train" }}
        - name: TRAINING_VERSION
          value: {{ include "vitrine.trainingVersion" $root | quote }}
        {{- else }}
        {{- include "vitrine.feedbackDatabaseEnv" $root | trim | nindent 8 }}
        {{- end }}
        {{- with include "vitrine.tracingEnv" (dict "root" $root "component" (printf "tagger-%s" .command)) | trim }}{{ . | nindent 8 }}{{- end }}
      securityContext:
        {{- toYaml $root.Values.containerSecurityContext | nindent 8 }}
      resources:
        {{- toYaml .values.resources | nindent 8 }}
      volumeMounts:
        - name: models
          mountPath: /var/lib/vitrine/tagger/models
        - name: tmp
          mountPath: /tmp
        {{- with include "vitrine.datasetMount" (dict "source" $training.dataset "name" "data") | trim }}{{ . | nindent 8 }}{{- end }}
        {{- with include "vitrine.datasetMount" (dict "source" $training.evalDataset "name" "eval-data") | trim }}{{ . | nindent 8 }}{{- end }}
  volumes:
    - name: models
      persistentVolumeClaim:
        claimName: {{ include "vitrine.modelStoreClaim" $root }}
    # Downloads and the embedding cache (about 0.3 GiB for the full Tate split).
    - name: tmp
      emptyDir: {}
    {{- with include "vitrine.datasetVolume" (dict "source" $training.dataset "name" "data") | trim }}{{ . | nindent 4 }}{{- end }}
    {{- with include "vitrine.datasetVolume" (dict "source" $training.evalDataset "name" "eval-data") | trim }}{{ . | nindent 4 }}{{- end }}
{{- end }}

{{/* `python -m vitrine.tagger.cli <command>` and the arguments both commands share: data,
vocabulary, embedder, cache, model store; call with (dict "root" $ "command" "train"). Returns JSON. */}}
{{- define "vitrine.trainingCommonArgs" -}}
{{- $t := .root.Values.tagger }}
{{- $args := list "python" "-m" "vitrine.tagger.cli" .command }}
{{- $args = concat $args (list "--data" (include "vitrine.datasetPath" (dict "source" $t.training.dataset "name" "data"))) }}
{{- if $t.training.evalDataset.kind }}
{{- $args = concat $args (list "--eval-data" (include "vitrine.datasetPath" (dict "source" $t.training.evalDataset "name" "eval-data"))) }}
{{- end }}
{{- $args = concat $args (list "--out-dir" "/var/lib/vitrine/tagger/models" "--vocabulary" $t.vocabulary "--embedder" (include "vitrine.embedderAddress" .root) "--cache" "/tmp/embeddings.sqlite3") }}
{{- toJson $args }}
{{- end }}
