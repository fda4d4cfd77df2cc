from ingest_api.main import run

run()
