"""Settings for every test of the workspace, before any test module starts a Spark session."""

from __future__ import annotations

import os
import sys

# Spark's Python workers (a Python data source's reads, UDFs) run PYSPARK_PYTHON; without it
# Spark starts the system `python3`, which lacks the workspace's packages. Whichever test makes
# the shared Spark session first, its workers run this interpreter.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
