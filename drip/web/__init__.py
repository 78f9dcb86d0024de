"""The link pages, the catcher's inbox and the owners' dashboard."""
