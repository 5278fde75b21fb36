"""DeviceLogger: KATCP #log informs to every client, and Python logging."""

import logging
from collections.abc import Mapping
from typing import Any, Callable, Optional, Union

from katcp.core import Message
from katcp.wire.text import readable


def _log_at(level: int, method_name: str, what: str) -> Callable[..., None]:
    """A DeviceLogger method that logs at `level`."""
    def log_at_level(self: "DeviceLogger", msg: str, *args: Any, name: Optional[str] = None,
                     timestamp: Optional[float] = None, exc_info: Any = None,
                     stack_info: bool = False, stacklevel: int = 1,
                     extra: Optional[Mapping[str, Any]] = None) -> None:
        # One frame more than log(): the Python record names this method's caller.
        self.log(level, msg, *args, name=name, timestamp=timestamp, exc_info=exc_info,
                 stack_info=stack_info, stacklevel=stacklevel + 1, extra=extra)
    log_at_level.__name__ = method_name
    log_at_level.__qualname__ = "DeviceLogger." + method_name
    log_at_level.__doc__ = "Log %s message; the arguments are those of :meth:`log`." % what
    return log_at_level


class DeviceLogger:
    """Object for logging messages from a DeviceServer.

    Log messages are logged at a particular level and under a particular name. Names use
    dotted notation to form a virtual hierarchy of loggers with the device.

    Parameters
    ----------
    device_server : DeviceServerBase object
        The device server this logger should use for sending out logs.
    root_logger : str
        The name of the root logger.
    python_logger : logging.Logger object, optional
        Python logger that also receives the messages; ?log-level sets its level.

    """

    # Level values are indexes into LEVELS.
    ALL, TRACE, DEBUG, INFO, WARN, ERROR, FATAL, OFF = range(8)

    LEVELS = ["all", "trace", "debug", "info", "warn", "error", "fatal", "off"]

    PYTHON_LEVEL = {ALL: logging.NOTSET, TRACE: 0, DEBUG: logging.DEBUG, INFO: logging.INFO,
                    WARN: logging.WARN, ERROR: logging.ERROR, FATAL: logging.FATAL,
                    OFF: logging.FATAL + 10}

    @classmethod
    def _python_level(cls, level: int) -> int:
        # Not 0 for trace and all: a logger of level 0 (logging.NOTSET) defers to its
        # parent's level (warning, say), and a record of level 0 passes no logger that
        # has a level of its own; 1 is the most verbose level Python's logging has.
        return cls.PYTHON_LEVEL[level] or 1

    def __init__(self, device_server: Any, root_logger: str = "root",
                 python_logger: Optional[logging.Logger] = None) -> None:
        self._device_server = device_server
        self._python_logger = python_logger
        self._log_level = self.WARN
        self._root_logger_name = root_logger

    def level_name(self, level: Optional[int] = None) -> str:
        """Return the name of logging level constant `level` (default: the current level)."""
        return self.LEVELS[self._log_level if level is None else level]

    def level_from_name(self, level_name: Union[str, bytes]) -> int:
        """Return the level constant for a given name.

        If the level_name is not known, raise a ValueError.

        Parameters
        ----------
        level_name : str or bytes
            The logging level name whose logging level constant to retrieve.

        Returns
        -------
        level : logging level constant
            The logging level constant associated with the name.

        """
        level_name = readable(level_name)
        try:
            return self.LEVELS.index(level_name)
        except ValueError:
            raise ValueError("Unknown logging level name '%s'" % (level_name,)) from None

    def set_log_level(self, level: int) -> None:
        """Set the logging level.

        Parameters
        ----------
        level : logging level constant
            The value to set the logging level to.

        Raises
        ------
        KeyError
            If `level` is none of the constants (the level is left as it was).

        """
        # Looked up first: a level that is none of the constants raises KeyError and
        # leaves the logger as it was.
        python_level = self._python_level(level)
        self._log_level = level
        if self._python_logger is not None:
            self._python_logger.setLevel(python_level)

    def set_log_level_by_name(self, level_name: Union[str, bytes]) -> None:
        """Set the logging level using a level name.

        Parameters
        ----------
        level_name : str or bytes
            The name of the logging level.

        """
        self.set_log_level(self.level_from_name(level_name))

    def log(self, level: int, msg: str, *args: Any, name: Optional[str] = None,
            timestamp: Optional[float] = None, exc_info: Any = None, stack_info: bool = False,
            stacklevel: int = 1, extra: Optional[Mapping[str, Any]] = None) -> None:
        """Log a message and inform all clients.

        Parameters
        ----------
        level : logging level constant
            The level to log the message at.
        msg : str
            The text format for the log message.
        args : list of objects
            Arguments to pass to log format string. Final message text is created
            using: msg % args.
        name : str, optional
            The name of the logger to log the message to (default: the root logger).
            A keyword argument.
        timestamp : float, optional
            Seconds since the Unix epoch (default: now). A keyword argument.
        exc_info, stack_info, stacklevel, extra : optional
            As for :meth:`logging.Logger.log`, and passed on to the server's Python
            logger (keyword arguments): ``exc_info=True`` in an ``except`` block puts the
            traceback in the Python log record. The ``#log`` inform carries the message
            alone, never a traceback or a stack. `stacklevel` counts from the caller of
            this method (or of :meth:`error` and the others), as Python's does.

        """
        if self._python_logger is not None:
            python_msg = msg if timestamp is None else "msg=%s timestamp=%.2f" % (msg, timestamp)
            # One frame more: the record names the caller of this method, not this method.
            self._python_logger.log(self._python_level(level), python_msg, *args,
                                    exc_info=exc_info, stack_info=stack_info,
                                    stacklevel=stacklevel + 1, extra=extra)
        if level >= self._log_level:
            if name is None:
                name = self._root_logger_name
            # One mapping is taken whole, for "%(name)s", as Python's logging does.
            values: Any = args[0] if (len(args) == 1 and isinstance(args[0], Mapping)
                                      and args[0]) else args
            try:
                # Formatted without arguments too, as 0.9.3 did: "95%%" is sent as "95%".
                inform_msg = msg % values
            except (TypeError, ValueError, KeyError):
                # A log call never raises (as with Python's logging): the text as given.
                inform_msg = "%s %s" % (msg, args) if args else msg
            self._device_server.mass_inform(self._device_server.create_log_inform(
                self.level_name(level), inform_msg, name, timestamp=timestamp))

    trace = _log_at(TRACE, "trace", "a trace")
    debug = _log_at(DEBUG, "debug", "a debug")
    info = _log_at(INFO, "info", "an info")
    warn = _log_at(WARN, "warn", "a warning")
    error = _log_at(ERROR, "error", "an error")
    fatal = _log_at(FATAL, "fatal", "a fatal error")

    @classmethod
    def log_to_python(cls, logger: logging.Logger, msg: Message) -> None:
        """Log a KATCP logging message to a Python logger.

        Parameters
        ----------
        logger : logging.Logger object
            The Python logger to log the given message to.
        msg : Message object
            The #log message to create a log entry from.

        """
        level, timestamp, name, message = [readable(arg) for arg in msg.arguments[:4]]
        try:
            python_level = cls._python_level(cls.LEVELS.index(level))
        except ValueError:
            python_level = logging.INFO
        logger.log(python_level, "%s %s: %s", timestamp, name, message)


