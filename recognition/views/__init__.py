"""Server-rendered pages: thin wrappers around the services and selectors."""
