"""The composition root: the service that wires the components, the REST API, the CLI."""
