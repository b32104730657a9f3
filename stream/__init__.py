"""salescast.stream: the worker.

`core/` is its logic without Faust (the agents, replay, training and evaluation
all call it), `serving/` the models it serves, `delivery/` how its records get
out exactly once, and the Faust wiring sits on top: `app`, `topics`, `tables`,
`agents/`, `views`, `metrics`, `faust_fixes`. `worker.run` starts it (what
`salescast worker` calls). Imports salescast.models, never the command line.
"""
