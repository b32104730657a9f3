"""The simulated shop: a generator of orders, clicks and inventory with a known truth (demand, promotion
response), for the demo, the evaluations and the tests."""
