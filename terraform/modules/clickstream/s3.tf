# The lake bucket: raw/ (archive of every record), processed/ (the Parquet data sets and their
# commit markers), errors/ (rejected records), checkpoints/ (Spark), loader/manifests/
# (Redshift COPY), athena-results/. Private, encrypted with the lake key, TLS only.

resource "aws_s3_bucket" "lake" {
  # Replication doubles the storage bill for a lake that the raw zone can rebuild; a
  # deployment that needs a second region adds aws_s3_bucket_replication_configuration.
  #checkov:skip=CKV_AWS_144:cross-region replication is a deployment choice, not a default
  bucket        = local.bucket_name
  force_destroy = var.force_destroy
  tags          = local.tags
}

resource "aws_s3_bucket_ownership_controls" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "lake" {
  bucket                  = aws_s3_bucket.lake.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# Objects are rewritten in place when a micro-batch is retried; versions keep what was
# replaced for noncurrent_version_expiration_days.
resource "aws_s3_bucket_versioning" "lake" {
  bucket = aws_s3_bucket.lake.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.lake.arn
    }
    # One data key per bucket instead of one KMS call per object.
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_logging" "lake" {
  count         = var.access_log_bucket != "" ? 1 : 0
  bucket        = aws_s3_bucket.lake.id
  target_bucket = var.access_log_bucket
  target_prefix = "${local.bucket_name}/"
}

resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id

  rule {
    id     = "raw-zone"
    status = "Enabled"
    filter {
      prefix = local.raw_prefix
    }
    transition {
      days          = var.raw_transition_days
      storage_class = "GLACIER_IR"
    }
    dynamic "expiration" {
      for_each = var.raw_expiration_days > 0 ? [var.raw_expiration_days] : []
      content {
        days = expiration.value
      }
    }
  }

  rule {
    id     = "rejected-records"
    status = "Enabled"
    filter {
      prefix = local.errors_prefix
    }
    expiration {
      days = var.errors_expiration_days
    }
  }

  rule {
    id     = "copy-manifests"
    status = "Enabled"
    filter {
      prefix = local.manifests_prefix
    }
    expiration {
      days = 7
    }
  }

  rule {
    id     = "athena-results"
    status = "Enabled"
    filter {
      prefix = local.athena_results_prefix
    }
    expiration {
      days = 30
    }
  }

  rule {
    id     = "whole-bucket"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.lake]
}

data "aws_iam_policy_document" "lake_bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.lake.arn,
      "${aws_s3_bucket.lake.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid     = "DenyTlsOlderThan12"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.lake.arn,
      "${aws_s3_bucket.lake.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }
}

resource "aws_s3_bucket_policy" "lake" {
  bucket     = aws_s3_bucket.lake.id
  policy     = data.aws_iam_policy_document.lake_bucket.json
  depends_on = [aws_s3_bucket_public_access_block.lake]
}

# Commit markers (processed/<data set>/_commits/batch-N.json) announce loadable batches;
# the loader reads them from the queue. Parquet objects are not announced.
resource "aws_s3_bucket_notification" "lake" {
  bucket = aws_s3_bucket.lake.id
  queue {
    id            = "commit-markers"
    queue_arn     = aws_sqs_queue.notifications.arn
    events        = ["s3:ObjectCreated:*"]
    filter_prefix = local.processed_prefix
    filter_suffix = ".json"
  }
  depends_on = [aws_sqs_queue_policy.notifications]
}
