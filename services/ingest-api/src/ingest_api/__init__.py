"""ingest-api: the HTTP collector of the clickstream pipeline."""
