variable "name" {
  description = "Prefix of every resource name (bucket, queues, stream, roles, alarms)."
  type        = string
  default     = "clickstream"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name: 2-31 lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}

variable "bus" {
  description = "The event bus: `kinesis` (this module creates the stream) or `kafka` (an existing MSK or other Kafka cluster, given by kafka_bootstrap_servers)."
  type        = string
  default     = "kinesis"

  validation {
    condition     = contains(["kinesis", "kafka"], var.bus)
    error_message = "bus must be kinesis or kafka."
  }
}

variable "kinesis_shard_count" {
  description = "Shards of the events stream; 0 makes an on-demand stream (capacity follows the traffic)."
  type        = number
  default     = 0

  validation {
    condition     = var.kinesis_shard_count >= 0
    error_message = "kinesis_shard_count must be 0 (on demand) or more."
  }
}

variable "kinesis_retention_hours" {
  description = "How long the stream keeps records (24-8760): how long the processor may be down without losing events."
  type        = number
  default     = 168

  validation {
    condition     = var.kinesis_retention_hours >= 24 && var.kinesis_retention_hours <= 8760
    error_message = "kinesis_retention_hours must be between 24 and 8760."
  }
}

variable "kafka_bootstrap_servers" {
  description = "bus = kafka: the brokers (e.g. the MSK cluster's bootstrap_brokers_sasl_scram), passed on to the chart."
  type        = string
  default     = ""
}

variable "bucket_name" {
  description = "Name of the lake bucket; empty: <name>-lake-<account id>-<region>."
  type        = string
  default     = ""
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete a lake bucket that still holds objects (test accounts only)."
  type        = bool
  default     = false
}

variable "raw_transition_days" {
  description = "Days after which raw-zone objects (raw/events/) move to S3 Glacier Instant Retrieval."
  type        = number
  default     = 30
}

variable "raw_expiration_days" {
  description = "Days after which raw-zone objects are deleted; 0 keeps them forever."
  type        = number
  default     = 365
}

variable "errors_expiration_days" {
  description = "Days after which rejected records (errors/events/) are deleted."
  type        = number
  default     = 90
}

variable "noncurrent_version_expiration_days" {
  description = "Days a replaced or deleted object version is kept (the bucket is versioned)."
  type        = number
  default     = 30
}

variable "access_log_bucket" {
  description = "Existing bucket that receives the lake bucket's server access logs; empty: no access logging."
  type        = string
  default     = ""
}

variable "glue_database" {
  description = "Glue database of the lake's tables and views (Athena reads it)."
  type        = string
  default     = "clickstream"
}

variable "projection_start_date" {
  description = "First date (YYYY-MM-DD) that partition projection enumerates; no lake data is older."
  type        = string
  default     = "2025-01-01"

  validation {
    condition     = can(regex("^\\d{4}-\\d{2}-\\d{2}$", var.projection_start_date))
    error_message = "projection_start_date must be YYYY-MM-DD."
  }
}

variable "eks_oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider (IRSA)."
  type        = string
}

variable "eks_oidc_issuer_url" {
  description = "The EKS cluster's OIDC issuer URL (https://oidc.eks.<region>.amazonaws.com/id/...)."
  type        = string
}

variable "namespace" {
  description = "Kubernetes namespace the chart is installed into."
  type        = string
  default     = "clickstream"
}

variable "release_name" {
  description = "Helm release name; the service account names (an output, and a Helm value) derive from it."
  type        = string
  default     = "clickstream"
}

variable "redshift_cluster_identifier" {
  description = "Provisioned Redshift cluster the loader writes to (for its health alarm); empty: no Redshift alarm."
  type        = string
  default     = ""
}

variable "alert_emails" {
  description = "E-mail addresses subscribed to the alert topic (each must confirm)."
  type        = list(string)
  default     = []
}

variable "kinesis_iterator_age_alarm_seconds" {
  description = "Alarm when the processor reads records older than this (GetRecords.IteratorAgeMilliseconds)."
  type        = number
  default     = 300
}

variable "sqs_oldest_message_alarm_seconds" {
  description = "Alarm when the oldest lake notification waits longer than this (the loader is behind or down)."
  type        = number
  default     = 600
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the lake's KMS key is deleted after a destroy."
  type        = number
  default     = 30
}
