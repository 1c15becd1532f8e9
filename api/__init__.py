"""Lectern's entry points: the service that wires components, the CLI and (later) REST."""
