"""The one exception type that means "the user gave us something we cannot use".

Library code raises :class:`ChatrnnError` with a one-line, actionable message; the CLI turns it into
click's error output (one line on stderr, exit status 1) and the TUI into a notification. Anything
else escaping is a bug and keeps its traceback.
"""


class ChatrnnError(Exception):
    """A user-facing error: bad input, missing checkpoint, unusable corpus."""
