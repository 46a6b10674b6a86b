{{- define "mhubert-platform.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mhubert
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "mhubert-platform.roleName" -}}
{{- printf "%s-training-jobs" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}


{{/* Labels of the training pods: the PodMonitor selects exactly these. */}}
{{- define "mhubert-platform.trainerPodLabels" -}}
app.kubernetes.io/part-of: mhubert
app.kubernetes.io/component: trainer
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Pod and container security of every pod this chart defines (the images run as uid 10001). */}}
{{- define "mhubert-platform.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "mhubert-platform.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}
