"""`salescast evaluate`: the forecaster, the recommender and the promotions, each against baselines on
held-out time, on a simulated shop, an events file or public data."""
