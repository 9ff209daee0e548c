"""The exception types the CLI turns into a one-line error and exit code 2 (125 for :class:`BuildFailed`)."""


class HarnessError(Exception):
    """A problem the user can fix (bad input, missing tool, no permission).

    The message is one line: what is wrong, and how to fix it.
    """


class BuildFailed(HarnessError):
    """A kernel source tree does not build (compiler or linker error).

    Exit code 125, which ``git bisect run`` reads as "this revision cannot be tested: skip it".
    """

    exit_code = 125
