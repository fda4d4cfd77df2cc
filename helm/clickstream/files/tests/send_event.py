# The `helm test` hook's script (the chart embeds it; tests/deploy runs it against a real
# collector): one event with the first write key of INGEST_WRITE_KEYS, accepted or exit 1.
import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime

url = os.environ["COLLECTOR_URL"].rstrip("/") + "/v1/events"
write_key = next(iter(json.loads(os.environ["INGEST_WRITE_KEYS"])))
event = {
    "event_id": str(uuid.uuid4()),
    "event_type": "page_view",
    "timestamp": datetime.now(UTC).isoformat(),
    "anonymous_id": "helm-test",
    "page_url": "https://example.com/helm-test",
}
request = urllib.request.Request(
    url,
    data=json.dumps({"events": [event]}).encode(),
    headers={"Content-Type": "application/json", "Authorization": f"Bearer {write_key}"},
    method="POST",
)
try:
    with urllib.request.urlopen(request, timeout=30) as response:
        status, body = response.status, json.loads(response.read())
except urllib.error.HTTPError as error:
    status, body = error.code, error.read().decode(errors="replace")
print(f"POST {url}: {status} {body}")
if status != 202 or body.get("accepted") != 1:
    sys.exit(1)
print("event accepted")
