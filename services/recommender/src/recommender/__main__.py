from recommender.main import run

run()
