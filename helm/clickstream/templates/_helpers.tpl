{{/*
Names and labels. Every resource name starts with clickstream.fullname; every resource
carries clickstream.labels plus app.kubernetes.io/component.
*/}}

{{/* Chart name, overridable. */}}
{{- define "clickstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name: <release>-<chart> unless the release name contains the chart name. */}}
{{- define "clickstream.fullname" -}}
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

{{/* Name of one component's resources: <fullname>-<component>, at most 63 characters. */}}
{{- define "clickstream.componentName" -}}
{{- $full := include "clickstream.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-" }}
{{- printf "%s-%s" $full .component }}
{{- end }}

{{/* chart label value */}}
{{- define "clickstream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of the whole release. */}}
{{- define "clickstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "clickstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "clickstream.labels" -}}
helm.sh/chart: {{ include "clickstream.chart" . }}
{{ include "clickstream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: clickstream
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "ingest-api") */}}
{{- define "clickstream.componentSelectorLabels" -}}
{{ include "clickstream.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels of one component's resources: (dict "root" $ "component" "ingest-api") */}}
{{- define "clickstream.componentLabels" -}}
{{ include "clickstream.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Image reference: (dict "root" $ "image" .Values.x.image). A digest wins over the tag;
the tag defaults to the chart's appVersion.
*/}}
{{- define "clickstream.image" -}}
{{- $repo := .image.repository }}
{{- with .root.Values.global.imageRegistry }}{{ $repo = printf "%s/%s" (trimSuffix "/" .) $repo }}{{ end }}
{{- if .image.digest }}
{{- printf "%s@%s" $repo .image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion .image.tag | toString) }}
{{- end }}
{{- end }}

{{/* Executor image: the stream-processor image unless streamProcessor.executor.image is set. */}}
{{- define "clickstream.executorImage" -}}
{{- $driver := .Values.streamProcessor.image }}
{{- $exec := .Values.streamProcessor.executor.image }}
{{- $image := dict "repository" (default $driver.repository $exec.repository) "tag" (default $driver.tag $exec.tag) "digest" (default $driver.digest $exec.digest) }}
{{- include "clickstream.image" (dict "root" . "image" $image) }}
{{- end }}

{{/* ServiceAccount name: (dict "root" $ "sa" .Values.x.serviceAccount "component" "ingest-api") */}}
{{- define "clickstream.serviceAccountName" -}}
{{- if .sa.create }}
{{- default (include "clickstream.componentName" (dict "root" .root "component" .component)) .sa.name }}
{{- else }}
{{- default "default" .sa.name }}
{{- end }}
{{- end }}

{{- define "clickstream.driverServiceAccountName" -}}
{{- include "clickstream.serviceAccountName" (dict "root" . "sa" .Values.streamProcessor.serviceAccount "component" "stream-processor") }}
{{- end }}

{{- define "clickstream.executorServiceAccountName" -}}
{{- include "clickstream.serviceAccountName" (dict "root" . "sa" .Values.streamProcessor.executor.serviceAccount "component" "spark-executor") }}
{{- end }}

{{/* Headless Service of the Spark driver; its DNS name is spark.driver.host. */}}
{{- define "clickstream.driverServiceName" -}}
{{- include "clickstream.componentName" (dict "root" . "component" "spark-driver") }}
{{- end }}

{{- define "clickstream.driverHost" -}}
{{- printf "%s.%s.svc" (include "clickstream.driverServiceName" .) .Release.Namespace }}
{{- end }}

{{- define "clickstream.checkpointLocation" -}}
{{- default (printf "s3a://%s/checkpoints/stream-processor" .Values.s3.bucket) .Values.streamProcessor.checkpointLocation }}
{{- end }}

{{/* Values that must be given; fail early with a message naming the value. */}}
{{- define "clickstream.kafkaBootstrapServers" -}}
{{- required "kafka.bootstrapServers is required: the Kafka bootstrap servers (MSK, Strimzi or any Kafka)" .Values.kafka.bootstrapServers }}
{{- end }}

{{/* Kafka is needed unless the bus is Kinesis and the loader reads its notifications from SQS. */}}
{{- define "clickstream.needsKafka" -}}
{{- if or (ne .Values.bus "kinesis") (and .Values.warehouseLoader.enabled (eq .Values.warehouseLoader.notifications.source "kafka")) }}true{{ end }}
{{- end }}

{{/* Environment shared by every service: Kafka and logging. */}}
{{- define "clickstream.commonEnv" -}}
{{- if or (include "clickstream.needsKafka" .) .Values.kafka.bootstrapServers }}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ include "clickstream.kafkaBootstrapServers" . | quote }}
{{- end }}
- name: KAFKA_EVENTS_TOPIC
  value: {{ .Values.kafka.eventsTopic | quote }}
- name: KAFKA_DEAD_LETTER_TOPIC
  value: {{ .Values.kafka.deadLetterTopic | quote }}
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- include "clickstream.kafkaSecurityEnv" . }}
{{- end }}

{{/*
Kafka connection security (clickstream_common.kafka_security): protocol, SASL mechanism,
credentials from a Secret (never inline), the CA bundle's path in the kafka-ca volume.
*/}}
{{- define "clickstream.kafkaSecurityEnv" -}}
{{- $sec := .Values.kafka.security }}
{{- $mechanism := $sec.sasl.mechanism }}
- name: KAFKA_SECURITY_PROTOCOL
  value: {{ $sec.protocol | quote }}
{{- if hasPrefix "SASL_" $sec.protocol }}
{{- if not $mechanism }}
{{- fail (printf "kafka.security.sasl.mechanism is required with kafka.security.protocol=%s" $sec.protocol) }}
{{- end }}
- name: KAFKA_SASL_MECHANISM
  value: {{ $mechanism | quote }}
{{- if eq $mechanism "OAUTHBEARER" }}
- name: KAFKA_AWS_REGION
  value: {{ default .Values.s3.region $sec.sasl.awsRegion | quote }}
{{- else }}
- name: KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "kafka.security.sasl.existingSecret is required with mechanism %s: a Secret holding the Kafka user name and password" $mechanism) $sec.sasl.existingSecret | quote }}
      key: {{ $sec.sasl.usernameKey | quote }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $sec.sasl.existingSecret | quote }}
      key: {{ $sec.sasl.passwordKey | quote }}
{{- end }}
{{- else if $mechanism }}
{{- fail (printf "kafka.security.sasl.mechanism=%s needs kafka.security.protocol SASL_SSL (or SASL_PLAINTEXT)" $mechanism) }}
{{- end }}
{{- if include "clickstream.kafkaCaVolumeSource" . }}
- name: KAFKA_SSL_CAFILE
  value: {{ printf "/etc/clickstream/kafka-ca/%s" $sec.tls.caKey | quote }}
{{- end }}
{{- if not $sec.tls.checkHostname }}
- name: KAFKA_SSL_CHECK_HOSTNAME
  value: "false"
{{- end }}
{{- end }}

{{/* Volume source of the Kafka CA bundle (ConfigMap or Secret); empty when none is set. */}}
{{- define "clickstream.kafkaCaVolumeSource" -}}
{{- $tls := .Values.kafka.security.tls }}
{{- if and $tls.caConfigMap $tls.caSecret }}
{{- fail "set only one of kafka.security.tls.caConfigMap and kafka.security.tls.caSecret" }}
{{- end }}
{{- if $tls.caConfigMap }}
configMap:
  name: {{ $tls.caConfigMap | quote }}
  items: [{key: {{ $tls.caKey | quote }}, path: {{ $tls.caKey | quote }}}]
{{- else if $tls.caSecret }}
secret:
  secretName: {{ $tls.caSecret | quote }}
  items: [{key: {{ $tls.caKey | quote }}, path: {{ $tls.caKey | quote }}}]
{{- end }}
{{- end }}

{{/* Volumes every Kafka client pod adds: the CA bundle, when one is configured. */}}
{{- define "clickstream.kafkaVolumes" -}}
{{- with include "clickstream.kafkaCaVolumeSource" . }}
- name: kafka-ca
  {{- . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "clickstream.kafkaVolumeMounts" -}}
{{- if include "clickstream.kafkaCaVolumeSource" . }}
- name: kafka-ca
  mountPath: /etc/clickstream/kafka-ca
  readOnly: true
{{- end }}
{{- end }}

{{/* S3 location and, when a Secret is named, static keys from it (never inline). */}}
{{- define "clickstream.s3Env" -}}
- name: S3_BUCKET
  value: {{ .Values.s3.bucket | quote }}
- name: S3_REGION
  value: {{ .Values.s3.region | quote }}
{{- with .Values.s3.endpointUrl }}
- name: S3_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- include "clickstream.s3CredentialsEnv" . }}
{{- end }}

{{- define "clickstream.s3CredentialsEnv" -}}
{{- with .Values.s3.credentials }}
{{- if .existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret | quote }}
      key: {{ .accessKeyIdKey | quote }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret | quote }}
      key: {{ .secretAccessKeyKey | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* emptyDir for /tmp */}}
{{- define "clickstream.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpVolumeSizeLimit }}
{{- end }}

{{/* imagePullSecrets from global.imagePullSecrets (names or {name: ...} objects) */}}
{{- define "clickstream.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  {{- if kindIs "string" . }}
  - name: {{ . }}
  {{- else }}
  - name: {{ .name }}
  {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* NetworkPolicy egress rules, when networkPolicy.egress.enabled: DNS, the release, extraRules. */}}
{{- define "clickstream.networkPolicyEgress" -}}
{{- if .Values.networkPolicy.egress.enabled -}}
egress:
  # DNS
  - ports:
      - {port: 53, protocol: UDP}
      - {port: 53, protocol: TCP}
  # the release's own pods (collector, driver, executors, loader)
  - to:
      - podSelector:
          matchLabels:
            {{- include "clickstream.selectorLabels" . | nindent 12 }}
  {{- with .Values.networkPolicy.egress.extraRules }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
{{- end }}

{{/* NetworkPolicy policyTypes */}}
{{- define "clickstream.networkPolicyTypes" -}}
policyTypes:
  - Ingress
  {{- if .Values.networkPolicy.egress.enabled }}
  - Egress
  {{- end }}
{{- end }}

{{/* The event bus of the collector (setting INGEST_SINK) or the processor (PROCESSOR_SOURCE),
and the Kinesis stream when the bus is kinesis. Call with (dict "root" . "setting" NAME). */}}
{{- define "clickstream.busEnv" -}}
{{- $v := .root.Values }}
- name: {{ .setting }}
  value: {{ $v.bus | quote }}
{{- if eq $v.bus "kinesis" }}
- name: KINESIS_STREAM_NAME
  value: {{ required "kinesis.streamName is required when bus is kinesis" $v.kinesis.streamName | quote }}
{{- if and (eq .setting "INGEST_SINK") $v.kinesis.deadLetterStreamName }}
- name: KINESIS_DEAD_LETTER_STREAM_NAME
  value: {{ $v.kinesis.deadLetterStreamName | quote }}
{{- end }}
- name: KINESIS_REGION
  value: {{ default $v.s3.region $v.kinesis.region | quote }}
{{- with $v.kinesis.endpointUrl }}
- name: KINESIS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
