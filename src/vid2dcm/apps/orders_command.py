"""Compatibility: the order commands now live in vid2dcm.apps.cli.orders; this name stays for
code that builds its own Typer app with register(app)."""

from vid2dcm.apps.cli.orders import ORDERS_FILE, register

__all__ = ["ORDERS_FILE", "register"]
