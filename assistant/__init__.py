"""Knee Assistant: answers knee questions strictly from a curated collection.

Importing the package is cheap: no torch, no model. Heavy parts load on
first use (see :mod:`assistant.embedding`).
"""

__version__ = "0.1.0"
