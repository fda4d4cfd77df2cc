"""The catch-up load: committed batches the load ledger lacks, loaded now.

The loader loads each batch when its S3 notification arrives and sweeps the lake every
minute for batches whose notification was lost (`warehouse_loader.reconcile`). This job runs
the same sweep on a schedule, outside the loader: if the loader was down, stuck or
misconfigured for a while, the batches committed meanwhile reach the warehouse at the next
run anyway. It loads through the loader's own code (`LoaderService`: ledger claim, COPY,
merge, ledger commit in one transaction), so running it beside the loader is harmless: a
batch either of them has loaded is skipped by the other.

Each data set's markers list in write order; the job keeps, per data set and kind of marker,
the key up to which every marker is in the ledger (`orchestration/state/catchup.json`) and
lists only past it, so a run costs a few requests however long the history; `full` sweeps
from the beginning.
"""

from __future__ import annotations

import logging

from clickstream_common.lake import BatchKind
from orchestration.state import load_json, save_json
from warehouse_loader.config import Settings as LoaderSettings
from warehouse_loader.service import LoaderService

log = logging.getLogger(__name__)

STATE = "catchup"


def catch_up(settings: LoaderSettings | None = None, full: bool = False) -> int:
    """Load every committed batch the ledger lacks; returns how many were loaded."""
    settings = settings or LoaderSettings()
    service = LoaderService(settings)
    bucket = settings.s3_bucket
    state = {} if full else load_json(service.s3, bucket, STATE)
    service.watermarks = {
        (table, BatchKind(kind)): key
        for slot, key in state.get("watermarks", {}).items()
        for table, kind in [slot.split("/", 1)]
    }
    try:
        # Fail the run (rather than skip, as the loader's own sweep does) when the warehouse
        # is unreachable: a scheduled catch-up that silently did nothing would hide it.
        service.loader()
        loaded = service.reconcile()
    finally:
        service.close()
    watermarks = {f"{table}/{kind.value}": key for (table, kind), key in service.watermarks.items()}
    save_json(service.s3, bucket, STATE, {"watermarks": watermarks})
    log.info("catch-up load finished", extra={"loaded": loaded})
    return loaded
