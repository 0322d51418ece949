"""The one exception type that entry points turn into a single clear error line, and that line's
maker for Hydra's multi-line composition errors."""


class HarnessError(Exception):
    """Bad input or configuration; the message is shown to the user as one line."""


class Diverged(HarnessError):
    """A loss became NaN or Inf during training; the message names the step."""


def is_config_error(e: BaseException) -> bool:
    """A Hydra or OmegaConf composition error (unknown option or key, wrong type): bad input that
    entry points report with `one_line`, where any other exception is a bug to show in full."""
    return type(e).__module__.split(".")[0] in ("hydra", "omegaconf")


def one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[0] if lines else type(e).__name__
    if "Available options" in str(e):
        options = lines[2:lines.index("Config search path:")] if "Config search path:" in lines else lines[2:]
        text += " (options: " + ", ".join(options) + ")"
    cause = e.__cause__
    if cause is not None and str(cause).strip():
        text += ": " + str(cause).strip().splitlines()[0]
    return text
