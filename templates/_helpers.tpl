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
