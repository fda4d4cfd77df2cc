from ingest_api.main import run

# Guarded: the worker processes (ingest_api.workers) are spawned, and import this module.
if __name__ == "__main__":
    run()
