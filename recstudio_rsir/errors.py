"""The one exception type the plugin raises for bad input.

The command line turns a :class:`UserError` into a single line on stderr and exit status 2, so
every message must name the file/line or option at fault and, where it helps, the accepted values.
"""


class UserError(Exception):
    """Bad input from the user (file, option, model or dataset name)."""
