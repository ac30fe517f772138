"""The one exception type that means "the user gave bad input".

The CLI turns a `UserError` into its message on stderr and exit code 2, never a traceback.
Raise it for anything the user can fix (a bad YAML key, a missing column, an unreadable file);
let genuine bugs raise whatever they raise.
"""


class UserError(ValueError):
    """Bad input from the user: a config key, a file, a column. The message says how to fix it."""
