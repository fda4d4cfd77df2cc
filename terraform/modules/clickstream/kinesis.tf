# The event stream (bus = kinesis). The collector puts each event with its user key as the
# partition key, so one user's events stay in order on one shard.

resource "aws_kinesis_stream" "events" {
  count            = local.kinesis ? 1 : 0
  name             = "${var.name}-events"
  shard_count      = var.kinesis_shard_count > 0 ? var.kinesis_shard_count : null
  retention_period = var.kinesis_retention_hours
  encryption_type  = "KMS"
  kms_key_id       = aws_kms_key.lake.arn

  stream_mode_details {
    stream_mode = var.kinesis_shard_count > 0 ? "PROVISIONED" : "ON_DEMAND"
  }

  tags = local.tags
}

# The collector's rejected events (the dead-letter topic's counterpart): one shard is plenty.
resource "aws_kinesis_stream" "dead_letters" {
  count            = local.kinesis ? 1 : 0
  name             = "${var.name}-events-dlq"
  shard_count      = 1
  retention_period = var.kinesis_retention_hours
  encryption_type  = "KMS"
  kms_key_id       = aws_kms_key.lake.arn

  stream_mode_details {
    stream_mode = "PROVISIONED"
  }

  tags = local.tags
}
