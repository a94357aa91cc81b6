{{/* The chart's name, shortened to what a label allows. */}}
{{- define "ocrfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release-qualified name every resource of this chart is prefixed with. */}}
{{- define "ocrfleet.fullname" -}}
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

{{- define "ocrfleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "ocrfleet.labels" -}}
helm.sh/chart: {{ include "ocrfleet.chart" . }}
{{ include "ocrfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ocrfleet
{{- end }}

{{/* The labels the operator's Service selects its pod by. */}}
{{- define "ocrfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ocrfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "ocrfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ocrfleet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ocrfleet.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "ocrfleet.metricsServiceName" -}}
{{- printf "%s-metrics" (include "ocrfleet.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret holding the metrics adapter's serving certificate. */}}
{{- define "ocrfleet.metricsTLSSecretName" -}}
{{- .Values.metricsAdapter.tlsSecretName | default (printf "%s-metrics-tls" (include "ocrfleet.fullname" .)) }}
{{- end }}

{{/* The operator's rules in the namespaces it watches (a ClusterRole's, or a Role's with watchNamespace). */}}
{{- define "ocrfleet.namespacedRules" }}
  # its own resources: kopf's watches and bookkeeping patches; an OcrJob deletes itself after its TTL
  - apiGroups: [ocrfleet.io]
    resources: [ocrclusters, ocrjobs]
    verbs: [get, list, watch, patch]
  - apiGroups: [ocrfleet.io]
    resources: [ocrjobs]
    verbs: [delete]
  - apiGroups: [ocrfleet.io]
    resources: [ocrclusters/status, ocrjobs/status]
    verbs: [patch]
  # owner references that block deletion need update on the owner's finalizers
  - apiGroups: [ocrfleet.io]
    resources: [ocrclusters/finalizers]
    verbs: [update]
  # the children of an OcrCluster: watched for repair, created, server-side applied (never deleted:
  # the garbage collector removes them with their owner)
  - apiGroups: [apps]
    resources: [deployments, statefulsets]
    verbs: [get, list, watch, create, patch]
  - apiGroups: [apps]
    resources: [deployments/scale]
    verbs: [patch]
  - apiGroups: [""]
    resources: [services]
    verbs: [get, list, watch, create, patch]
  - apiGroups: [autoscaling]
    resources: [horizontalpodautoscalers]
    verbs: [get, list, watch, create, patch, delete]
  # pools with workers.autoscaler keda (and the switch between the two modes)
  - apiGroups: [keda.sh]
    resources: [scaledobjects, triggerauthentications]
    verbs: [get, list, watch, create, patch, delete]
  - apiGroups: [policy]
    resources: [poddisruptionbudgets]
    verbs: [get, list, watch, create, patch]
  - apiGroups: [networking.k8s.io]
    resources: [networkpolicies]
    verbs: [get, list, watch, create, patch]
  # pod problems for Degraded; deletion costs so scale-down takes idle workers first
  - apiGroups: [""]
    resources: [pods]
    verbs: [list, patch]
  # an OcrCluster's urlSecretRefs, and the credentials Secret it creates once for managed stores
  - apiGroups: [""]
    resources: [secrets]
    verbs: [get, create]
  - apiGroups: [""]
    resources: [events]
    verbs: [create]
{{- end }}
