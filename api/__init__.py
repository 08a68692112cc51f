"""The HTTP API: a second thin door beside the command line, over the same client layer (services/)."""
