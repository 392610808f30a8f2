"""Confman's operator command line, `confctl`, and (later) the Python client it is built on."""

__version__ = "0.1.0"
