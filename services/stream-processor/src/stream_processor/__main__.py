import sys

if sys.argv[1:2] == ["correct"]:
    from stream_processor.correction import main

    sys.exit(main(sys.argv[2:]))

from stream_processor.job import run

run()
