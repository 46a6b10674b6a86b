{{/*
The pod both kinds run (a Deployment's template, a KServe predictor): one security context, probes,
S3 credentials and API keys by reference. Call with (dict "root" $ "containerName" NAME).
*/}}
{{- define "mhubert-api.podSpec" -}}
terminationGracePeriodSeconds: {{ $.root.Values.terminationGracePeriodSeconds }}
serviceAccountName: {{ include "mhubert-api.serviceAccountName" $.root }}
automountServiceAccountToken: false
{{- with $.root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
  seccompProfile:
    type: RuntimeDefault
containers:
  - name: {{ $.containerName }}
    image: "{{ $.root.Values.image.repository }}:{{ $.root.Values.image.tag | default $.root.Chart.AppVersion }}"
    imagePullPolicy: {{ $.root.Values.image.pullPolicy }}
    ports:
      - name: http
        containerPort: {{ $.root.Values.containerPort }}
        protocol: TCP
    envFrom:
      - configMapRef:
          name: {{ include "mhubert-api.fullname" $.root }}
    env:
      - name: HOME
        value: /tmp
      - name: MPLCONFIGDIR
        value: /tmp/matplotlib
      {{- if $.root.Values.s3.existingSecret }}
      - name: AWS_ACCESS_KEY_ID
        valueFrom:
          secretKeyRef:
            name: {{ $.root.Values.s3.existingSecret }}
            key: {{ $.root.Values.s3.accessKeyIdKey }}
      - name: AWS_SECRET_ACCESS_KEY
        valueFrom:
          secretKeyRef:
            name: {{ $.root.Values.s3.existingSecret }}
            key: {{ $.root.Values.s3.secretAccessKeyKey }}
      {{- end }}
      {{- if $.root.Values.auth.existingSecret }}
      - name: MHUBERT_API_KEYS_FILE
        value: /var/run/secrets/mhubert/{{ $.root.Values.auth.apiKeysKey }}
      {{- if $.root.Values.auth.adminKeyKey }}
      - name: MHUBERT_ADMIN_KEY
        valueFrom:
          secretKeyRef:
            name: {{ $.root.Values.auth.existingSecret }}
            key: {{ $.root.Values.auth.adminKeyKey }}
      {{- end }}
      {{- end }}
    startupProbe:
      httpGet:
        path: /v2/health/live
        port: http
      periodSeconds: {{ $.root.Values.probes.startup.periodSeconds }}
      failureThreshold: {{ $.root.Values.probes.startup.failureThreshold }}
    livenessProbe:
      httpGet:
        path: /v2/health/live
        port: http
      periodSeconds: {{ $.root.Values.probes.liveness.periodSeconds }}
      failureThreshold: {{ $.root.Values.probes.liveness.failureThreshold }}
    readinessProbe:
      httpGet:
        path: /v2/health/ready
        port: http
      periodSeconds: {{ $.root.Values.probes.readiness.periodSeconds }}
      failureThreshold: {{ $.root.Values.probes.readiness.failureThreshold }}
    resources:
      {{- $res := deepCopy $.root.Values.resources }}
      {{- if $.root.Values.gpu.enabled }}
      {{- $_ := set $res "limits" (merge (dict "nvidia.com/gpu" $.root.Values.gpu.count) ($res.limits | default dict)) }}
      {{- end }}
      {{- toYaml $res | nindent 6 }}
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      runAsNonRoot: true
      capabilities:
        drop: ["ALL"]
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- if $.root.Values.auth.existingSecret }}
      - name: api-keys
        mountPath: /var/run/secrets/mhubert
        readOnly: true
      {{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ $.root.Values.tmpSizeLimit }}
  {{- if $.root.Values.auth.existingSecret }}
  - name: api-keys
    secret:
      secretName: {{ $.root.Values.auth.existingSecret }}
      items:
        - key: {{ $.root.Values.auth.apiKeysKey }}
          path: {{ $.root.Values.auth.apiKeysKey }}
  {{- end }}
{{- with $.root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.root.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
