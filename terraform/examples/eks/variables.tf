variable "region" {
  description = "AWS region of the EKS cluster and of everything created here."
  type        = string
  default     = "eu-west-1"
}

variable "cluster_name" {
  description = "Name of the existing EKS cluster (with an IAM OIDC provider) the chart goes to."
  type        = string
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "clickstream"
}

variable "bus" {
  description = "kinesis (a stream is created) or kafka (give kafka_bootstrap_servers)."
  type        = string
  default     = "kinesis"
}

variable "kafka_bootstrap_servers" {
  description = "bus = kafka: the MSK (or other Kafka) bootstrap servers."
  type        = string
  default     = ""
}

variable "namespace" {
  description = "Namespace of the Helm release."
  type        = string
  default     = "clickstream"
}

variable "release_name" {
  description = "Name of the Helm release."
  type        = string
  default     = "clickstream"
}

variable "redshift_cluster_identifier" {
  description = "The provisioned Redshift cluster the loader writes to (health alarm); empty: none."
  type        = string
  default     = ""
}

variable "alert_emails" {
  description = "E-mail addresses for the CloudWatch alarms."
  type        = list(string)
  default     = []
}
