"""Collaborative filtering on the user-item matrix: pure numpy/scipy, no Kafka, no I/O.

- `itemknn`: the item-based recommender (fit, score, recommend) the worker serves;
- `candidates`: the bounded per-SKU index of the users with the strongest affinity;
- `ranking`: the time split and the top-k metrics it is judged by.
"""
