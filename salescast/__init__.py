"""salescast: real-time sales forecasting and promotions on Kafka.

This package is the command line and the offline tools (training, evaluation,
simulation, the local broker, the demo); the worker is `salescast.stream` and
the pure maths `salescast.models`, installed from the stream/ and models/ folders.
"""

__version__ = "0.1.0"
