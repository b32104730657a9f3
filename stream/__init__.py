"""The Faust application: topics, tables, agents, web views and metrics.

Import `salescast.stream.app` to build the app from the environment's settings; the
agents, tables and views register themselves on import (`salescast.stream.agents`,
`salescast.stream.views`), which `salescast worker` does.
"""
