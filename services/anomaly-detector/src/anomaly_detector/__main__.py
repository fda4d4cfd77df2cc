from anomaly_detector.service import run

run()
