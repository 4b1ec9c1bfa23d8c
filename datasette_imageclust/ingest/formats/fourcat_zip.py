"""(to be written)"""
from __future__ import annotations

from .base import Format

FORMATS: list[Format] = []
