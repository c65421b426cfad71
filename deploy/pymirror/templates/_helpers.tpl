{{/* Names and labels shared by every template. */}}
{{- define "pymirror.labels" -}}
app.kubernetes.io/name: pymirror
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "pymirror.selector" -}}
app.kubernetes.io/name: pymirror
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "pymirror.fullname" -}}
{{- if eq .Release.Name "pymirror" -}}pymirror-operator{{- else -}}{{ printf "%s-pymirror-operator" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "pymirror.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "pymirror.workerImage" -}}
{{ .Values.worker.image | default (include "pymirror.image" .) }}
{{- end -}}

{{/* The workers' environment: the AWS region/endpoint, the drain timeout, then worker.env. */}}
{{- define "pymirror.workerEnv" -}}
{{- $env := dict "AWS_REGION" .Values.aws.region "PYMIRROR_SQS__REGION" .Values.aws.region "PYMIRROR_LOG__FORMAT" "json" -}}
{{- if .Values.aws.sqsEndpointUrl -}}
{{- $_ := set $env "PYMIRROR_SQS__ENDPOINT_URL" .Values.aws.sqsEndpointUrl -}}
{{- end -}}
{{- if not (kindIs "invalid" .Values.operator.drainTimeout) -}}
{{- $_ := set $env "PYMIRROR_SQS__DRAIN_TIMEOUT" (toString .Values.operator.drainTimeout) -}}
{{- $_ := set $env "PYMIRROR_KAFKA__DRAIN_TIMEOUT" (toString .Values.operator.drainTimeout) -}}
{{- end -}}
{{- range $name, $value := .Values.worker.env -}}
{{- $_ := set $env $name (toString $value) -}}
{{- end -}}
{{- toJson $env -}}
{{- end -}}
