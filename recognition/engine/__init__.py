"""Framework-free recognition engine: image bytes in, ImageNet labels out.

Nothing in this package imports Django, so the CLI, the web app, benchmarks and tests
all share one implementation.
"""
