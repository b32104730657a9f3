"""Promotion decisions, pure: when (policy), how deep (elasticity, policy), to whom (audience),
within which limits (guardrails), and whether it worked (attribution). No Kafka, no I/O."""
