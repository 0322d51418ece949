"""The one exception type that entry points turn into a single clear error line, that line's maker
for Hydra's multi-line composition errors, and the wrapper every entry point runs under."""
import functools
import logging
import sys


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


INTERRUPTED = {  # what Ctrl-C leaves behind, per entry point
    "harness-train": "the cell is recorded as failed and reruns from its start",
    "harness-study": "finished cells are kept; rerun the same command to resume",
}


def entry_point(prog: str):
    """Run an entry point so that Ctrl-C is one line and exit status 130 (not a traceback), and a
    third-party log handler that cannot write (a full disk) stays silent: the harness's own error
    line says what failed, instead of logging's '--- Logging error ---' tracebacks."""
    def wrap(main):
        @functools.wraps(main)
        def run(*args, **kwargs):
            logging.raiseExceptions = False
            try:
                return main(*args, **kwargs)
            except KeyboardInterrupt as e:
                what = INTERRUPTED.get(prog)
                if prog == "harness-train" and not getattr(e, "recorded", False):
                    what = "no cell had started, nothing was recorded"
                print(f"\n{prog}: interrupted" + (f"; {what}" if what else ""), file=sys.stderr)
                sys.exit(130)
        return run
    return wrap
