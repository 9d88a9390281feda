{{- define "tandem-verifier.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tandem-verifier.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tandem-verifier.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "tandem-verifier.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tandem-verifier.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tandem-verifier.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tandem-verifier.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tandem-verifier.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tandem-verifier.authSecret" -}}
{{- if .Values.auth.existingSecret }}{{ .Values.auth.existingSecret }}{{ else }}{{ include "tandem-verifier.fullname" . }}-tokens{{ end }}
{{- end }}

{{/* "true" when edges need tokens (an empty list printed "[]", which is not empty) */}}
{{- define "tandem-verifier.auth" -}}
{{- if or .Values.auth.existingSecret .Values.auth.tokens }}true{{ end }}
{{- end }}

{{- define "tandem-verifier.scheme" -}}
{{- if .Values.tls.enabled }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/*
Layouts. vllm.nodes 1: one pod per replica (a Deployment), every GPU of the model in it.
vllm.nodes N > 1 (vLLM's multiprocessing executor across nodes): one group of N pods, a leader
StatefulSet (node_rank 0, serves the API) and a worker StatefulSet (node_ranks 1..N-1, headless
vLLM workers), found through a headless Service.
*/}}
{{- define "tandem-verifier.vllm" -}}
{{- if eq (.Values.settings.backend | default "torch") "vllm" }}true{{ end }}
{{- end }}

{{- define "tandem-verifier.multiNode" -}}
{{- if gt (int .Values.vllm.nodes) 1 }}true{{ end }}
{{- end }}

{{/* the role of the pods that serve the API: single (the Deployment's) or leader */}}
{{- define "tandem-verifier.servingRole" -}}
{{- if include "tandem-verifier.multiNode" . }}leader{{ else }}single{{ end }}
{{- end }}

{{- define "tandem-verifier.headlessName" -}}
{{- printf "%s-nodes" (include "tandem-verifier.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}

{{- define "tandem-verifier.workerName" -}}
{{- printf "%s-worker" (include "tandem-verifier.fullname" . | trunc 45 | trimSuffix "-") }}
{{- end }}

{{/* the leader pod's DNS name (the leader StatefulSet's pod 0 through the headless Service): vLLM's master_addr */}}
{{- define "tandem-verifier.leaderAddress" -}}
{{- printf "%s-0.%s.%s.svc.%s" (include "tandem-verifier.fullname" .) (include "tandem-verifier.headlessName" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/* vLLM's world size: tensor x pipeline parallel (data parallel is outside it, as in the verifier) */}}
{{- define "tandem-verifier.worldSize" -}}
{{- $args := .Values.vllm.engineArgs | default dict }}
{{- mul (int ($args.tensor_parallel_size | default 1)) (int ($args.pipeline_parallel_size | default 1)) }}
{{- end }}

{{/* GPUs in one pod: world size / nodes, or gpu.count where given (never fewer) */}}
{{- define "tandem-verifier.gpusPerPod" -}}
{{- $perPod := div (int (include "tandem-verifier.worldSize" .)) (int .Values.vllm.nodes) }}
{{- if not .Values.gpu.count }}{{ $perPod }}
{{- else if lt (int .Values.gpu.count) $perPod }}
{{- fail (printf "gpu.count %d is fewer than the %d GPUs each pod runs (tensor_parallel_size x pipeline_parallel_size / vllm.nodes): leave gpu.count out to derive it" (int .Values.gpu.count) $perPod) }}
{{- else }}{{ int .Values.gpu.count }}
{{- end }}
{{- end }}

{{/*
What the chart refuses before Kubernetes or vLLM would. An engine argument that is also a Tandem
setting is refused where the setting is given too, even with the same value: the verifier
compares max_model_len with max_context plus the live route's margin, which the chart does not
repeat.
*/}}
{{- define "tandem-verifier.checkLayout" -}}
{{- $nodes := int .Values.vllm.nodes }}
{{- $engineArgs := .Values.vllm.engineArgs | default dict }}
{{- if and (not (include "tandem-verifier.vllm" .)) (or $engineArgs (gt $nodes 1)) }}
{{- fail "vllm.engineArgs and vllm.nodes are vLLM's: set settings.backend: vllm" }}
{{- end }}
{{- $world := int (include "tandem-verifier.worldSize" .) }}
{{- if mod $world $nodes }}
{{- fail (printf "vllm.nodes %d does not divide the world size %d (tensor_parallel_size x pipeline_parallel_size): every node runs world size / nodes GPUs" $nodes $world) }}
{{- end }}
{{- if and (gt $nodes 1) (gt (int .Values.replicaCount) 1) }}
{{- fail "replicaCount > 1 with vllm.nodes > 1 is not supported: install one release per group of nodes" }}
{{- end }}
{{- if and (gt $nodes 1) .Values.autoscaling.enabled }}
{{- fail "autoscaling with vllm.nodes > 1 is not supported: the layout is one group of nodes, not a Deployment" }}
{{- end }}
{{- range $arg, $setting := dict "dtype" "dtype" "max_model_len" "max_context" "block_size" "vllm_block_size" "enforce_eager" "vllm_enforce_eager" "gpu_memory_utilization" "vllm_gpu_memory_utilization" "max_num_seqs" "vllm_max_num_seqs" }}
{{- $given := index $.Values.settings $setting }}
{{- if and (hasKey $engineArgs $arg) (not (kindIs "invalid" $given)) }}
{{- fail (printf "vllm.engineArgs.%s and settings.%s (%v) are one argument: give one of them (settings.%s: null drops the chart's default)" $arg $setting $given $setting) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
TANDEM_VERIFIER_VLLM_ENGINE_ARGS for a pod of `role` (single, leader, worker): vllm.engineArgs,
plus nnodes, node_rank and master_addr in a group; "" when there is nothing to pass. A worker's
node_rank is $(POD_INDEX), which Kubernetes expands from the env var declared before it.
*/}}
{{- define "tandem-verifier.engineArgs" -}}
{{- $root := .root }}
{{- $args := deepCopy ($root.Values.vllm.engineArgs | default dict) }}
{{- if include "tandem-verifier.multiNode" $root }}
{{- $_ := set $args "nnodes" (int $root.Values.vllm.nodes) }}
{{- $_ := set $args "master_addr" (include "tandem-verifier.leaderAddress" $root) }}
{{- if eq .role "leader" }}{{ $_ := set $args "node_rank" 0 }}{{ end }}
{{- end }}
{{- if and (include "tandem-verifier.vllm" $root) $args }}
{{- if eq .role "worker" }}
{{- printf "%s,\"node_rank\":$(POD_INDEX)}" (toJson $args | trimSuffix "}") }}
{{- else }}
{{- toJson $args }}
{{- end }}
{{- end }}
{{- end }}

{{/* the pods of one layout: a role's selector labels */}}
{{- define "tandem-verifier.roleSelectorLabels" -}}
{{ include "tandem-verifier.selectorLabels" .root }}
{{- if ne .role "single" }}
app.kubernetes.io/component: {{ .role }}
{{- end }}
{{- end }}
