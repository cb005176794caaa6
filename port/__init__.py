"""Ports this project's orphan fix into a Sentry checkout: ``python -m port CHECKOUT``.

Each fixer finds its site by structure (function names, the call it replaces, the order of
statements), never by line number, and refuses when a site is not found: nothing is written
unless every site is found. A site already ported is left alone, so a second run changes nothing.
"""
