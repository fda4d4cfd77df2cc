# The Glue Data Catalog over the lake: one table per processed data set (Parquet, partitioned
# by date and hour, with partition projection so new hours need no crawler) and one view per
# data set, <name>_current, with the rows the warehouse holds. glue-catalog.json is generated
# from the TableSpecs (python -m clickstream_common.catalog_cli terraform); a test keeps the
# committed file in step with them.

locals {
  catalog = jsondecode(file("${path.module}/glue-catalog.json"))
}

resource "aws_glue_catalog_database" "lake" {
  name        = var.glue_database
  description = "clickstream: the processed data sets of the lake in s3://${aws_s3_bucket.lake.bucket}"
}

resource "aws_glue_catalog_table" "dataset" {
  for_each = local.catalog.tables

  name          = each.key
  database_name = aws_glue_catalog_database.lake.name
  description   = each.value.Description
  table_type    = each.value.TableType
  parameters = merge(
    { for key, value in each.value.Parameters : key => replace(value, local.catalog.bucket_placeholder, aws_s3_bucket.lake.bucket) },
    { (local.catalog.date_range_parameter) = "${var.projection_start_date},NOW" },
  )

  dynamic "partition_keys" {
    for_each = each.value.PartitionKeys
    content {
      name = partition_keys.value.Name
      type = partition_keys.value.Type
    }
  }

  storage_descriptor {
    location      = replace(each.value.StorageDescriptor.Location, local.catalog.bucket_placeholder, aws_s3_bucket.lake.bucket)
    input_format  = each.value.StorageDescriptor.InputFormat
    output_format = each.value.StorageDescriptor.OutputFormat
    compressed    = each.value.StorageDescriptor.Compressed

    ser_de_info {
      serialization_library = each.value.StorageDescriptor.SerdeInfo.SerializationLibrary
    }

    dynamic "columns" {
      for_each = each.value.StorageDescriptor.Columns
      content {
        name = columns.value.Name
        type = columns.value.Type
      }
    }
  }
}

# Stored the way Athena stores a view it created: a Presto view document, base64-encoded in
# view_original_text. Its schema is the database, resolved here. No description: a view is
# recognised by its comment parameter "Presto View", which a description would replace.
resource "aws_glue_catalog_table" "current_view" {
  for_each = local.catalog.views

  name               = each.key
  database_name      = aws_glue_catalog_database.lake.name
  table_type         = "VIRTUAL_VIEW"
  parameters         = each.value.Parameters
  view_original_text = "/* Presto View: ${base64encode(jsonencode(merge(each.value.PrestoView, { schema = aws_glue_catalog_database.lake.name })))} */"
  view_expanded_text = each.value.ViewExpandedText

  storage_descriptor {
    dynamic "columns" {
      for_each = each.value.Columns
      content {
        name = columns.value.Name
        type = columns.value.Type
      }
    }
  }

  depends_on = [aws_glue_catalog_table.dataset]
}

# Athena: a workgroup whose results stay in the lake bucket, encrypted with the lake key.
resource "aws_athena_workgroup" "lake" {
  name = var.name

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true

    result_configuration {
      output_location = "s3://${aws_s3_bucket.lake.bucket}/${local.athena_results_prefix}"
      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = aws_kms_key.lake.arn
      }
    }
  }

  tags = local.tags
}
