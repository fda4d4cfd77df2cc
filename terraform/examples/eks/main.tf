# Example root: the clickstream AWS side for a chart installed on an existing EKS cluster.
#   terraform init && terraform apply -var cluster_name=my-eks
#   terraform output -json helm_values | python ../../helm_values.py > values-aws.yaml
# See docs/aws.md for the whole walk-through.

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      project = "clickstream"
    }
  }
}

data "aws_eks_cluster" "this" {
  name = var.cluster_name
}

data "aws_iam_openid_connect_provider" "this" {
  url = data.aws_eks_cluster.this.identity[0].oidc[0].issuer
}

module "clickstream" {
  source = "../../modules/clickstream"

  name                        = var.name
  bus                         = var.bus
  kafka_bootstrap_servers     = var.kafka_bootstrap_servers
  eks_oidc_provider_arn       = data.aws_iam_openid_connect_provider.this.arn
  eks_oidc_issuer_url         = data.aws_eks_cluster.this.identity[0].oidc[0].issuer
  namespace                   = var.namespace
  release_name                = var.release_name
  redshift_cluster_identifier = var.redshift_cluster_identifier
  alert_emails                = var.alert_emails
}
