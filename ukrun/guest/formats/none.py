"""The ``none`` format: no network words (a guest that configures itself, or is told some other
way)."""
from __future__ import annotations


def none(nets, dns, template=None) -> tuple:
    return ()


def notes(format: str, nets: tuple, dns) -> list:
    return []  # leaving everything out is what was asked
