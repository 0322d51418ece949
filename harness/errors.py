"""The one exception type that entry points turn into a single clear error line, that line's maker
for Hydra's multi-line composition errors, and the wrapper every entry point runs under."""
import functools
import logging
import re
import sys
from pathlib import Path


class HarnessError(Exception):
    """Bad input or configuration; the message is shown to the user as one line."""


class Diverged(HarnessError):
    """A loss became NaN or Inf during training; the message names the step."""


def is_config_error(e: BaseException) -> bool:
    """A Hydra or OmegaConf composition error (unknown option or key, wrong type): bad input that
    entry points report with `one_line`, where any other exception is a bug to show in full."""
    return type(e).__module__.split(".")[0] in ("hydra", "omegaconf")


def one_line(e: BaseException, search: tuple = ()) -> str:
    """A composition error as one line naming the key and, found in the `search` folders, the file."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[0] if lines else type(e).__name__
    raised = re.match(r"In '([^']+)': \w+ raised while composing config:$", text)
    if raised:  # Hydra hides the detail (the unknown key, its full key) on the following lines
        where = raised.group(1)
        found = next((f"{d}/{where}.yaml" for d in search if (Path(d) / f"{where}.yaml").is_file()), f"{where}.yaml")
        key = next((ln.partition(":")[2].strip() for ln in lines if ln.startswith("full_key:")), "")
        detail = lines[1] if len(lines) > 1 else type(e.__context__).__name__
        return f"{found}: {detail}" + (f" (key {key})" if key else "")
    if "Available options" in str(e):
        options = lines[2:lines.index("Config search path:")] if "Config search path:" in lines else lines[2:]
        text += " (options: " + ", ".join(options) + ")"
    cause = e.__cause__
    if cause is not None and str(cause).strip():
        text += ": " + str(cause).strip().splitlines()[0]
    return text


PREEMPTED_EXIT = 143  # 128 + SIGTERM, as a process killed by it: SLURM requeues the job, the rerun resumes
INTERRUPTED = {  # what Ctrl-C leaves behind, per entry point
    "harness-train": "the cell is recorded as failed and reruns from its last checkpoint, or its start",
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
            except BaseException as e:
                if type(e).__name__ != "Preempted":  # train/checkpoint.py: SIGTERM or SIGUSR1, checkpoint written
                    raise
                print(f"{prog}: stopped by {e}", file=sys.stderr)
                sys.exit(PREEMPTED_EXIT)
        return run
    return wrap
