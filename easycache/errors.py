"""The one exception type for a user's mistake: the entry scripts print it as one line, no traceback."""


class UsageError(Exception):
    """A bad flag, a missing checkout or missing weights: the message says what to do."""


class RunFailed(Exception):
    """A run that went on to the end but could not make everything (videos that failed every try):
    the entries print it as one line and exit 1; what was written stays."""
