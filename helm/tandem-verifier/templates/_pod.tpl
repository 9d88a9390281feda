{{/*
The verifier's pod template, for a `role`: single (the Deployment's pods, vllm.nodes 1), leader
(node_rank 0 of a group: serves the API) or worker (node_rank >= 1: runs vLLM's workers of its
node, serves nothing, so it has no port and no probe). Called with (dict "root" $ "role" ROLE).
*/}}
{{- define "tandem-verifier.podTemplate" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $role := .role }}
{{- $serves := ne $role "worker" }}
{{- include "tandem-verifier.checkLayout" $root -}}
metadata:
  labels:
    {{- include "tandem-verifier.roleSelectorLabels" . | nindent 4 }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- if and $serves $v.auth.tokens }}
    checksum/tokens: {{ $v.auth.tokens | toJson | sha256sum }}
    {{- end }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "tandem-verifier.serviceAccountName" $root }}
  automountServiceAccountToken: false
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  {{- if $v.model.initImage.repository }}
  initContainers:
    - name: copy-model
      image: "{{ $v.model.initImage.repository }}:{{ $v.model.initImage.tag | default "latest" }}"
      imagePullPolicy: {{ $v.image.pullPolicy }}
      command: ["cp", "-r", "{{ $v.model.initImage.source }}/.", "{{ $v.model.path }}"]
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      resources:
        requests:
          cpu: 100m
          memory: 128Mi
        limits:
          memory: 512Mi
      volumeMounts:
        - name: model
          mountPath: {{ $v.model.path }}
  {{- end }}
  containers:
    - name: verifier
      image: "{{ $v.image.repository }}:{{ $v.image.tag | default $root.Chart.AppVersion }}"
      imagePullPolicy: {{ $v.image.pullPolicy }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      env:
        {{- if eq $role "worker" }}
        - name: POD_INDEX  # the pod's ordinal (1, 2, ...): its node_rank in the engine arguments below
          valueFrom:
            fieldRef:
              fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
        {{- end }}
        - name: TANDEM_VERIFIER_HOST
          value: "0.0.0.0"
        - name: TANDEM_VERIFIER_PORT
          value: {{ $v.service.port | quote }}
        - name: TANDEM_VERIFIER_MODEL
          value: {{ $v.model.path | quote }}
        {{- range $name, $value := $v.settings }}
        - name: TANDEM_VERIFIER_{{ $name | upper }}
          value: {{ $value | toString | quote }}
        {{- end }}
        {{- with include "tandem-verifier.engineArgs" . }}
        - name: TANDEM_VERIFIER_VLLM_ENGINE_ARGS
          value: {{ . | toJson }}
        {{- end }}
        {{- if eq $role "worker" }}
        - name: TANDEM_VERIFIER_VLLM_HEADLESS
          value: "true"
        {{- end }}
        {{- if and $serves (include "tandem-verifier.auth" $root) }}
        - name: TANDEM_VERIFIER_AUTH_TOKENS_FILE
          value: /etc/tandem/auth/tokens
        {{- end }}
        {{- if and $serves $v.tls.enabled }}
        - name: TANDEM_VERIFIER_SSL_CERTFILE
          value: /etc/tandem/tls/tls.crt
        - name: TANDEM_VERIFIER_SSL_KEYFILE
          value: /etc/tandem/tls/tls.key
        {{- end }}
        - name: HOME
          value: /tmp
        {{- with $v.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- if $serves }}
      ports:
        - name: verify
          containerPort: {{ $v.service.port }}
          protocol: TCP
      {{- range $probe := list "startup" "readiness" "liveness" }}
      {{ $probe }}Probe:
        httpGet:
          path: /health
          port: verify
          scheme: {{ include "tandem-verifier.scheme" $root }}
        periodSeconds: {{ (index $v.probes $probe).periodSeconds }}
        failureThreshold: {{ (index $v.probes $probe).failureThreshold }}
      {{- end }}
      {{- end }}
      resources:
        {{- $resources := deepCopy $v.resources }}
        {{- if $v.gpu.enabled }}
        {{- $limits := default dict $resources.limits }}
        {{- $_ := set $limits $v.gpu.resourceName (int (include "tandem-verifier.gpusPerPod" $root)) }}
        {{- $_ := set $resources "limits" $limits }}
        {{- end }}
        {{- toYaml $resources | nindent 8 }}
      volumeMounts:
        - name: model
          mountPath: {{ $v.model.path }}
          readOnly: {{ not $v.model.initImage.repository }}
          {{- if and $v.model.pvc.claimName $v.model.pvc.subPath }}
          subPath: {{ $v.model.pvc.subPath }}
          {{- end }}
        - name: tmp
          mountPath: /tmp
        {{- if include "tandem-verifier.vllm" $root }}
        - name: shm
          mountPath: /dev/shm
        {{- end }}
        {{- if and $serves (include "tandem-verifier.auth" $root) }}
        - name: auth
          mountPath: /etc/tandem/auth
          readOnly: true
        {{- end }}
        {{- if and $serves $v.tls.enabled }}
        - name: tls
          mountPath: /etc/tandem/tls
          readOnly: true
        {{- end }}
  volumes:
    - name: model
      {{- if $v.model.pvc.claimName }}
      persistentVolumeClaim:
        claimName: {{ $v.model.pvc.claimName }}
        readOnly: true
      {{- else }}
      emptyDir:
        sizeLimit: {{ $v.model.sizeLimit }}
      {{- end }}
    - name: tmp
      emptyDir: {}
    {{- if include "tandem-verifier.vllm" $root }}
    - name: shm  # NCCL and vLLM's workers talk through shared memory; it counts against the memory limit
      emptyDir:
        medium: Memory
        sizeLimit: {{ $v.vllm.shm.sizeLimit }}
    {{- end }}
    {{- if and $serves (include "tandem-verifier.auth" $root) }}
    - name: auth
      secret:
        secretName: {{ include "tandem-verifier.authSecret" $root }}
    {{- end }}
    {{- if and $serves $v.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ $v.tls.secretName }}
    {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with include "tandem-verifier.placement" . }}
  {{- . | trim | nindent 2 }}
  {{- end }}
{{- end }}

{{/*
Where the pods go. The one-pod layout spreads its replicas across hosts
(topologySpreadConstraints; one without a labelSelector gets the release's pods). A group
prefers one topology domain for all its pods (vllm.groupTopologyKey), unless `affinity` has a
podAffinity of its own.
*/}}
{{- define "tandem-verifier.placement" -}}
{{- $v := .root.Values }}
{{- $affinity := deepCopy ($v.affinity | default dict) }}
{{- if and (ne .role "single") $v.vllm.groupTopologyKey (not (hasKey $affinity "podAffinity")) }}
{{- $term := dict "topologyKey" $v.vllm.groupTopologyKey "labelSelector" (dict "matchLabels" (include "tandem-verifier.selectorLabels" .root | fromYaml)) }}
{{- $_ := set $affinity "podAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) }}
{{- end }}
{{- with $affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if eq .role "single" }}
{{- $constraints := list }}
{{- range $v.topologySpreadConstraints }}
{{- $constraint := deepCopy . }}
{{- if not (hasKey $constraint "labelSelector") }}
{{- $_ := set $constraint "labelSelector" (dict "matchLabels" (include "tandem-verifier.selectorLabels" $.root | fromYaml)) }}
{{- end }}
{{- $constraints = append $constraints $constraint }}
{{- end }}
{{- with $constraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end }}
