"""drip: email-driven drip campaigns for goal-based training programs."""

__version__ = "0.1.0.dev0"
