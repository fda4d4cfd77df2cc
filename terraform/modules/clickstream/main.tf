# The AWS side of clickstream: the lake bucket and its notifications, the event stream, the
# Glue catalog over the lake, the IAM roles of the services (IRSA) and of Redshift's COPY,
# and the alarms. Every name the chart needs is an output (outputs.tf, `helm_values`).

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

data "aws_partition" "current" {}

locals {
  account_id  = data.aws_caller_identity.current.account_id
  region      = data.aws_region.current.name
  partition   = data.aws_partition.current.partition
  bucket_name = var.bucket_name != "" ? var.bucket_name : "${var.name}-lake-${local.account_id}-${local.region}"
  kinesis     = var.bus == "kinesis"
  oidc_issuer = trimprefix(var.eks_oidc_issuer_url, "https://")

  # The lake's layout (clickstream_common.lake; a test keeps these in step).
  raw_prefix       = "raw/events/"
  processed_prefix = "processed/"
  errors_prefix    = "errors/events/"
  # The processor's Spark checkpoints (the chart's default checkpointLocation).
  checkpoints_prefix = "checkpoints/"
  # Redshift COPY manifests the loader writes (LOADER_MANIFEST_PREFIX).
  manifests_prefix      = "loader/manifests/"
  athena_results_prefix = "athena-results/"

  # Service accounts the chart creates under these names (outputs -> Helm values).
  service_accounts = {
    ingest_api       = "${var.release_name}-ingest-api"
    stream_processor = "${var.release_name}-stream-processor"
    spark_executor   = "${var.release_name}-spark-executor"
    warehouse_loader = "${var.release_name}-warehouse-loader"
  }
  # IRSA role -> the service accounts that assume it. The Spark driver and its executors
  # share one role: both read the stream and write checkpoints (executors upload state).
  role_service_accounts = {
    ingest_api       = [local.service_accounts.ingest_api]
    stream_processor = [local.service_accounts.stream_processor, local.service_accounts.spark_executor]
    warehouse_loader = [local.service_accounts.warehouse_loader]
  }

  tags = merge({ "app.kubernetes.io/part-of" = "clickstream" }, var.tags)
}
