import sys

if len(sys.argv) > 1:
    from warehouse_loader.replay import main

    sys.exit(main(sys.argv[1:]))

from warehouse_loader.service import run

run()
