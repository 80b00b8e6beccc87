"""Displays: each is one object with a text rendering (``__repr__``, for
terminals) and an HTML rendering (``_repr_html_``, kept in saved notebooks)."""
