"""Claiming due email, sending it through a transport, and the built-in mail catcher."""
