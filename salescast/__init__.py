"""salescast: real-time sales forecasting and promotions on Kafka."""

__version__ = "0.1.0"
