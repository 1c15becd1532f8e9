"""Lectern's shared core: data types, role protocols, settings, errors and device choice.

Every other package imports from here; nothing here imports from them.
"""

__version__ = "0.1.0"
