"""The chat widget and admin page, served by the API as static files."""
