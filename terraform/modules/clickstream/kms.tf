# One customer-managed key for everything that holds events at rest: the lake bucket, the
# stream, the notification queues and the alert topic. A customer key (not aws/s3, aws/sqs)
# because S3 and CloudWatch must be allowed to use it to deliver to the queue and the topic.

data "aws_iam_policy_document" "kms" {
  # A key policy's resource "*" is the key itself, and the account statement is the one AWS
  # writes for every key: it lets IAM policies (the services' roles) grant use of the key.
  #checkov:skip=CKV_AWS_109:key policy; "*" is this key, administered by the account
  #checkov:skip=CKV_AWS_111:key policy; "*" is this key, administered by the account
  #checkov:skip=CKV_AWS_356:key policy; "*" is this key
  statement {
    sid       = "AccountAdministersTheKey"
    actions   = ["kms:*"]
    resources = ["*"] # in a key policy, "*" is this key
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "S3DeliversNotificationsToTheEncryptedQueue"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "CloudWatchPublishesAlarmsToTheEncryptedTopic"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_kms_key" "lake" {
  description             = "${var.name}: lake bucket, event stream, notification queues, alert topic"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.tags
}

resource "aws_kms_alias" "lake" {
  name          = "alias/${var.name}-lake"
  target_key_id = aws_kms_key.lake.key_id
}
