# IAM roles of the three services (IRSA: each trusts only its own service accounts) and the
# role Redshift assumes for COPY. Each policy grants what the service's code calls, on the
# resources it calls it on, and nothing more; tests/aws/test_terraform.py derives the calls
# from the services' code and compares.

data "aws_iam_policy_document" "irsa_trust" {
  for_each = local.role_service_accounts

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.eks_oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = [for account in each.value : "system:serviceaccount:${var.namespace}:${account}"]
    }
  }
}

resource "aws_iam_role" "service" {
  for_each = local.role_service_accounts

  name                 = "${var.name}-${replace(each.key, "_", "-")}"
  description          = "clickstream ${replace(each.key, "_", "-")} (IRSA: ${join(", ", each.value)})"
  assume_role_policy   = data.aws_iam_policy_document.irsa_trust[each.key].json
  max_session_duration = 3600
  tags                 = local.tags
}

# --- ingest-api: puts events on the stream (bus = kinesis; with Kafka it needs no AWS API) ---

data "aws_iam_policy_document" "ingest_api" {
  count = local.kinesis ? 1 : 0

  statement {
    sid       = "PutEvents"
    actions   = ["kinesis:PutRecords"]
    resources = [aws_kinesis_stream.events[0].arn, aws_kinesis_stream.dead_letters[0].arn]
  }

  # Readiness (/readyz): the events stream is there and active.
  statement {
    sid       = "CheckStream"
    actions   = ["kinesis:DescribeStreamSummary"]
    resources = [aws_kinesis_stream.events[0].arn]
  }

  statement {
    sid       = "EncryptRecords"
    actions   = ["kms:GenerateDataKey"]
    resources = [aws_kms_key.lake.arn]
  }
}

resource "aws_iam_role_policy" "ingest_api" {
  count  = local.kinesis ? 1 : 0
  name   = "clickstream-ingest-api"
  role   = aws_iam_role.service["ingest_api"].id
  policy = data.aws_iam_policy_document.ingest_api[0].json
}

# --- stream-processor: reads the stream, writes the lake, keeps its checkpoints in S3 -------

data "aws_iam_policy_document" "stream_processor" {
  statement {
    sid     = "WriteLake"
    actions = ["s3:PutObject"]
    resources = [
      "${aws_s3_bucket.lake.arn}/${local.raw_prefix}*",
      "${aws_s3_bucket.lake.arn}/${local.processed_prefix}*",
      "${aws_s3_bucket.lake.arn}/${local.errors_prefix}*",
    ]
  }

  # Spark's checkpoints through S3A: offsets, commits and state-store files.
  statement {
    sid = "Checkpoints"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${aws_s3_bucket.lake.arn}/${local.checkpoints_prefix}*"]
  }

  statement {
    sid       = "ListCheckpoints"
    actions   = ["s3:ListBucket", "s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.lake.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.checkpoints_prefix}*"]
    }
  }

  statement {
    sid       = "EncryptAndDecryptLakeObjects"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.lake.arn]
  }

  dynamic "statement" {
    for_each = local.kinesis ? [aws_kinesis_stream.events[0].arn] : []
    content {
      sid = "ReadEvents"
      actions = [
        "kinesis:ListShards",
        "kinesis:GetShardIterator",
        "kinesis:GetRecords",
      ]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "stream_processor" {
  name   = "clickstream-stream-processor"
  role   = aws_iam_role.service["stream_processor"].id
  policy = data.aws_iam_policy_document.stream_processor.json
}

# --- warehouse-loader: notifications from SQS, commit markers and Parquet from processed/ ----

data "aws_iam_policy_document" "warehouse_loader" {
  statement {
    sid       = "ReadProcessed"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.lake.arn}/${local.processed_prefix}*"]
  }

  # The reconcile sweep lists each data set's commit markers.
  statement {
    sid       = "ListProcessed"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.processed_prefix}*"]
    }
  }

  # Redshift: a batch of several objects is copied through a manifest the loader writes.
  statement {
    sid       = "WriteCopyManifests"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.lake.arn}/${local.manifests_prefix}*"]
  }

  statement {
    sid = "ConsumeNotifications"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.notifications.arn]
  }

  statement {
    sid       = "DecryptLakeAndQueue"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.lake.arn]
  }
}

resource "aws_iam_role_policy" "warehouse_loader" {
  name   = "clickstream-warehouse-loader"
  role   = aws_iam_role.service["warehouse_loader"].id
  policy = data.aws_iam_policy_document.warehouse_loader.json
}

# --- Redshift COPY: the cluster reads the batch's Parquet (or its manifest) ----------------

data "aws_iam_policy_document" "redshift_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["redshift.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "redshift_copy" {
  name                 = "${var.name}-redshift-copy"
  description          = "Assumed by Redshift for the loader's COPY ... FROM s3://${local.bucket_name}"
  assume_role_policy   = data.aws_iam_policy_document.redshift_trust.json
  max_session_duration = 3600
  tags                 = local.tags
}

data "aws_iam_policy_document" "redshift_copy" {
  statement {
    sid     = "ReadBatches"
    actions = ["s3:GetObject"]
    resources = [
      "${aws_s3_bucket.lake.arn}/${local.processed_prefix}*",
      "${aws_s3_bucket.lake.arn}/${local.manifests_prefix}*",
    ]
  }

  # COPY FROM 's3://bucket/key' treats the key as a prefix and lists it.
  statement {
    sid       = "ListBatches"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.processed_prefix}*", "${local.manifests_prefix}*"]
    }
  }

  statement {
    sid       = "DecryptLake"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.lake.arn]
  }
}

resource "aws_iam_role_policy" "redshift_copy" {
  name   = "clickstream-redshift-copy"
  role   = aws_iam_role.redshift_copy.id
  policy = data.aws_iam_policy_document.redshift_copy.json
}
