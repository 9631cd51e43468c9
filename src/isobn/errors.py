"""The one exception type the CLI turns into a one-line message and exit code 2."""


class UserError(Exception):
    """Bad input from the user: the message names the problem and the fix, on one line."""


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of `error`'s message (cut to `limit` characters), without its final
    full stop, to quote inside a one-line UserError; the exception's type name if it has none."""
    lines = str(error).strip().splitlines()
    return lines[0][:limit].rstrip(".") if lines else type(error).__name__
