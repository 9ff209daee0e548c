"""The one exception type the CLI turns into a one-line error and exit code 2."""


class HarnessError(Exception):
    """A problem the user can fix (bad input, missing tool, no permission).

    The message is one line: what is wrong, and how to fix it.
    """
