"""Exceptions and warnings of the package.

:class:`InputError` marks a problem with what the user gave (data, options, files): the command
line exits with code 2 for it and with code 1 for anything else, which is then a failure of the
package, not of its input. It subclasses ``ValueError`` so that ``except ValueError`` keeps working.
"""

from __future__ import annotations


class InputError(ValueError):
    """The user's input (data, an option, a file) cannot be used; the message says what to do."""


class NotPositiveDefiniteWarning(UserWarning):
    """The information matrix is not positive definite: standard errors are not meaningful."""
