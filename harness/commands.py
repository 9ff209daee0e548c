"""Sub-commands other than ``parse``; filled in as the runners land."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the runner sub-commands to the CLI."""
