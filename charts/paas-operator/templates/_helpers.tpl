{{- define "paas-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "paas-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 56 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The ClusterRole the operator binds in every tenant namespace. */}}
{{- define "paas-operator.tenantRole" -}}
{{- printf "%s-tenant" (include "paas-operator.fullname" .) }}
{{- end }}

{{/* The ClusterRole helm's identity (tenant.serviceAccountName) gets in every
     tenant namespace; also the prefix of the tenant admission policies.
     paas-tenant for the release name paas-operator (as in k8s/), else
     <fullname>-paas-tenant, so that two releases do not collide. */}}
{{- define "paas-operator.tenantHelmRole" -}}
{{- $full := include "paas-operator.fullname" . }}
{{- if .Values.tenant.clusterRole }}
{{- .Values.tenant.clusterRole }}
{{- else if eq $full "paas-operator" }}
{{- "paas-tenant" }}
{{- else }}
{{- printf "%s-paas-tenant" $full }}
{{- end }}
{{- end }}

{{- define "paas-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "paas-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "paas-operator.secretName" -}}
{{- default (printf "%s-api-keys" (include "paas-operator.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "paas-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "paas-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "paas-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "paas-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: paas-operator
{{- end }}

{{/* Fails the render when the shutdown timing chain is broken. */}}
{{- define "paas-operator.checkTimings" -}}
{{- $c := .Values.config }}
{{- if le (int $c.shutdownGrace) (add (int $c.helmTimeout) (int $c.helmDeadlineMargin) (int $c.helmKillGrace) | int) }}
{{- fail "config.shutdownGrace must exceed config.helmTimeout + config.helmDeadlineMargin + config.helmKillGrace" }}
{{- end }}
{{- if le (int .Values.terminationGracePeriodSeconds) (add (int $c.shutdownGrace) (int $c.helmKillGrace) 9 | int) }}
{{- fail "terminationGracePeriodSeconds must exceed config.shutdownGrace + config.helmKillGrace + 9 (after the grace helm is stopped, its release repaired and its Lease given back)" }}
{{- end }}
{{- if le (mul 2 (int $c.leaseTtl)) (mul 3 (add (int $c.helmKillGrace) 1) | int) }}
{{- fail "config.leaseTtl must exceed 1.5 x (config.helmKillGrace + 1): a Lease is renewed at least once before its holder must stop helm" }}
{{- end }}
{{- end }}
