"""Utilities for dealing with KATCP types.

KATCP types (:class:`KatcpType` subclasses) convert between Python values and the byte
strings sent on the wire, and the decorators (:func:`request`, :func:`return_reply`,
:func:`inform`, ...) use them to unpack message arguments into handler arguments and to
pack handler results into reply messages.
"""

import concurrent.futures
import functools
import inspect
import numbers
import re
import struct
from typing import Any, Callable, Iterable, List, Optional, Sequence

from katcp.wire import types as wire_types
from katcp.wire.errors import FailReply
from katcp.wire.flags import DEFAULT_KATCP_MAJOR
from katcp.wire.handlers import convert_method_name
from katcp.wire.message import Message
from katcp.wire.text import as_str, show

_Handler = Callable[..., Any]
_Decorator = Callable[[_Handler], _Handler]

# ---------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------

class KatcpType:
    """Class representing a KATCP type.

    Sub-classes set the :attr:`name` attribute and either name the wire rule of their
    KATCP type (:mod:`katcp.wire.types`) or implement :meth:`encode` and :meth:`decode`;
    they override :meth:`check` to validate values further.

    Parameters
    ----------
    default : object, optional
        The default value for this type.
    optional : boolean, optional
        Whether the value is allowed to be None.
    multiple : boolean, optional
        Whether multiple values of this type are expected. Must be the last type
        parameter if this is True.
    """

    name = "unknown"
    #: The wire rule of the type (:mod:`katcp.wire.types`), if it has a plain one.
    _rule: Optional[wire_types.WireType] = None

    def __init__(self, default: Any = None, optional: bool = False,
                 multiple: bool = False) -> None:
        self._default = default
        self._optional = optional
        self._multiple = multiple
        rule = self._rule
        # Types that only name their rule call it directly: pack and unpack are hot.
        if rule is not None and type(self).encode is KatcpType.encode:
            self.encode = rule.encode  # type: ignore[method-assign]
        if rule is not None and type(self).decode is KatcpType.decode:
            self.decode = rule.decode  # type: ignore[method-assign, assignment]

    def encode(self, value: Any, major: int) -> bytes:
        """Format a checked, non-None value as bytes (with the type's wire rule)."""
        if self._rule is None:
            raise NotImplementedError
        return self._rule.encode(value, major)

    def decode(self, value: bytes, major: int) -> Any:
        """Parse a byte string into a value (with the type's wire rule)."""
        if self._rule is None:
            raise NotImplementedError
        return self._rule.decode(value, major)

    def get_default(self) -> Any:
        """Return the default value.

        Raise a ValueError if the value is not optional and there is no default.

        Returns
        -------
        default : object
            The default value.
        """
        if self._default is None and not self._optional:
            raise ValueError("No value given and no default available.")
        return self._default

    def check(self, value: Any, major: int) -> None:
        """Check whether the value is valid.

        Do nothing if the value is valid. Raise an exception if the value is not valid.
        Parameter major describes the KATCP major version to use when interpreting the
        validity of a value.

        Parameters
        ----------
        value : object
            The value to check.
        major : int
            Major version of KATCP to use when interpreting the value.
        """

    def pack(self, value: Any, nocheck: bool = False, major: int = DEFAULT_KATCP_MAJOR) -> bytes:
        """Return the value formatted as a KATCP parameter.

        Parameters
        ----------
        value : object
            The value to pack.
        nocheck : bool, optional
            Whether to check that the value is valid before packing it.
        major : int, optional
            Major version of KATCP to use when interpreting types.
            Defaults to latest implemented KATCP version.

        Returns
        -------
        packed_value : bytes
            The unescaped KATCP byte string representing the value.
        """
        if value is None:
            value = self.get_default()
            if value is None:
                raise ValueError("Cannot pack a None value.")
        if not nocheck:
            self.check(value, major)
        return self.encode(value, major)

    def unpack(self, packed_value: Optional[bytes], major: int = DEFAULT_KATCP_MAJOR) -> Any:
        """Parse a KATCP parameter into an object.

        Parameters
        ----------
        packed_value : bytes
            The unescaped KATCP byte string to parse into a value.
        major : int, optional
            Major version of KATCP to use when interpreting types.
            Defaults to latest implemented KATCP version.

        Returns
        -------
        value : object
            The value the KATCP string represented.
        """
        if packed_value is None:
            value = self.get_default()
        else:
            value = self.decode(packed_value, major)
        if value is not None:
            self.check(value, major)
        return value


class _RangeType(KatcpType):
    """Numbers with an optional inclusive [min, max] range."""

    _label: Any = None
    _fmt: Any = None

    def __init__(self, min: Any = None, max: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._min = min
        self._max = max

    def check(self, value: Any, major: int) -> None:
        """Check whether the value is between the minimum and maximum.
        """
        if self._min is not None and value < self._min:
            raise ValueError("%s %s is lower than minimum %s."
                             % (self._label, self._fmt % value, self._fmt % self._min))
        if self._max is not None and value > self._max:
            raise ValueError("%s %s is higher than maximum %s."
                             % (self._label, self._fmt % value, self._fmt % self._max))


class Int(_RangeType):
    """The KATCP integer type.

    Parameters
    ----------
    min : int
        The minimum allowed value. Ignored if not given.
    max : int
        The maximum allowed value. Ignored if not given.
    """

    name = "integer"
    _rule = wire_types.INTEGER
    _label = "Integer"
    _fmt = "%s"


class Float(_RangeType):
    """The KATCP float type (`min` and `max` as for :class:`Int`)."""

    name = "float"
    _rule = wire_types.FLOAT
    _label = "Float"
    _fmt = "%g"


class Bool(KatcpType):
    """The KATCP boolean type (``1`` for True and ``0`` for False)."""

    name = "boolean"
    _rule = wire_types.BOOLEAN


class Str(KatcpType):
    """The KATCP string type.

    Notes
    -----
    Unpacked (decoded) values are native strings (``str``). Packed (encoded) values are
    always byte strings, as this is what is sent on the wire.

    UTF-8 encoding is used when converting between text and byte strings. Thus ASCII
    values are fine, but arbitrary strings of bytes are not safe to use, and may raise
    an exception.

    For convenience, non-text types can be encoded. The object is converted to a string,
    and then to bytes. This is a one-way operation - when that byte string is decoded the
    original type will not be recovered.
    """

    name = "string"
    _rule = wire_types.STRING


class Discrete(Str):
    """The KATCP discrete type.

    Parameters
    ----------
    values : iterable of str
        List of the values the discrete type may accept.
    case_insensitive : bool
        Whether case-insensitive value matching should be used.
    """

    name = "discrete"
    _rule = wire_types.DISCRETE

    def __init__(self, values: Iterable[Any], case_insensitive: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Values may come from a generator, so materialise them once.
        self._values = [as_str(value) for value in values]
        self._case_insensitive = case_insensitive
        if case_insensitive:
            self._valid_values = frozenset(value.lower() for value in self._values)
        else:
            self._valid_values = frozenset(self._values)

    def check(self, value: Any, major: int) -> None:
        """Check whether the value in the set of allowed values.
        """
        text = as_str(value)
        if self._case_insensitive and isinstance(text, str):
            text = text.lower()
        if text not in self._valid_values:
            raise ValueError("Discrete value '%s' is not one of %s."
                             % (show(value), ", ".join(self._values)))


class DiscreteMulti(Discrete):
    """Discrete type which can accept multiple values.

    Its value is always a list.

    Parameters
    ----------
    values : list of str
        Set of allowed values.
    all_keyword : str, optional
        The string which represents the list of all allowed values.
    separator : str, optional
        The separator used in the packed value string.
    """

    name = "discretemulti"

    def __init__(self, values: Iterable[Any], all_keyword: str = "all",
                 separator: str = ", ", **kwargs: Any) -> None:
        super().__init__(values, **kwargs)
        self.all_keyword = all_keyword
        self.separator = separator
        # Joined with the bare separator, as katcp 0.9.3 packs ("a,b": a space would only
        # be escaped on the wire); split on it and stripped, so "a, b" parses too.
        self._split_on = separator.strip() or separator

    def encode(self, value: Any, major: int) -> bytes:
        """Join the values with the separator (without its surrounding spaces)."""
        return super().encode(self._split_on.join(as_str(item) for item in value), major)

    def decode(self, value: bytes, major: int) -> Any:
        """Split a packed value (or the all keyword) into a list of values."""
        text = super().decode(value, major)
        if text == self.all_keyword:
            return list(self._values)
        return [item.strip() for item in text.split(self._split_on)]

    def check(self, value: Any, major: int) -> None:
        """Check that each item in the value list is in the allowed set.
        """
        for item in value:
            super().check(item, major)


class Lru(KatcpType):
    """The KATCP lru type (``Sensor.LRU_NOMINAL`` or ``Sensor.LRU_ERROR``)."""

    name = "lru"
    _rule = wire_types.LRU
    LRU_NOMINAL = wire_types.LRU_NOMINAL
    LRU_ERROR = wire_types.LRU_ERROR
    LRU_VALUES = wire_types.LRU_VALUES
    LRU_CONSTANTS = wire_types.LRU_CONSTANTS


class Timestamp(KatcpType):
    """The KATCP timestamp type.

    Values are float seconds since the Unix epoch; on the wire they are seconds with six
    decimals for KATCP v5 and integer milliseconds for KATCP v4.
    """

    name = "timestamp"
    _rule = wire_types.TIMESTAMP


class TimestampOrNow(Timestamp):
    """KatcpType representing either a Timestamp or the special value for now.

    Floats are encoded as for :class:`katcp.kattypes.Timestamp`. The special value for
    now, :attr:`katcp.kattypes.TimestampOrNow.NOW`, is encoded as the string "now".
    """

    name = "timestamp_or_now"
    _rule = wire_types.TIMESTAMP_OR_NOW
    NOW = wire_types.NOW


class StrictTimestamp(KatcpType):
    """A timestamp that enforces the XXXX.YYY format for timestamps."""

    name = "strict_timestamp"
    _rule = wire_types.STRICT_TIMESTAMP

    def check(self, value: Any, major: int) -> None:
        """Check whether the value is positive.
        """
        if not isinstance(value, numbers.Real):
            raise ValueError("Strict timestamp %r is not a number." % (value,))
        if value < 0:
            raise ValueError("Strict timestamp %s may not be negative." % (value,))


class Struct(KatcpType):
    """KatcpType for parsing and packing values using the :mod:`struct` module.

    Parameters
    ----------
    fmt : str
        Format to use for packing and unpacking values. It is passed directly into
        :func:`struct.pack` and :func:`struct.unpack`.
    """

    name = "struct"

    def __init__(self, fmt: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fmt = fmt
        self._struct = struct.Struct(fmt)

    def encode(self, value: Any, major: int) -> bytes:
        """Pack a sequence of values with the struct format."""
        try:
            return self._struct.pack(*value)
        except (struct.error, TypeError) as exc:
            raise ValueError("Could not pack %r with format '%s': %s" % (value, self._fmt, exc))

    def decode(self, value: bytes, major: int) -> Any:
        """Unpack bytes into a tuple of values with the struct format."""
        try:
            return self._struct.unpack(value)
        except (struct.error, TypeError) as exc:
            raise ValueError("Could not unpack '%s' with format '%s': %s"
                             % (show(value), self._fmt, exc))


class Regex(Str):
    """String type that checks values using a regular expression.

    Parameters
    ----------
    regex : str or regular expression object
        Regular expression that values should match.
    """

    name = "regex"

    def __init__(self, regex: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(regex, str):
            self._pattern = regex
            self._compiled = re.compile(regex)
        else:
            self._pattern = regex.pattern
            self._compiled = regex

    def check(self, value: Any, major: int) -> None:
        """Check whether the value matches the regular expression.
        """
        if not self._compiled.match(as_str(value)):
            raise ValueError("Value '%s' does not match regex '%s'."
                             % (show(value), show(self._pattern)))


class Address(KatcpType):
    """The KATCP address type: a ``(host, port)`` tuple, port may be None.

    Note
    ----
    The address type was added in katcp 0.4.
    """

    name = "address"
    _rule = wire_types.ADDRESS
    NULL = wire_types.NULL_ADDRESS


class Parameter:
    """Wrapper for kattypes which holds parameter-specific information.

    Parameters
    ----------
    position : int
        The parameter's position (starts at 1)
    name : str
        The parameter's name (introspected)
    kattype : KatcpType object
        The parameter's kattype
    major : integer
        Major version of KATCP to use when interpreting types
    """

    __slots__ = ("position", "name", "_kattype", "major")

    def __init__(self, position: int, name: str, kattype: KatcpType, major: int) -> None:
        self.position = position
        self.name = name
        self._kattype = kattype
        self.major = major

    def pack(self, value: Any) -> bytes:
        """Pack the parameter using its kattype.

        Parameters
        ----------
        value : object
            The value to pack

        Returns
        -------
        packed_value : bytes
            The unescaped KATCP string representing the value.
        """
        return self._kattype.pack(value, major=self.major)

    def unpack(self, value: Optional[bytes]) -> Any:
        """Unpack the parameter using its kattype.

        Parameters
        ----------
        value : bytes
            The unescaped KATCP string to unpack.

        Returns
        -------
        value : object
            The unpacked value.

        Raises
        ------
        FailReply
            If the value is invalid; the message names the parameter.
        """
        try:
            return self._kattype.unpack(value, self.major)
        except ValueError as exc:
            raise FailReply("Error in parameter %d (%s): %s" % (self.position, self.name, exc))


# ---------------------------------------------------------------------------
# Packing and unpacking argument lists
# ---------------------------------------------------------------------------

def _check_multiple_is_last(types: Sequence[KatcpType]) -> None:
    for kattype in types[:-1]:
        if kattype._multiple:
            raise TypeError("Only the last parameter type can accept multiple arguments.")


def _takes_no_values(kattype: KatcpType) -> bool:
    """Whether an absent multiple value means no values rather than the default."""
    return kattype._optional and kattype._default is None


class _Unpacker:
    """Unpacks argument lists for a fixed list of types (built once per handler)."""

    __slots__ = ("_params", "_unpackers", "_major", "_multiple")

    def __init__(self, types: Sequence[KatcpType], argnames: Iterable[str],
                 major: int) -> None:
        _check_multiple_is_last(types)
        argnames = list(argnames)
        argnames += [""] * (len(types) - len(argnames))
        self._params = [Parameter(i + 1, argnames[i], kattype, major)
                        for i, kattype in enumerate(types)]
        self._unpackers = [kattype.unpack for kattype in types]
        self._major = major
        self._multiple = self._params[-1] if types and types[-1]._multiple else None

    def __call__(self, args: Sequence[Optional[bytes]]) -> List[Any]:
        if len(args) == len(self._unpackers):
            major = self._major
            try:
                return [unpack(arg, major) for unpack, arg in zip(self._unpackers, args)]
            except ValueError:
                # Unpacking is pure, so redo it via the Parameters to name the culprit.
                pass
        return self._unpack_slow(args)

    def _unpack_slow(self, args: Sequence[Optional[bytes]]) -> List[Any]:
        params = self._params
        count = len(params)
        nargs = len(args)
        last = self._multiple
        if nargs > count and last is None:
            raise FailReply("Too many parameters given.")
        values = [param.unpack(arg) for param, arg in zip(params, args)]
        if nargs < count:
            if last is not None and nargs == count - 1 and _takes_no_values(last._kattype):
                return values
            values.extend(param.unpack(None) for param in params[nargs:])
        for position in range(count, nargs):
            assert last is not None  # more args than types only with a multiple last type
            extra = Parameter(position + 1, last.name, last._kattype, last.major)
            values.append(extra.unpack(args[position]))
        return values


def unpack_types(types: Sequence[KatcpType], args: Sequence[Optional[bytes]],
                 argnames: Iterable[str], major: int) -> List[Any]:
    """Parse arguments according to types list.

    Parameters
    ----------
    types : sequence of kattypes
        The types of the arguments (in order).
    args : sequence of strings
        The arguments to parse.
    argnames : sequence of strings
        The names of the arguments.
    major : integer
        Major version of KATCP to use when packing types

    Returns
    -------
    unpacked_args : list
        List of args after unpacking to kattype objects

    Raises
    ------
    FailReply
        If there are too many arguments or one is invalid.
    """
    return _Unpacker(types, argnames, major)(args)


def pack_types(types: Sequence[KatcpType], args: Sequence[Any], major: int) -> List[bytes]:
    """Pack arguments according the the types list (the reverse of :func:`unpack_types`).

    Returns
    -------
    packed_args : list
        List of args after packing to byte strings
    """
    ntypes = len(types)
    nargs = len(args)
    multiple = ntypes > 0 and types[-1]._multiple
    if nargs > ntypes and not multiple:
        raise ValueError("Too many arguments to pack.")
    packed = [kattype.pack(arg, major=major) for kattype, arg in zip(types, args)]
    if nargs < ntypes:
        missing = types[nargs:]
        if multiple and nargs == ntypes - 1 and _takes_no_values(types[-1]):
            missing = ()
        packed.extend(kattype.pack(None, major=major) for kattype in missing)
    elif nargs > ntypes:
        last = types[-1]
        packed.extend(last.pack(arg, major=major) for arg in args[ntypes:])
    return packed


# ---------------------------------------------------------------------------
# Replies
# ---------------------------------------------------------------------------

_STATUS_STR = Str()
_FAIL_TYPES = (_STATUS_STR, _STATUS_STR)


class _ReplyMaker:
    """Builds reply messages for one handler's reply types (built once per handler)."""

    __slots__ = ("msgname", "_ok_types", "_ok_packers", "_major")

    def __init__(self, msgname: str, types: Sequence[KatcpType], major: int) -> None:
        self.msgname = msgname
        self._ok_types = (_STATUS_STR,) + tuple(types)
        self._ok_packers = [kattype.pack for kattype in self._ok_types]
        self._major = major

    def __call__(self, arguments: Any, req_msg: Any = None) -> Message:
        if isinstance(arguments, Message):
            return arguments
        status = arguments[0]
        if status == "ok" or status == b"ok":
            if len(arguments) == len(self._ok_packers):
                major = self._major
                packed = [pack(arg, False, major)
                          for pack, arg in zip(self._ok_packers, arguments)]
            else:
                packed = pack_types(self._ok_types, arguments, self._major)
        elif status == "fail" or status == b"fail":
            packed = pack_types(_FAIL_TYPES, arguments, self._major)
        else:
            raise ValueError("First returned value must be 'ok' or 'fail'.")
        if not isinstance(req_msg, Message):
            # No request message, or a stand-in such as a test's mock: named as it
            # says if it has a text name, else after the handler, and without an id,
            # as katcp 0.9.3 always did.
            name = getattr(req_msg, "name", None)
            return Message(Message.REPLY, name if isinstance(name, str) else self.msgname,
                           packed)
        # Answers the request (a handler may serve another name), echoing its id.
        reply = Message(Message.REPLY, req_msg.name, packed)
        reply.mid = req_msg.mid
        return reply


def make_reply(msgname: str, types: Sequence[KatcpType], arguments: Sequence[Any],
               major: int) -> Message:
    """Helper method for constructing a reply message from a list or tuple.

    Parameters
    ----------
    msgname : str
        Name of the reply message.
    types : list of kattypes
        The types of the reply message parameters (in order).
    arguments : list of objects
        The (unpacked) reply message parameters.
    major : integer
        Major version of KATCP to use when packing types

    Returns
    -------
    reply : Message
        The reply message.
    """
    return _ReplyMaker(msgname, types, major)(arguments)


def _is_future(result: Any) -> bool:
    # tornado/asyncio and concurrent.futures futures alike (no import of a loop here).
    return hasattr(result, "add_done_callback") and hasattr(result, "done")


def _is_async(result: Any) -> bool:
    return _is_future(result) or inspect.isawaitable(result)


async def _await_reply(reply_maker: "_ReplyMaker", arguments: Any, req_msg: Any) -> Message:
    return reply_maker(await arguments, req_msg)


def _resolve_reply(reply_maker: "_ReplyMaker", arguments: Any, req_msg: Any) -> Any:
    """The reply to arguments that come later, as a future of the same kind.

    A future already resolved gives a resolved future at once (as the coroutines of
    katcp 0.9.3 did); another awaitable gives a coroutine.
    """
    if not _is_future(arguments):
        return _await_reply(reply_maker, arguments, req_msg)
    get_loop = getattr(arguments, "get_loop", None)
    reply = (get_loop().create_future() if get_loop is not None
             else concurrent.futures.Future())

    def copy(done: Any) -> None:
        if done.cancelled():
            reply.cancel()
            return
        try:
            reply.set_result(reply_maker(done.result(), req_msg))
        except Exception as exc:
            reply.set_exception(exc)

    if arguments.done():
        copy(arguments)
    else:
        arguments.add_done_callback(copy)
    return reply


def async_make_reply(msgname: str, types: Sequence[KatcpType], arguments_future: Any,
                     major: int) -> Any:
    """Wrap future that will resolve with arguments needed by make_reply().

    Parameters are as for :func:`make_reply`, with `arguments_future` (a future or
    another awaitable) resolving to the arguments.

    Returns
    -------
    reply_future : Future or coroutine
        Resolves to the reply Message: a future of the kind of `arguments_future`
        (already resolved if it is), or a coroutine if that is another awaitable.
    """
    return _resolve_reply(_ReplyMaker(msgname, types, major), arguments_future, None)



# ---------------------------------------------------------------------------
# Decorators
# ---------------------------------------------------------------------------

def _handler_argnames(handler: _Handler, skip: int, count: int) -> List[str]:
    """Names of the handler's first `count` value parameters.

    Follows functools.wraps chains, so stacked decorators still see the original
    names. Positions past the named parameters take the ``*args`` name, if any.
    """
    try:
        parameters: Iterable[inspect.Parameter] = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        parameters = ()
    names = []
    varargs = ""
    for parameter in parameters:
        if parameter.kind == parameter.VAR_POSITIONAL:
            varargs = parameter.name
        elif parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            names.append(parameter.name)
    names = names[skip:skip + count]
    return names + [varargs] * (count - len(names))


def _wrap(wrapper: _Handler, handler: _Handler) -> _Handler:
    # functools.wraps also copies __dict__, so attributes set by the other decorators
    # (_concurrent_reply, request_timeout_hint, ...) survive any stacking order.
    return functools.wraps(handler)(wrapper)


def _unpacking(types: Sequence[KatcpType], include_msg: bool, major: int, with_req: bool,
               marker: Optional[str]) -> _Decorator:
    """The decorator that unpacks a message's arguments into a handler's parameters.

    The handler is called as ``handler(self, [req,] [msg,] *values)``.
    """
    _check_multiple_is_last(types)

    def decorator(handler: _Handler) -> _Handler:
        skip = 1 + with_req + include_msg
        unpack = _Unpacker(types, _handler_argnames(handler, skip, len(types)), major)
        if with_req and include_msg:
            def raw_handler(self: Any, req: Any, msg: Message) -> Any:
                return handler(self, req, msg, *unpack(msg.arguments))
        elif with_req:
            def raw_handler(self: Any, req: Any, msg: Message) -> Any:
                return handler(self, req, *unpack(msg.arguments))
        elif include_msg:
            def raw_handler(self: Any, msg: Message) -> Any:  # type: ignore[misc]
                return handler(self, msg, *unpack(msg.arguments))
        else:
            def raw_handler(self: Any, msg: Message) -> Any:  # type: ignore[misc]
                return handler(self, *unpack(msg.arguments))
        wrapped = _wrap(raw_handler, handler)
        if marker:
            setattr(wrapped, marker, True)
        return wrapped

    return decorator


def request(*types: KatcpType, include_msg: bool = False,
            major: int = DEFAULT_KATCP_MAJOR) -> _Decorator:
    """Decorator for request handler methods.

    The method being decorated should take a req argument followed by arguments matching
    the list of types. The decorator will unpack the request message into the arguments.

    Parameters
    ----------
    types : list of kattypes
        The types of the request message parameters (in order). A type with
        multiple=True has to be the last type.
    include_msg : bool, optional
        Pass the request message as the third parameter to the decorated request handler
        function (default is False).
    major : int, optional
        Major version of KATCP to use when interpreting types. Defaults to latest
        implemented KATCP version.

    Examples
    --------
    >>> class MyDevice(DeviceServer):
    ...     @request(Int(), Float(), Bool())
    ...     @return_reply(Int(), Float())
    ...     def request_myreq(self, req, my_int, my_float, my_bool):
    ...         '''?myreq my_int my_float my_bool'''
    ...         return ("ok", my_int + 1, my_float / 2.0)
    """
    return _unpacking(types, include_msg, major, True, "_request_decorated")


def inform(*types: KatcpType, include_msg: bool = False,
           major: int = DEFAULT_KATCP_MAJOR) -> _Decorator:
    """Decorator for inform handler methods.

    The method being decorated should take arguments matching the list of types. The
    decorator will unpack the inform message into the arguments. Parameters are as for
    :func:`request`, except that `include_msg` passes the message as the second
    parameter.

    Examples
    --------
    >>> class MyDeviceClient(katcp.client.AsyncClient):
    ...     @inform(Int(), Float())
    ...     def inform_myinf(self, my_int, my_float):
    ...         '''Handle #myinf <my_int> <my_float> inform received from server'''
    """
    return _unpacking(types, include_msg, major, False, "_inform_decorated")


def unpack_message(*types: KatcpType, include_msg: bool = False,
                   major: int = DEFAULT_KATCP_MAJOR) -> _Decorator:
    """Decorator that unpacks katcp.Messages to function arguments.

    The method being decorated should take arguments matching the list of types. The
    decorator will unpack the message into the arguments. Parameters are as for
    :func:`inform`.

    Examples
    --------
    >>> class MyClient(DeviceClient):
    ...     @unpack_message(Str(), Int(), Float(), Bool())
    ...     def reply_myreq(self, status, my_int, my_float, my_bool):
    ...         print('myreq replied with ', (status, my_int, my_float, my_bool))
    """
    return _unpacking(types, include_msg, major, False, None)


def return_reply(*types: KatcpType, major: int = DEFAULT_KATCP_MAJOR) -> _Decorator:
    """Decorator for returning replies from request handler methods.

    The method being decorated should return an iterable of result values. If the first
    value is 'ok', the decorator will check the remaining values against the specified
    list of types (if any). If the first value is 'fail', there must be only one
    remaining parameter, and it must be a string describing the failure. In both cases,
    the decorator will pack the values into a reply message.

    A handler may also return a Message (passed through unchanged), or a Future or
    coroutine resolving to any of these; the decorated handler then returns a Future
    (or, for a coroutine, an awaitable) that resolves to the reply Message.

    Parameters
    ----------
    types : list of kattypes
        The types of the reply message parameters (in order).
    major : int, optional
        Major version of KATCP to use when interpreting types. Defaults to latest
        implemented KATCP version.

    Examples
    --------
    >>> class MyDevice(DeviceServer):
    ...     @request(Int())
    ...     @return_reply(Int(), Float())
    ...     def request_myreq(self, req, my_int):
    ...         return ("ok", my_int + 1, my_int * 2.0)
    """
    _check_multiple_is_last(types)

    def decorator(handler: _Handler) -> _Handler:
        if not handler.__name__.startswith("request_"):
            raise ValueError("This decorator can only be used on a katcp request handler "
                             "(method name should start with 'request_').")
        make = _ReplyMaker(convert_method_name("request_", handler.__name__), types, major)

        def raw_handler(self: Any, req: Any, *args: Any) -> Any:
            result = handler(self, req, *args)
            req_msg = getattr(req, "msg", None)
            if result.__class__ is tuple or not _is_async(result):
                return make(result, req_msg)
            return _resolve_reply(make, result, req_msg)

        wrapped = _wrap(raw_handler, handler)
        wrapped._return_reply_decorated = True  # type: ignore[attr-defined]
        return wrapped

    return decorator


def send_reply(*types: KatcpType, major: int = DEFAULT_KATCP_MAJOR) -> _Decorator:
    """Decorator for sending replies from request callback methods.

    This decorator constructs a reply from a list or tuple returned from a callback
    method, but unlike the return_reply decorator it also sends the reply rather than
    returning it.

    The list/tuple returned from the callback method must have req (a
    ClientRequestConnection instance) as its first item, followed by the reply status
    and values as for :func:`return_reply`. The request message held by req gives the
    reply its name and message id. Parameters are as for :func:`return_reply`.

    Examples
    --------
    >>> class MyDevice(DeviceServer):
    ...     @send_reply(Int(), Float())
    ...     def my_callback(self, req):
    ...         return (req, "ok", 5, 2.0)
    """
    _check_multiple_is_last(types)

    def decorator(handler: _Handler) -> _Handler:
        # Named after the request that req holds.
        make = _ReplyMaker("", types, major)

        def raw_handler(self: Any, *args: Any) -> None:
            reply_args = handler(self, *args)
            req = reply_args[0]
            req.reply_with_message(make(reply_args[1:], req.msg))

        return _wrap(raw_handler, handler)

    return decorator


def concurrent_reply(handler: _Handler) -> _Handler:
    """Decorator for concurrent async request handlers.

    By default async request handlers that return a Future are serialised
    per-connection, i.e. until the most recent handler resolves its future, the next
    message will not be read from the client stream. A handler decorated with this
    decorator allows the next message to be read before it has resolved its future,
    allowing multiple requests from a single client to be handled concurrently. This is
    similar to raising AsyncReply.

    Parameters
    ----------
    handler : function
        The request handler.

    Returns
    -------
    handler : function
        The same handler, marked with ``_concurrent_reply = True``.

    Examples
    --------
    >>> class MyDevice(DeviceServer):
    ...     @return_reply(Int())
    ...     @concurrent_reply
    ...     @tornado.gen.coroutine
    ...     def request_myreq(self, req):
    ...         '''A slow request'''
    ...         result = yield self.slow_operation()
    ...         return ("ok", result)
    """
    handler._concurrent_reply = True  # type: ignore[attr-defined]
    return handler


def request_timeout_hint(timeout_hint: Optional[float]) -> _Decorator:
    """Decorator; add recommended client timeout hint to a request for request.

    Useful for requests that take longer than average to reply. Hint is provided to
    clients via ?request-timeout-hint. Note this is only exposed if the device server
    sets the protocol version to KATCP v5.1 or higher and enables the
    REQUEST_TIMEOUT_HINTS flag in its PROTOCOL_INFO class attribute

    Parameters
    ----------
    timeout_hint : float (seconds) or None
        How long the decorated request should reasonably take to reply. No timeout hint
        if None, similar to never using the decorator, provided for consistency.

    Examples
    --------
    >>> class MyDevice(DeviceServer):
    ...     @return_reply(Int())
    ...     @request_timeout_hint(15)  # Set request timeout hint to 15 seconds
    ...     @tornado.gen.coroutine
    ...     def request_myreq(self, req):
    ...         '''A slow request'''
    ...         result = yield self.slow_operation()
    ...         return ("ok", result)
    """
    if timeout_hint is not None:
        timeout_hint = float(timeout_hint)

    def decorator(handler: _Handler) -> _Handler:
        handler.request_timeout_hint = timeout_hint  # type: ignore[attr-defined]
        return handler

    return decorator


def has_katcp_protocol_flags(protocol_flags: Iterable[Any]) -> _Decorator:
    """Decorator; only include handler if server has these protocol flags.

    Useful for including default handler implementations for KATCP features that are
    only present when certain server protocol flags are set.

    Parameters
    ----------
    protocol_flags : list of str
        Flags (e.g. ``ProtocolFlags.MULTI_CLIENT``) the server must have.

    Examples
    --------
    >>> class MyDevice(DeviceServer):
    ...     '''This device server will expose ?myreq'''
    ...     PROTOCOL_INFO = katcp.core.ProtocolFlags(5, 0, [
    ...         katcp.core.ProtocolFlags.MULTI_CLIENT])
    ...
    ...     @has_katcp_protocol_flags([katcp.core.ProtocolFlags.MULTI_CLIENT])
    ...     def request_myreq(self, req, msg):
    ...         '''A request that requires multi-client support'''
    """
    protocol_flags = list(protocol_flags)

    def decorator(handler: _Handler) -> _Handler:
        handler._has_katcp_protocol_flags = protocol_flags  # type: ignore[attr-defined]
        return handler

    return decorator


def minimum_katcp_version(major: int, minor: int = 0) -> _Decorator:
    """Decorator; exclude handler if server's protocol version is too low.

    Useful for including default handler implementations for KATCP features that are
    only present in certain KATCP protocol versions

    Parameters
    ----------
    major : int
        Minimum KATCP major version.
    minor : int, optional
        Minimum KATCP minor version.

    Examples
    --------
    >>> class MyDevice(DeviceServer):
    ...     '''This device server will expose ?myreq'''
    ...     PROTOCOL_INFO = katcp.core.ProtocolFlags(5, 1)
    ...
    ...     @minimum_katcp_version(5, 1)
    ...     def request_myreq(self, req, msg):
    ...         '''A request that should only be present for KATCP >v5.1'''
    """
    version = (major, minor)

    def decorator(handler: _Handler) -> _Handler:
        handler._minimum_katcp_version = version  # type: ignore[attr-defined]
        return handler

    return decorator
