"""The models a worker serves: one registry entry per kind (`registry`), and the forecaster, recommender
and promoter wrappers that load a stored version, check it and score with it."""
