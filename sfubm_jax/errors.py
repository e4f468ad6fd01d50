"""User-facing errors.

A `UserError` is a problem with the user's input (a missing file, a malformed row, a
config field that does not exist, a checkpoint that does not fit). `main` prints its
message as one line and exits non-zero; no traceback is shown for it.
"""


class UserError(Exception):
  """A problem the user can fix; the message names the problem and the fix."""
