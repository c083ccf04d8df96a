"""The `camstream` command, the top layer: it may import every component, nothing imports it.

``main`` builds the command line; each component contributes its own
subcommands and is imported only when one of its commands runs.
"""
