"""stream-processor: Spark Structured Streaming from Kafka to the S3 data lake."""
