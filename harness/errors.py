"""The one exception type that entry points turn into a single clear error line."""


class HarnessError(Exception):
    """Bad input or configuration; the message is shown to the user as one line."""


class Diverged(HarnessError):
    """A loss became NaN or Inf during training; the message names the step."""
