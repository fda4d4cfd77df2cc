from stream_processor.job import run

run()
