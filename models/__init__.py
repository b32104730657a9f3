"""salescast.models: the pure maths. No Kafka, no Faust, no argparse, no I/O beyond a model's artifacts.

The table values the worker keeps (`windows`, `useritem`, with their accessors),
the exactly-once positions (`positions`), the forecasters (`baseline`,
`forecast/`), the recommender (`cf/`), the promotion decisions (`promo/`), the
model store (`store`) and the rules for a version going live (`lifecycle`).
Imports nothing of salescast.stream or salescast's command line.
"""
