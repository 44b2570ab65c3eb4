"""The one exception type for a user's mistake: the entry scripts print it as one line, no traceback."""


class UsageError(Exception):
    """A bad flag, a missing checkout or missing weights: the message says what to do."""
