{{- define "db.fullname" -}}
{{- printf "%s-db" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "db.selectorLabels" -}}
app.kubernetes.io/name: db
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "db.labels" -}}
{{ include "db.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
