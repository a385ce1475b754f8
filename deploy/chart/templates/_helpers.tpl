{{/* Names and labels shared by every object. */}}

{{- define "berth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's name, unless it already contains the chart's. */}}
{{- define "berth.fullname" -}}
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

{{- define "berth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "berth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "berth.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "berth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "berth.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "berth.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "berth.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "berth.fullname" .)) .Values.tls.secretName -}}
{{- end -}}

{{- define "berth.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Where the pod mounts what berth reads and writes. */}}
{{- define "berth.configDir" -}}/etc/berth/config{{- end -}}
{{- define "berth.tlsDir" -}}/etc/berth/tls{{- end -}}
{{- define "berth.clientCADir" -}}/etc/berth/client-ca{{- end -}}
{{- define "berth.cacheDir" -}}/var/cache/berth{{- end -}}
{{- define "berth.auditDir" -}}/var/log/berth{{- end -}}

{{/* The cert-manager Certificate that cainjector reads the CA from. */}}
{{- define "berth.certificateName" -}}
{{- printf "%s-serving" (include "berth.fullname" .) -}}
{{- end -}}

{{/*
The namespaceSelector of both webhooks: namespaces opt in by label, and
kube-system and berth's own namespace are never sent (the self-hosting
deadlock: a webhook that must admit its own pods can never start again).
*/}}
{{- define "berth.namespaceSelector" -}}
{{- with .Values.webhook.namespaceLabels -}}
matchLabels:
  {{- toYaml . | nindent 2 }}
{{ end -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- toYaml (uniq (concat (list "kube-system" .Release.Namespace) .Values.webhook.excludeNamespaces)) | nindent 6 }}
{{- end -}}

{{/*
Webhook fields both configurations share. clientConfig gets the path.
*/}}
{{- define "berth.webhookCommon" -}}
{{- $ := index . 0 -}}
{{- $path := index . 1 -}}
admissionReviewVersions: ["v1"]
clientConfig:
  service:
    name: {{ include "berth.fullname" $ }}
    namespace: {{ $.Release.Namespace }}
    path: {{ $path }}
    port: {{ $.Values.service.port }}
  {{- if and (not $.Values.certManager.enabled) $.Values.tls.caBundle }}
  caBundle: {{ $.Values.tls.caBundle | quote }}
  {{- end }}
rules:
  {{- toYaml $.Values.webhook.rules | nindent 2 }}
namespaceSelector:
  {{- include "berth.namespaceSelector" $ | nindent 2 }}
failurePolicy: {{ $.Values.webhook.failurePolicy }}
matchPolicy: Equivalent
# berth's only side effect is its audit log, where a dry run is recorded as one.
sideEffects: NoneOnDryRun
timeoutSeconds: {{ $.Values.webhook.timeoutSeconds }}
{{- end -}}

{{- define "berth.webhookAnnotations" -}}
{{- if .Values.certManager.enabled }}
cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "berth.certificateName" .) }}
{{- end }}
{{- with .Values.webhook.annotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Where plugin images put their files: /plugins/<name>/. */}}
{{- define "berth.pluginsDir" -}}/plugins{{- end -}}

{{/*
plugins.images, checked and completed: name, image, mode, pullPolicy, path,
sizeLimit, and the init container's command. A YAML list.
*/}}
{{- define "berth.pluginImages" -}}
{{- $out := list -}}
{{- $names := dict -}}
{{- range $i, $p := .Values.plugins.images -}}
{{- $where := printf "plugins.images[%d]" $i -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$" (toString $p.name)) -}}
{{- fail (printf "%s.name %q: a lowercase DNS label of at most 40 characters (it names /plugins/NAME and the volume plugin-NAME)" $where (toString $p.name)) -}}
{{- end -}}
{{- if hasKey $names $p.name -}}
{{- fail (printf "%s.name %q is used twice" $where $p.name) -}}
{{- end -}}
{{- $_ := set $names $p.name true -}}
{{- if not $p.image -}}
{{- fail (printf "%s (%s): image is required: the OCI image holding the plugin files" $where $p.name) -}}
{{- end -}}
{{- $mode := default "volume" $p.mode -}}
{{- if not (has $mode (list "volume" "initContainer")) -}}
{{- fail (printf "%s (%s): mode %q: volume (a Kubernetes image volume) or initContainer (copied by an init container)" $where $p.name $mode) -}}
{{- end -}}
{{- if and (eq $mode "volume") (semverCompare "<1.31.0-0" $.Capabilities.KubeVersion.Version) -}}
{{- fail (printf "%s (%s): mode volume needs Kubernetes 1.31+ with the ImageVolume feature (beta, on by default from 1.35); this cluster is %s: use mode initContainer" $where $p.name $.Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- $path := printf "%s/%s" (include "berth.pluginsDir" $) $p.name -}}
{{- $files := default (list "policy.wasm") $p.files -}}
{{- $command := list "/bin/busybox" "cp" -}}
{{- range $files -}}
{{- $command = append $command (printf "/%s" (trimPrefix "/" .)) -}}
{{- end -}}
{{- $command = append $command (printf "%s/" $path) -}}
{{- $out = append $out (dict "name" $p.name "image" $p.image "mode" $mode "pullPolicy" (default "IfNotPresent" $p.pullPolicy) "path" $path "sizeLimit" (default "128Mi" $p.sizeLimit) "command" (default $command $p.command)) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}
