{{/* Labels every object of the chart carries. */}}
{{- define "flotilla.labels" -}}
app.kubernetes.io/name: flotilla
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flotilla
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* What the operator's Services and PodDisruptionBudget select. */}}
{{- define "flotilla.operatorSelector" -}}
app.kubernetes.io/name: flotilla
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "flotilla.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The Secret holding the allocation API's certificate. */}}
{{- define "flotilla.allocationTlsSecret" -}}
{{ .Values.allocation.tls.existingSecret | default "flotilla-allocation-tls" }}
{{- end }}

{{/* What the player service's Services and PodDisruptionBudget select. */}}
{{- define "flotilla.playerSelector" -}}
app.kubernetes.io/name: flotilla
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: player
{{- end }}

{{- define "flotilla.playerImage" -}}
{{ .Values.player.image.repository }}:{{ .Values.player.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The Secret holding the player service's token signing key and service key. */}}
{{- define "flotilla.playerSecret" -}}
{{ .Values.player.existingSecret | default "flotilla-player" }}
{{- end }}

{{/* What the economy service's Services and PodDisruptionBudget select. */}}
{{- define "flotilla.economySelector" -}}
app.kubernetes.io/name: flotilla
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: economy
{{- end }}

{{- define "flotilla.economyImage" -}}
{{ .Values.economy.image.repository }}:{{ .Values.economy.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* What the analytics service's Services select. */}}
{{- define "flotilla.analyticsSelector" -}}
app.kubernetes.io/name: flotilla
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: analytics
{{- end }}

{{- define "flotilla.analyticsImage" -}}
{{ .Values.analytics.image.repository }}:{{ .Values.analytics.image.tag | default .Chart.AppVersion }}
{{- end }}
