# The alert topic and the CloudWatch alarms on the AWS side of the pipeline. The services'
# own alerts are Prometheus rules (helm/clickstream/files/prometheus); Alertmanager can send
# to this topic too (sns_configs).

data "aws_iam_policy_document" "alerts_topic" {
  statement {
    sid       = "CloudWatchAlarmsPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
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

resource "aws_sns_topic" "alerts" {
  name              = "${var.name}-alerts"
  kms_master_key_id = aws_kms_key.lake.arn
  tags              = local.tags
}

resource "aws_sns_topic_policy" "alerts" {
  arn    = aws_sns_topic.alerts.arn
  policy = data.aws_iam_policy_document.alerts_topic.json
}

resource "aws_sns_topic_subscription" "alert_email" {
  for_each  = toset(var.alert_emails)
  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.value
}

# The processor reads records older than the threshold: it is behind, stuck or down.
resource "aws_cloudwatch_metric_alarm" "kinesis_iterator_age" {
  count               = local.kinesis ? 1 : 0
  alarm_name          = "${var.name}-kinesis-iterator-age"
  alarm_description   = "The stream processor reads records more than ${var.kinesis_iterator_age_alarm_seconds} s old (it is behind or stopped)."
  namespace           = "AWS/Kinesis"
  metric_name         = "GetRecords.IteratorAgeMilliseconds"
  dimensions          = { StreamName = aws_kinesis_stream.events[0].name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  threshold           = var.kinesis_iterator_age_alarm_seconds * 1000
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = local.tags
}

# Throttled puts: the collector retries them, then answers 503; more shards (or on-demand).
resource "aws_cloudwatch_metric_alarm" "kinesis_write_throttled" {
  count               = local.kinesis ? 1 : 0
  alarm_name          = "${var.name}-kinesis-write-throttled"
  alarm_description   = "PutRecords is throttled: the stream needs more write capacity."
  namespace           = "AWS/Kinesis"
  metric_name         = "WriteProvisionedThroughputExceeded"
  dimensions          = { StreamName = aws_kinesis_stream.events[0].name }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "redshift_health" {
  count               = var.redshift_cluster_identifier != "" ? 1 : 0
  alarm_name          = "${var.name}-redshift-health"
  alarm_description   = "Redshift cluster ${var.redshift_cluster_identifier} fails its health check: the loader cannot load."
  namespace           = "AWS/Redshift"
  metric_name         = "HealthStatus"
  dimensions          = { ClusterIdentifier = var.redshift_cluster_identifier }
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 5
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  # No data from a cluster is as bad as an unhealthy one.
  treat_missing_data = "breaching"
  alarm_actions      = [aws_sns_topic.alerts.arn]
  ok_actions         = [aws_sns_topic.alerts.arn]
  tags               = local.tags
}

# Notifications wait: the loader is behind or down (fresh numbers stop reaching the warehouse).
resource "aws_cloudwatch_metric_alarm" "sqs_oldest_message" {
  alarm_name          = "${var.name}-lake-events-oldest-message"
  alarm_description   = "A lake notification has waited more than ${var.sqs_oldest_message_alarm_seconds} s: the warehouse loader is behind or down."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.notifications.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  threshold           = var.sqs_oldest_message_alarm_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = local.tags
}

# A notification failed five times; the reconcile sweep still loads its batch, but someone
# should find out why.
resource "aws_cloudwatch_metric_alarm" "sqs_dead_letters" {
  alarm_name          = "${var.name}-lake-events-dead-letters"
  alarm_description   = "Lake notifications reached the dead-letter queue."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.notifications_dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  tags                = local.tags
}
