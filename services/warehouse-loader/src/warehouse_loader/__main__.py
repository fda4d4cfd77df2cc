from warehouse_loader.service import run

run()
