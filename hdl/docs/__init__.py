"""Tools that write the repository's documentation from code (``python -m hdl.docs.config_readme``)."""
