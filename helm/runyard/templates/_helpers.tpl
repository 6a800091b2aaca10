{{/* Names, labels and shared fragments of the runyard chart. */}}

{{/* Chart name, 63 characters at most. */}}
{{- define "runyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: `<release>-<chart>` unless the release name already contains the chart name. */}}
{{- define "runyard.fullname" -}}
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

{{/* `<fullname>-<suffix>`, 63 characters at most. Call with (list $ "suffix"). */}}
{{- define "runyard.suffixed" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "runyard.fullname" $root | trunc (int (sub 62 (len (index . 1))))) (index . 1) | trimSuffix "-" }}
{{- end }}

{{- define "runyard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "runyard.labels" -}}
helm.sh/chart: {{ include "runyard.chart" . }}
{{ include "runyard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: runyard
{{- end }}

{{/* Selector labels of the operator. */}}
{{- define "runyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of the operator pod. */}}
{{- define "runyard.operatorSelectorLabels" -}}
{{ include "runyard.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Selector labels of the bundled MLflow server. */}}
{{- define "runyard.mlflowSelectorLabels" -}}
{{ include "runyard.selectorLabels" . }}
app.kubernetes.io/component: mlflow
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "runyard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "runyard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image: repository@digest, else repository:tag (default appVersion). */}}
{{- define "runyard.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* In-cluster URL of the bundled MLflow server. */}}
{{- define "runyard.mlflowUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "runyard.suffixed" (list . "mlflow")) .Release.Namespace (int .Values.mlflow.port) }}
{{- end }}

{{/*
The operator configuration file (operator/runyard_operator/config.py): only keys with values are rendered, so the
operator's defaults apply to the rest; the bundled MLflow server becomes the default tracker when enabled.
*/}}
{{- define "runyard.operatorConfig" -}}
{{- $t := .Values.config.tracking }}
{{- $m := $t.mlflow }}
{{- $tracking := dict }}
{{- $trackers := $t.defaultTrackers }}
{{- if and .Values.mlflow.enabled (not $trackers) }}
{{- $trackers = list "mlflow" }}
{{- end }}
{{- if $trackers }}
{{- $_ := set $tracking "defaultTrackers" $trackers }}
{{- end }}
{{- $uri := $m.trackingUri }}
{{- if and .Values.mlflow.enabled (not $uri) }}
{{- $uri = include "runyard.mlflowUrl" . }}
{{- end }}
{{- if $uri }}
{{- $mlflow := dict "trackingUri" $uri "systemMetrics" $m.systemMetrics }}
{{- range $key := list "podTrackingUri" "uiUrl" "username" "password" "token" }}
{{- if index $m $key }}
{{- $_ := set $mlflow $key (index $m $key) }}
{{- end }}
{{- end }}
{{- $_ := set $tracking "mlflow" $mlflow }}
{{- end }}
{{- if $t.extraEnv }}
{{- $_ := set $tracking "extraEnv" $t.extraEnv }}
{{- end }}
{{- if $t.secretEnv }}
{{- $_ := set $tracking "secretEnv" $t.secretEnv }}
{{- end }}
{{- $config := dict "tracking" $tracking }}
{{- if .Values.config.gpuMetrics }}
{{- $_ := set $config "gpuMetrics" .Values.config.gpuMetrics }}
{{- end }}
{{- if .Values.config.artifacts }}
{{- $_ := set $config "artifacts" .Values.config.artifacts }}
{{- end }}
{{- $_ := set $config "namespaces" .Values.config.namespaces }}
{{- $_ := set $config "podPolicy" .Values.config.podPolicy }}
{{- if .Values.progress.enabled }}
{{- $url := printf "http://%s.%s.svc:%v/v1/progress" (include "runyard.suffixed" (list . "progress")) .Release.Namespace .Values.progress.port }}
{{- $_ := set $config "progress" (dict "url" $url "port" .Values.progress.port "writeIntervalSeconds" .Values.progress.writeIntervalSeconds "reportIntervalSeconds" .Values.progress.reportIntervalSeconds) }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
Namespaced rules of the operator, shared by the ClusterRole (all namespaces) and the per-namespace Roles.
Each verb is one the operator (runyard_operator/k8s.py, controller.py) or kopf actually sends; README.md explains them.
*/}}
{{- define "runyard.namespacedRules" -}}
# kopf watches runs; the controller adds/removes its finalizer (JSON patch) and deletes runs past their TTL; the
# sweep controller creates its trials (read after a 409 to check the owner) and suspends the ones it stops early.
- apiGroups: ["runyard.dev"]
  resources: ["trainingruns"]
  verbs: ["list", "watch", "create", "get", "patch", "delete"]
# Sweeps: watched, and one merge patch of their status per change.
- apiGroups: ["runyard.dev"]
  resources: ["trainingrunsweeps"]
  verbs: ["list", "watch"]
- apiGroups: ["runyard.dev"]
  resources: ["trainingrunsweeps/status"]
  verbs: ["patch"]
# A run's template (spec.templateRef in its namespace), read once when the run is first seen.
- apiGroups: ["runyard.dev"]
  resources: ["trainingruntemplates"]
  verbs: ["get"]
# One merge patch of status per reconcile.
- apiGroups: ["runyard.dev"]
  resources: ["trainingruns/status"]
  verbs: ["patch"]
# Children carry blockOwnerDeletion owner references to their run: with the OwnerReferencesPermissionEnforcement
# admission plugin (OpenShift and others) creating them requires update on the owner's finalizers subresource.
- apiGroups: ["runyard.dev"]
  resources: ["trainingruns/finalizers"]
  verbs: ["update"]
# One Job per role: watched and listed (label selector), created (a server-side dry-run first for multi-role runs),
# read after a 409 to check its owner, suspended/resumed, deleted on gang restart, suspend and clean-up.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "watch", "create", "get", "patch", "delete"]
# Pods are only watched and listed (label selector) for phases, exit codes and nodes; never created, deleted or exec'd.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# The last lines of a failed replica's log, read once when the failure is recorded (status.failure.logTail).
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# Headless Service and MPI hostfile ConfigMap: created, and read only after a 409 to check that the run owns them.
# Never patched: an object the run does not own is never taken over.
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["create", "get"]
# The MPI SSH Secret: created with a server-generated name. No get, list, watch or patch: the operator cannot read
# any Secret, its own included.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create"]
# One Event per phase transition; the Job controller's FailedCreate Events of a run's Jobs (quota, Pod Security...),
# watched by reason.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list", "watch"]
{{- with .Values.rbac.extraRules }}
{{ toYaml . }}
{{- end }}
{{- end }}
