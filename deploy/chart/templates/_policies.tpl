{{/*
The policies of berth.yaml: deploy/policies/<app>.yaml (files/policies is a
link to it, so the chart always carries the policies berth embeds), with the
values of .Values.policies put in by plugin:

  every policy              failurePolicy
  builtin:tolerations       settings.tolerations      <- <app>.taint
  builtin:require-placement settings.tolerations      <- <app>.taint
                            settings.nodeSelector     <- <app>.nodeLabel
  builtin:node-placement    settings.nodeSelector     <- <app>.nodeLabel
  builtin:pull-secrets      settings.secrets          <- pullSecret
  builtin:registry-rewrite  settings.rules[].to       <- registry/registryProject
  builtin:allowed-registries settings.registries      <- registry
  builtin:storage-class     settings.storageClassName <- <app>.storageClassName

Everything else (names, match, other settings) is the file's. With the
default values the result equals the file (tests/suites/deploy.rs checks it).
*/}}
{{- define "berth.appPolicies" -}}
{{- $root := index . 0 -}}
{{- $app := index . 1 -}}
{{- $p := $root.Values.policies -}}
{{- $v := index $p $app -}}
{{- $file := printf "files/policies/%s.yaml" $app -}}
{{- $text := $root.Files.Get $file -}}
{{- if not $text -}}
{{- fail (printf "%s is missing from the chart (a link to deploy/policies)" $file) -}}
{{- end -}}
{{- $policies := (fromYaml $text).policies -}}
{{- $toleration := dict "key" $v.taint.key "operator" "Equal" "value" $v.taint.value "effect" $v.taint.effect -}}
{{- $nodeSelector := dict $v.nodeLabel.key $v.nodeLabel.value -}}
{{- range $policies -}}
{{- $_ := set . "failurePolicy" $p.failurePolicy -}}
{{- $s := default dict .settings -}}
{{- if and (has .plugin (list "builtin:tolerations" "builtin:require-placement")) (hasKey $s "tolerations") -}}
{{- $_ := set $s "tolerations" (list $toleration) -}}
{{- end -}}
{{- if and (has .plugin (list "builtin:node-placement" "builtin:require-placement")) (hasKey $s "nodeSelector") -}}
{{- $_ := set $s "nodeSelector" $nodeSelector -}}
{{- end -}}
{{- if and (eq .plugin "builtin:pull-secrets") (hasKey $s "secrets") -}}
{{- $_ := set $s "secrets" (list $p.pullSecret) -}}
{{- end -}}
{{- if and (eq .plugin "builtin:registry-rewrite") (hasKey $s "rules") -}}
{{- range $s.rules -}}
{{- $_ := set . "to" (printf "%s/%s" $p.registry $p.registryProject) -}}
{{- end -}}
{{- end -}}
{{- if and (eq .plugin "builtin:allowed-registries") (hasKey $s "registries") -}}
{{- $_ := set $s "registries" (list $p.registry) -}}
{{- end -}}
{{- if and (eq .plugin "builtin:storage-class") (hasKey $s "storageClassName") -}}
{{- $_ := set $s "storageClassName" $v.storageClassName -}}
{{- end -}}
{{- end -}}
{{- toYaml $policies -}}
{{- end -}}

{{/* Every policy, in order: Pulsar's, Kafka's, then policies.extra. */}}
{{- define "berth.policies" -}}
{{- $all := list -}}
{{- range $app := list "pulsar" "kafka" -}}
{{- if (index $.Values.policies $app).enabled -}}
{{- $all = concat $all (fromYamlArray (include "berth.appPolicies" (list $ $app))) -}}
{{- end -}}
{{- end -}}
{{- $all = concat $all $.Values.policies.extra -}}
{{- range $all }}
{{- include "berth.checkNamespaceAccess" (list $ .) }}
{{- if and (hasPrefix (printf "%s/" (include "berth.pluginsDir" $)) (toString .plugin)) (not .sha256) }}
{{- fail (printf "policy %s: plugin %s comes from a plugin image and has no sha256 pin: add the sha256 that berth plugin build printed" .name .plugin) }}
{{- end }}
{{- $policy := . }}
{{- $first := true }}
{{- /* docs/CONFIG.md's order, for people reading the ConfigMap; any other field after. */}}
{{- $order := list "name" "app" "plugin" "sha256" "mode" "failurePolicy" "timeout" "memoryLimit" "match" "settings" }}
{{- $keys := list }}
{{- range $order }}{{ if hasKey $policy . }}{{ $keys = append $keys . }}{{ end }}{{ end }}
{{- range keys $policy | sortAlpha }}{{ if not (has . $order) }}{{ $keys = append $keys . }}{{ end }}{{ end }}
{{- range $key := $keys }}
{{ if $first }}- {{ else }}  {{ end }}{{ toYaml (dict $key (index $policy $key)) | trim | indent 2 | trimPrefix "  " }}
{{- $first = false }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
A namespaceSelector on any label but kubernetes.io/metadata.name makes berth
list and watch Namespaces: refuse to render without that permission rather
than install a berth that refuses its configuration.
*/}}
{{- define "berth.checkNamespaceAccess" -}}
{{- $root := index . 0 -}}
{{- $policy := index . 1 -}}
{{- $selector := default dict (default dict $policy.match).namespaceSelector -}}
{{- $keys := keys (default dict $selector.matchLabels) -}}
{{- range (default list $selector.matchExpressions) -}}
{{- $keys = append $keys .key -}}
{{- end -}}
{{- range $keys -}}
{{- if and (ne . "kubernetes.io/metadata.name") (not $root.Values.rbac.namespaces) -}}
{{- fail (printf "policy %s selects namespaces by the label %s: berth must then list and watch Namespaces; set rbac.namespaces=true" $policy.name .) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
berth.yaml's helmReleases, by app, from policies.<app>.helmReleases: berth
folds each list into the match of that app's policies when it loads them,
so the policy files stay as they are. A release under both apps, or a list
for an app that is not enabled, is refused here, naming it.
*/}}
{{- define "berth.helmReleases" -}}
{{- $seen := dict -}}
{{- $out := dict -}}
{{- range $app := list "pulsar" "kafka" -}}
{{- $v := index $.Values.policies $app -}}
{{- $releases := default list $v.helmReleases -}}
{{- if and $releases (not $v.enabled) -}}
{{- fail (printf "policies.%s.helmReleases lists %s, but policies.%s.enabled is false: nothing would match them" $app (join ", " $releases) $app) -}}
{{- end -}}
{{- range $releases -}}
{{- if not (regexMatch "^[^/]+/[^/]+$" .) -}}
{{- fail (printf "policies.%s.helmReleases: %q is not NAMESPACE/NAME" $app .) -}}
{{- end -}}
{{- if and (hasKey $seen .) (eq (index $seen .) $app) -}}
{{- fail (printf "helm release %s is listed twice under policies.%s.helmReleases" . $app) -}}
{{- else if hasKey $seen . -}}
{{- fail (printf "helm release %s is listed under policies.%s.helmReleases and policies.%s.helmReleases: one release is one application's; keep it under one" . (index $seen .) $app) -}}
{{- end -}}
{{- $_ := set $seen . $app -}}
{{- end -}}
{{- if $releases -}}
{{- $_ := set $out $app $releases -}}
{{- end -}}
{{- end -}}
{{- with $out -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}
