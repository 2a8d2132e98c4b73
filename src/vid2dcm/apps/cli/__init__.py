"""The vid2dcm command line, one module per family of commands:

main (the app, the command list, failures -> one line + exit code), codes (the exit-code table),
options (shared options and the checks run before any work), output (stdout/stderr, JSON,
progress), inspect (probe, info, extract, validate), convert (convert, sample), deliver (echo,
send, worklist), service (serve, worker, gateway, token, watch), doctor.
"""

from vid2dcm.apps.cli.main import COMMANDS, app, main

__all__ = ["COMMANDS", "app", "main"]
