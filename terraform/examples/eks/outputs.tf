output "helm_values" {
  description = "The chart's values for this infrastructure (see ../../helm_values.py)."
  value       = module.clickstream.helm_values
}

output "resources" {
  description = "Other resources: KMS key, alert topic, Glue database, Athena workgroup, ..."
  value       = module.clickstream.resources
}
