{{/* Names and labels. */}}
{{- define "tokengate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tokengate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tokengate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tokengate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tokengate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tokengate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tokengate
{{- end -}}

{{- define "tokengate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tokengate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image: repository@digest, or repository:tag (default appVersion). Argument: (list $root $img). */}}
{{- define "tokengate.image" -}}
{{- $root := index . 0 -}}
{{- $img := mergeOverwrite (deepCopy $root.Values.image) (index . 1) -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag | toString) -}}
{{- end -}}
{{- end -}}

{{- define "tokengate.etcd" -}}
{{- eq .Values.store.backend "etcd" -}}
{{- end -}}

{{/* The public port's name and the Service port. */}}
{{- define "tokengate.publicPortName" -}}
{{- if .Values.tls.secretName }}https{{ else }}http{{ end -}}
{{- end -}}

{{- define "tokengate.servicePort" -}}
{{- if and (not .Values.tls.secretName) (eq (int .Values.service.port) 443) }}80{{ else }}{{ .Values.service.port }}{{ end -}}
{{- end -}}

{{/* issuer: config.issuer, or the public Service's in-cluster URL. */}}
{{- define "tokengate.issuer" -}}
{{- if .Values.config.issuer -}}
{{- .Values.config.issuer -}}
{{- else -}}
{{- $scheme := include "tokengate.publicPortName" . -}}
{{- $port := include "tokengate.servicePort" . -}}
{{- $host := printf "%s.%s.svc" (include "tokengate.fullname" .) .Release.Namespace -}}
{{- if or (and (eq $scheme "https") (eq $port "443")) (and (eq $scheme "http") (eq $port "80")) -}}
{{- printf "%s://%s" $scheme $host -}}
{{- else -}}
{{- printf "%s://%s:%s" $scheme $host $port -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The configuration file: .Values.config plus the keys the chart owns. Fails on a key the chart
owns and on any secret written into config: a ConfigMap is not a place for secrets.
*/}}
{{- define "tokengate.config" -}}
{{- $c := deepCopy (.Values.config | default dict) -}}
{{- range $k := list "listen" "admin_listen" "data_dir" "tls" "store" -}}
{{- if hasKey $c $k -}}
{{- fail (printf "config.%s is set by the chart (see values.yaml: tls, store, …); remove it from config" $k) -}}
{{- end -}}
{{- end -}}
{{- $up := $c.upstream | default dict -}}
{{- if hasKey $up "client_secret" -}}
{{- fail "config.upstream.client_secret: secrets never go into the ConfigMap; name a Secret in secrets.upstreamClientSecret" -}}
{{- end -}}
{{- $sig := $up.shared_signals | default dict -}}
{{- if or (hasKey $sig "client_secret") (hasKey $sig "client_secret_file") -}}
{{- fail "config.upstream.shared_signals.client_secret: secrets never go into the ConfigMap; name a Secret in secrets.signalsClientSecret" -}}
{{- end -}}
{{- $keys := $c.keys | default dict -}}
{{- if hasKey $keys "kek_file" -}}
{{- fail "config.keys.kek_file is set by the chart; name the KEK's Secret in secrets.kek" -}}
{{- end -}}
{{- if hasKey ($c.admin | default dict) "tls" -}}
{{- fail "config.admin.tls is not supported by this chart: the kubelet's probes cannot present a client certificate; the NetworkPolicy keeps the admin port to Prometheus, operators use kubectl port-forward" -}}
{{- end -}}
{{- $_ := set $c "listen" "0.0.0.0:8443" -}}
{{- $_ := set $c "admin_listen" "0.0.0.0:9090" -}}
{{- $_ := set $c "data_dir" "/var/lib/tokengate" -}}
{{- $_ := set $c "issuer" (include "tokengate.issuer" .) -}}
{{- if .Values.tls.secretName -}}
{{- $_ := set $c "tls" (dict "cert_file" "/etc/tokengate/tls/tls.crt" "key_file" "/etc/tokengate/tls/tls.key") -}}
{{- end -}}
{{- if .Values.secrets.kek.name -}}
{{- $_ := set $keys "kek_file" "/etc/tokengate/kek/kek" -}}
{{- $_ := set $c "keys" $keys -}}
{{- end -}}
{{- if eq .Values.store.backend "bolt" -}}
{{- $_ := set $c "store" (dict "backend" "bolt") -}}
{{- else if eq .Values.store.backend "etcd" -}}
{{- $e := .Values.store.etcd -}}
{{- if not $e.endpoints -}}
{{- fail "store.etcd.endpoints: at least one etcd client URL is required with store.backend etcd" -}}
{{- end -}}
{{- $etcd := dict "endpoints" $e.endpoints "prefix" $e.prefix "dial_timeout" $e.dialTimeout "election_ttl" $e.electionTTL -}}
{{- if $e.tls.secretName -}}
{{- $_ := set $etcd "ca_file" "/etc/tokengate/etcd/ca.crt" -}}
{{- if $e.tls.clientCert -}}
{{- $_ := set $etcd "cert_file" "/etc/tokengate/etcd/tls.crt" -}}
{{- $_ := set $etcd "key_file" "/etc/tokengate/etcd/tls.key" -}}
{{- end -}}
{{- end -}}
{{- if $e.username -}}
{{- $_ := set $etcd "username" $e.username -}}
{{- end -}}
{{- $_ := set $c "store" (dict "backend" "etcd" "max_staleness" .Values.store.maxStaleness "etcd" $etcd) -}}
{{- else -}}
{{- fail (printf "store.backend %q is not one of bolt, etcd" .Values.store.backend) -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{/* Checks that span several values, run by every template that renders a pod. */}}
{{- define "tokengate.validate" -}}
{{- if and (eq .Values.store.backend "bolt") (gt (int .Values.replicas) 1) -}}
{{- fail "replicas > 1 needs store.backend etcd: bbolt allows one process per file" -}}
{{- end -}}
{{- if not .Values.secrets.upstreamClientSecret.name -}}
{{- fail "secrets.upstreamClientSecret.name is required: the Secret holding upstream.client_secret" -}}
{{- end -}}
{{- $sig := dig "upstream" "shared_signals" "enabled" false (.Values.config | default dict) -}}
{{- if and $sig (not .Values.secrets.signalsClientSecret.name) -}}
{{- fail "secrets.signalsClientSecret.name is required when config.upstream.shared_signals.enabled" -}}
{{- end -}}
{{- if and .Values.store.etcd.username (not .Values.secrets.etcdPassword.name) -}}
{{- fail "secrets.etcdPassword.name is required with store.etcd.username" -}}
{{- end -}}
{{- if and .Values.networkPolicy.enabled .Values.networkPolicy.egress.enabled -}}
{{- if not .Values.networkPolicy.egress.keycloak.to -}}
{{- fail "networkPolicy.egress.keycloak.to is required when networkPolicy.egress.enabled (tokengate calls Keycloak)" -}}
{{- end -}}
{{- if and (eq .Values.store.backend "etcd") (not .Values.networkPolicy.egress.etcd.to) -}}
{{- fail "networkPolicy.egress.etcd.to is required when networkPolicy.egress.enabled and store.backend is etcd" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The admin Service exists only when asked for (or for a ServiceMonitor). */}}
{{- define "tokengate.adminService" -}}
{{- if or .Values.adminService.enabled .Values.serviceMonitor.enabled }}true{{ end -}}
{{- end -}}

{{- define "tokengate.envSecret" -}}
{{- $name := index . 0 -}}{{- $ref := index . 1 -}}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.name }}
      key: {{ $ref.key }}
{{- end -}}

{{/* The pod template, shared by the StatefulSet (bolt) and the Deployment (etcd). */}}
{{- define "tokengate.podTemplate" -}}
metadata:
  labels:
    {{- include "tokengate.selectorLabels" . | nindent 4 }}
    app.kubernetes.io/component: gateway
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "tokengate.config" . | sha256sum }}
    {{- if .Values.podMonitoringAnnotations }}
    prometheus.io/scrape: "true"
    prometheus.io/port: "9090"
    prometheus.io/path: /metrics
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "tokengate.serviceAccountName" . }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml .Values.topologySpreadConstraints | nindent 4 }}
  {{- else if and (eq .Values.store.backend "etcd") (gt (int .Values.replicas) 1) }}
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "tokengate.selectorLabels" . | nindent 10 }}
  {{- end }}
  containers:
    - name: tokengate
      image: {{ include "tokengate.image" (list . dict) }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: [serve, --config, /etc/tokengate/config/tokengate.yaml]
      ports:
        - name: {{ include "tokengate.publicPortName" . }}
          containerPort: 8443
          protocol: TCP
        - name: admin
          containerPort: 9090
          protocol: TCP
      env:
        {{- include "tokengate.envSecret" (list "TOKENGATE_UPSTREAM_CLIENT_SECRET" .Values.secrets.upstreamClientSecret) | nindent 8 }}
        {{- if dig "upstream" "shared_signals" "enabled" false (.Values.config | default dict) }}
        {{- include "tokengate.envSecret" (list "TOKENGATE_SIGNALS_CLIENT_SECRET" .Values.secrets.signalsClientSecret) | nindent 8 }}
        {{- end }}
        {{- if and (eq .Values.store.backend "etcd") .Values.store.etcd.username }}
        {{- include "tokengate.envSecret" (list "TOKENGATE_ETCD_PASSWORD" .Values.secrets.etcdPassword) | nindent 8 }}
        {{- end }}
        - name: GOMEMLIMIT
          valueFrom:
            resourceFieldRef:
              resource: limits.memory
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      startupProbe:
        httpGet:
          path: /healthz
          port: admin
        {{- toYaml .Values.probes.startup | nindent 8 }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: admin
        {{- toYaml .Values.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: admin
        {{- toYaml .Values.probes.readiness | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        - name: data
          mountPath: /var/lib/tokengate
        - name: config
          mountPath: /etc/tokengate/config
          readOnly: true
        {{- if .Values.tls.secretName }}
        - name: tls
          mountPath: /etc/tokengate/tls
          readOnly: true
        {{- end }}
        {{- if .Values.secrets.kek.name }}
        - name: kek
          mountPath: /etc/tokengate/kek
          readOnly: true
        {{- end }}
        {{- if and (eq .Values.store.backend "etcd") .Values.store.etcd.tls.secretName }}
        - name: etcd-tls
          mountPath: /etc/tokengate/etcd
          readOnly: true
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "tokengate.fullname" . }}-config
    {{- if .Values.tls.secretName }}
    - name: tls
      secret:
        secretName: {{ .Values.tls.secretName }}
        defaultMode: 0400
    {{- end }}
    {{- if .Values.secrets.kek.name }}
    - name: kek
      secret:
        secretName: {{ .Values.secrets.kek.name }}
        defaultMode: 0400
        items:
          - key: {{ .Values.secrets.kek.key }}
            path: kek
    {{- end }}
    {{- if eq .Values.store.backend "etcd" }}
    - name: data
      emptyDir:
        sizeLimit: 64Mi
    {{- if .Values.store.etcd.tls.secretName }}
    - name: etcd-tls
      secret:
        secretName: {{ .Values.store.etcd.tls.secretName }}
        defaultMode: 0400
        items:
          - key: {{ .Values.store.etcd.tls.caKey }}
            path: ca.crt
          {{- if .Values.store.etcd.tls.clientCert }}
          - key: {{ .Values.store.etcd.tls.certKey }}
            path: tls.crt
          - key: {{ .Values.store.etcd.tls.keyKey }}
            path: tls.key
          {{- end }}
    {{- end }}
    {{- end }}
{{- end -}}
