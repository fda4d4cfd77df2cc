# Every output below is one value of the Helm chart (helm/clickstream/values.yaml); its
# description names the value. `helm_values` is all of them as one tree:
#   terraform output -json helm_values | python terraform/helm_values.py > values-aws.yaml
# tests/aws/test_terraform.py keeps the outputs, the tree and the chart's schema in step.

locals {
  role_annotation = "eks.amazonaws.com/role-arn"

  helm_values = {
    bus = var.bus
    kafka = {
      bootstrapServers = var.bus == "kafka" ? var.kafka_bootstrap_servers : null
    }
    kinesis = {
      streamName           = local.kinesis ? aws_kinesis_stream.events[0].name : null
      deadLetterStreamName = local.kinesis ? aws_kinesis_stream.dead_letters[0].name : null
      region               = local.kinesis ? local.region : null
    }
    s3 = {
      bucket = aws_s3_bucket.lake.bucket
      region = local.region
    }
    ingestApi = {
      serviceAccount = {
        name        = local.service_accounts.ingest_api
        annotations = { (local.role_annotation) = aws_iam_role.service["ingest_api"].arn }
      }
    }
    streamProcessor = {
      serviceAccount = {
        name        = local.service_accounts.stream_processor
        annotations = { (local.role_annotation) = aws_iam_role.service["stream_processor"].arn }
      }
      executor = {
        serviceAccount = {
          name        = local.service_accounts.spark_executor
          annotations = { (local.role_annotation) = aws_iam_role.service["stream_processor"].arn }
        }
      }
    }
    warehouseLoader = {
      serviceAccount = {
        name        = local.service_accounts.warehouse_loader
        annotations = { (local.role_annotation) = aws_iam_role.service["warehouse_loader"].arn }
      }
      notifications = {
        source      = "sqs"
        sqsQueueUrl = aws_sqs_queue.notifications.url
      }
      warehouse = {
        dialect = "redshift"
        iamRole = aws_iam_role.redshift_copy.arn
      }
    }
  }
}

output "helm_values" {
  description = "Every Helm value below as one tree (null: leave the chart's default)."
  value       = local.helm_values
}

output "bus" {
  description = "Helm value bus."
  value       = local.helm_values.bus
}

output "kafka_bootstrap_servers" {
  description = "Helm value kafka.bootstrapServers (bus = kafka)."
  value       = local.helm_values.kafka.bootstrapServers

  precondition {
    condition     = var.bus != "kafka" || var.kafka_bootstrap_servers != ""
    error_message = "bus = kafka needs kafka_bootstrap_servers (e.g. the MSK cluster's bootstrap brokers)."
  }
}

output "kinesis_stream_name" {
  description = "Helm value kinesis.streamName (bus = kinesis)."
  value       = local.helm_values.kinesis.streamName
}

output "kinesis_dead_letter_stream_name" {
  description = "Helm value kinesis.deadLetterStreamName (bus = kinesis)."
  value       = local.helm_values.kinesis.deadLetterStreamName
}

output "kinesis_region" {
  description = "Helm value kinesis.region (bus = kinesis)."
  value       = local.helm_values.kinesis.region
}

output "s3_bucket" {
  description = "Helm value s3.bucket."
  value       = local.helm_values.s3.bucket
}

output "s3_region" {
  description = "Helm value s3.region."
  value       = local.helm_values.s3.region
}

output "ingest_api_service_account" {
  description = "Helm value ingestApi.serviceAccount.name."
  value       = local.helm_values.ingestApi.serviceAccount.name
}

output "ingest_api_role_arn" {
  description = "Helm value ingestApi.serviceAccount.annotations.eks.amazonaws.com/role-arn."
  value       = local.helm_values.ingestApi.serviceAccount.annotations[local.role_annotation]
}

output "stream_processor_service_account" {
  description = "Helm value streamProcessor.serviceAccount.name."
  value       = local.helm_values.streamProcessor.serviceAccount.name
}

output "stream_processor_role_arn" {
  description = "Helm value streamProcessor.serviceAccount.annotations.eks.amazonaws.com/role-arn."
  value       = local.helm_values.streamProcessor.serviceAccount.annotations[local.role_annotation]
}

output "spark_executor_service_account" {
  description = "Helm value streamProcessor.executor.serviceAccount.name."
  value       = local.helm_values.streamProcessor.executor.serviceAccount.name
}

output "spark_executor_role_arn" {
  description = "Helm value streamProcessor.executor.serviceAccount.annotations.eks.amazonaws.com/role-arn."
  value       = local.helm_values.streamProcessor.executor.serviceAccount.annotations[local.role_annotation]
}

output "warehouse_loader_service_account" {
  description = "Helm value warehouseLoader.serviceAccount.name."
  value       = local.helm_values.warehouseLoader.serviceAccount.name
}

output "warehouse_loader_role_arn" {
  description = "Helm value warehouseLoader.serviceAccount.annotations.eks.amazonaws.com/role-arn."
  value       = local.helm_values.warehouseLoader.serviceAccount.annotations[local.role_annotation]
}

output "loader_notifications_source" {
  description = "Helm value warehouseLoader.notifications.source."
  value       = local.helm_values.warehouseLoader.notifications.source
}

output "loader_sqs_queue_url" {
  description = "Helm value warehouseLoader.notifications.sqsQueueUrl."
  value       = local.helm_values.warehouseLoader.notifications.sqsQueueUrl
}

output "warehouse_dialect" {
  description = "Helm value warehouseLoader.warehouse.dialect."
  value       = local.helm_values.warehouseLoader.warehouse.dialect
}

output "redshift_copy_role_arn" {
  description = "Helm value warehouseLoader.warehouse.iamRole. Attach it to the Redshift cluster too (docs/aws.md)."
  value       = local.helm_values.warehouseLoader.warehouse.iamRole
}

output "resources" {
  description = "Not Helm values: the other resources, for people and other modules."
  value = {
    kms_key_arn            = aws_kms_key.lake.arn
    lake_bucket_arn        = aws_s3_bucket.lake.arn
    kinesis_stream_arn     = local.kinesis ? aws_kinesis_stream.events[0].arn : null
    notifications_dlq_url  = aws_sqs_queue.notifications_dlq.url
    alerts_topic_arn       = aws_sns_topic.alerts.arn
    glue_database          = aws_glue_catalog_database.lake.name
    athena_workgroup       = aws_athena_workgroup.lake.name
    redshift_copy_role_arn = aws_iam_role.redshift_copy.arn
  }
}
