"""Turn the module's `helm_values` output into a values file for the clickstream chart.

    terraform output -json helm_values | python terraform/helm_values.py > values-aws.yaml

Null leaves (values that do not apply to the chosen bus) are dropped, so the chart keeps its
defaults there. The result is checked against the chart's values.schema.json when the
`jsonschema` package is there. Standard library plus PyYAML.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1] / "helm" / "clickstream"
HEADER = """\
# Helm values from the Terraform module's `helm_values` output (terraform/helm_values.py).
# Install with: helm install clickstream helm/clickstream -f values-aws.yaml -f my-values.yaml
# where my-values.yaml names the Secrets (write keys, warehouse DSN) and the images.
"""


def without_nulls(tree: Any) -> Any:
    if isinstance(tree, dict):
        pruned = {k: without_nulls(v) for k, v in tree.items() if v is not None}
        return {k: v for k, v in pruned.items() if v != {}}
    return tree


def render(helm_values: dict[str, Any]) -> str:
    body = yaml.safe_dump(without_nulls(helm_values), sort_keys=False, default_flow_style=False)
    return HEADER + body


def schema_errors(values: dict[str, Any]) -> list[str]:
    """Where `values` breaks the chart's schema, ignoring keys that only the user can give
    (required elsewhere, e.g. Secrets): only the given keys are checked."""
    try:
        import jsonschema
    except ImportError:
        return []
    schema = json.loads((CHART / "values.schema.json").read_text())

    def drop_required(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: drop_required(v) for k, v in node.items() if k != "required"}
        if isinstance(node, list):
            return [drop_required(v) for v in node]
        return node

    validator = jsonschema.Draft7Validator(drop_required(schema))
    return [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(values)
    ]


def main() -> int:
    document = json.load(sys.stdin)
    # `terraform output -json` (all outputs) or `terraform output -json helm_values`.
    if isinstance(document, dict) and "helm_values" in document:
        document = document["helm_values"]["value"]
    values = without_nulls(document)
    errors = schema_errors(values)
    if errors:
        print("values do not fit the chart's schema:\n  " + "\n  ".join(errors), file=sys.stderr)
        return 1
    sys.stdout.write(render(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
