"""The handler decorators of :mod:`katcp.kattypes`, and the packing and unpacking of
argument lists that they do with the types.
"""

import functools
import inspect
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from katcp.kattypes.types import KatcpType, Parameter, Str, _RangeType, planned
from katcp.wire.errors import FailReply, KatcpSyntaxError
from katcp.wire.flags import DEFAULT_KATCP_MAJOR
from katcp.wire.handlers import convert_method_name
from katcp.wire.message import Message, check_name, message_from_parts
from katcp.wire.util import own_methods, transformed_future, uses_own

_Handler = Callable[..., Any]
_Decorator = Callable[[_Handler], _Handler]


# ---------------------------------------------------------------------------
# Packing and unpacking argument lists
# ---------------------------------------------------------------------------

def _check_multiple_is_last(types: Sequence[KatcpType]) -> None:
    for kattype in types[:-1]:
        if kattype._multiple:
            raise TypeError("Only the last parameter type can accept multiple arguments.")


def _packs_to_nothing(kattype: KatcpType) -> bool:
    """Whether a multiple last type packs no values, not its default, when none are given.

    Only for packing: unpacking gives each missing argument its ``unpack(None)``, as
    katcp 0.9.3 does. 0.9.3 raised here ("Cannot pack a None value.").
    """
    return kattype._optional and kattype._default is None


# The methods of KatcpType that the plain packing and unpacking below do without calling.
_OWN_UNPACK = own_methods(KatcpType, "unpack")
_OWN_PACK = own_methods(KatcpType, "pack")
_OWN_CHECK = own_methods(KatcpType, "check")
_OWN_RANGE_CHECK = own_methods(_RangeType, "check")
# Message's own, which formats packed bytes as they are (replies skip its call).
_OWN_FORMAT_ARGUMENT = Message.format_argument

_Check = Optional[Callable[[Any, int], None]]


def _plain_check(kattype: KatcpType) -> _Check:
    """The type's check, or None where it checks nothing: KatcpType's, and that of a
    number type given neither bound (bounds are given when the type is made)."""
    if uses_own(kattype, _OWN_CHECK):
        return None
    if (uses_own(kattype, _OWN_RANGE_CHECK) and kattype._min is None  # type: ignore[attr-defined]
            and kattype._max is None):  # type: ignore[attr-defined]
        return None
    return kattype.check


def _plain_unpacking(
        types: Sequence[KatcpType]) -> Optional[List[Tuple[Callable[[bytes], Any], _Check]]]:
    """Each type's exact decoder and check, where its unpack() of bytes is just these.

    That is where unpack() is KatcpType's and decode() the type's wire rule's, which has
    an exact decoder (:attr:`katcp.wire.types.WireType.exact_decoder`): a C-level call
    instead of three Python ones (unpack, decode, its parse) for each argument. None
    where a type is not so.
    """
    plain = []
    for kattype in types:
        rule = kattype._rule
        if (rule is None or rule.exact_decoder is None or not uses_own(kattype, _OWN_UNPACK)
                or kattype.decode != rule.decode):
            return None
        plain.append((rule.exact_decoder, _plain_check(kattype)))
    return plain


def _plain_packing(
        types: Sequence[KatcpType]) -> Optional[List[Tuple[Dict[type, Callable[[Any], bytes]], _Check]]]:
    """Each type's exact encoders and check, where its pack() of values of their classes
    is just these (as :func:`_plain_unpacking`, for pack() and encode())."""
    plain = []
    for kattype in types:
        rule = kattype._rule
        if (rule is None or not rule.exact_encoders or not uses_own(kattype, _OWN_PACK)
                or kattype.encode != rule.encode):
            return None
        plain.append((rule.exact_encoders, _plain_check(kattype)))
    return plain


class _Unpacker:
    """Unpacks argument lists for a fixed list of types (built once per handler)."""

    __slots__ = ("_types", "_params", "_unpackers", "_major", "_multiple", "_plain",
                 "__weakref__")

    def __init__(self, types: Sequence[KatcpType], argnames: Iterable[str], major: int) -> None:
        _check_multiple_is_last(types)
        argnames = list(argnames)
        argnames += [""] * (len(types) - len(argnames))
        self._params = [Parameter(i + 1, argnames[i], kattype, major)
                        for i, kattype in enumerate(types)]
        self._types = types
        self._major = major
        self._multiple = self._params[-1] if types and types[-1]._multiple else None
        self.plan()

    def plan(self) -> None:
        """Take the types' methods as they are now (see :func:`katcp.kattypes.types.planned`)."""
        self._unpackers = [kattype.unpack for kattype in self._types]
        self._plain = _plain_unpacking(self._types)

    def __call__(self, args: Sequence[Optional[bytes]]) -> List[Any]:
        plain = self._plain
        if plain is not None and len(args) == len(plain):
            major = self._major
            values = []
            # A loop rather than a list comprehension, whose own frame costs more (this
            # unpacks every request's arguments).
            try:
                for (decode, check), arg in zip(plain, args):
                    value = decode(arg)  # type: ignore[arg-type]
                    if check is not None:
                        check(value, major)
                    values.append(value)
            except (ValueError, TypeError, LookupError):
                # Not bytes the exact decoder takes, or invalid: decode() and the
                # Parameters say which, as below.
                return self._unpack_slow(args)
            return values
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
            # As katcp 0.9.3 (whose map() padded the arguments with None): a missing
            # optional multiple last argument too is one None, not no values.
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

    Parameters
    ----------
    types : sequence of kattypes
        The types of the arguments (in order).
    args : sequence of objects
        The values to pack; missing values at the end pack as their type's default.
    major : integer
        Major version of KATCP to use when packing types

    Returns
    -------
    packed_args : list
        List of args after packing to byte strings

    Notes
    -----
    An optional multiple last type without a default packs to no arguments when the
    values run out before it (katcp 0.9.3 raised ``ValueError`` there).
    """
    ntypes = len(types)
    nargs = len(args)
    multiple = ntypes > 0 and types[-1]._multiple
    if nargs > ntypes and not multiple:
        raise ValueError("Too many arguments to pack.")
    packed = [kattype.pack(arg, major=major) for kattype, arg in zip(types, args)]
    if nargs < ntypes:
        missing = types[nargs:]
        if multiple and _packs_to_nothing(types[-1]):
            missing = missing[:-1]
        packed.extend(kattype.pack(None, major=major) for kattype in missing)
    elif nargs > ntypes:
        packed.extend(types[-1].pack(arg, major=major) for arg in args[ntypes:])
    return packed


# ---------------------------------------------------------------------------
# Replies
# ---------------------------------------------------------------------------

_STATUS_STR = Str()
_FAIL_TYPES = (_STATUS_STR, _STATUS_STR)


class _ReplyMaker:
    """Builds reply messages for one handler's reply types (built once per handler)."""

    __slots__ = ("msgname", "_ok_types", "_ok_packers", "_major", "_plain_ok", "_valid_name",
                 "__weakref__")

    def __init__(self, msgname: str, types: Sequence[KatcpType], major: int) -> None:
        self.msgname = msgname
        self._ok_types = (_STATUS_STR,) + tuple(types)
        self._major = major
        self.plan()
        # The name checked once, for replies made of packed bytes without the
        # constructor; None where it is not valid (the constructor then refuses it at
        # each reply, as 0.9.3's did).
        try:
            self._valid_name: Optional[str] = check_name(msgname)
        except KatcpSyntaxError:
            self._valid_name = None

    def plan(self) -> None:
        """Take the types' methods as they are now (see :func:`katcp.kattypes.types.planned`)."""
        self._ok_packers = [kattype.pack for kattype in self._ok_types]
        self._plain_ok = _plain_packing(self._ok_types)

    def __call__(self, arguments: Any, name: Any = None) -> Message:
        if isinstance(arguments, Message):
            return arguments
        status = arguments[0]
        if status == "ok" or status == b"ok":
            if len(arguments) == len(self._ok_packers):
                packed = self._pack_plain(arguments)
                if (packed is not None and name is None and self._valid_name is not None
                        and Message.format_argument is _OWN_FORMAT_ARGUMENT):
                    # All bytes, named as checked, and the constructor would format them
                    # with Message's own rule (unless it is patched, as in a test): as the
                    # constructor would make it.
                    return message_from_parts(Message.REPLY, self._valid_name, packed, None)
                if packed is None:
                    major = self._major
                    packed = [pack(arg, False, major)
                              for pack, arg in zip(self._ok_packers, arguments)]
            else:
                packed = pack_types(self._ok_types, arguments, self._major)
        elif status == "fail" or status == b"fail":
            packed = pack_types(_FAIL_TYPES, arguments, self._major)
        else:
            raise ValueError("First returned value must be 'ok' or 'fail'.")
        # Without an id, as katcp 0.9.3's: the server gives the reply its request's id
        # as it sends it (ClientConnection.reply).
        return Message(Message.REPLY, name if isinstance(name, str) else self.msgname, packed)

    def _pack_plain(self, arguments: Sequence[Any]) -> Optional[List[bytes]]:
        """The ok reply's `arguments` packed by their types' exact encoders, or None
        where a value has none (a None, a subclass ...) or is refused: then the types'
        pack() does it, and says why."""
        plain = self._plain_ok
        if plain is None:
            return None
        major = self._major
        packed = []
        # A loop rather than a list comprehension, as in _Unpacker.
        try:
            for (encoders, check), value in zip(plain, arguments):
                encode = encoders.get(value.__class__)
                if encode is None:
                    return None
                if check is not None:
                    check(value, major)
                packed.append(encode(value))
        except ValueError:  # a check's, or strict UTF-8's, which pack() replaces
            return None
        return packed


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


async def _await_reply(reply_maker: Callable[[Any], Any], arguments: Any) -> Any:
    return reply_maker(await arguments)


def _resolve_reply(reply_maker: Callable[[Any], Any], arguments: Any) -> Any:
    """The reply to arguments that come later, as a future of the same kind.

    A future already resolved gives a resolved future at once (as the coroutines of
    katcp 0.9.3 did); another awaitable gives a coroutine.
    """
    if not _is_future(arguments):
        return _await_reply(reply_maker, arguments)
    return transformed_future(reply_maker, arguments)


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
    return _resolve_reply(_ReplyMaker(msgname, types, major), arguments_future)


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


def _wrap(wrapper: _Handler, handler: _Handler, marker: Optional[str] = None) -> _Handler:
    """`wrapper` dressed as `handler`, with the attribute `marker` (if any) set to True."""
    # functools.wraps also copies __dict__, so attributes set by the other decorators
    # (_concurrent_reply, request_timeout_hint, ...) survive any stacking order.
    wrapped = functools.wraps(handler)(wrapper)
    if marker:
        setattr(wrapped, marker, True)
    return wrapped


def _unpacking(types: Sequence[KatcpType], include_msg: bool, major: int, with_req: bool,
               marker: Optional[str]) -> _Decorator:
    """The decorator that unpacks a message's arguments into a handler's parameters.

    The handler is called as ``handler(self, [req,] [msg,] *values)``.
    """
    _check_multiple_is_last(types)

    def decorator(handler: _Handler) -> _Handler:
        skip = 1 + with_req + include_msg
        unpack = planned(_Unpacker(types, _handler_argnames(handler, skip, len(types)), major))
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
        return _wrap(raw_handler, handler, marker)

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

    The reply is named after the handler (``request_myreq`` replies ``!myreq``), whatever
    request `req` holds, and has no message id: the server gives it the id of the
    request as it sends it, as in katcp 0.9.3. A decorated handler also registered under
    another name (``request_alias = request_myreq``) is answered there with a fail reply,
    its reply being named for another request.

    `types` are the types of the reply's values after the status (in order); `major`
    is as for :func:`request`.

    Examples
    --------
    >>> class MyDevice(DeviceServer):
    ...     @request(Int())
    ...     @return_reply(Int(), Float())
    ...     def request_myreq(self, req, my_int):
    ...         '''Add one to an integer and double it.'''
    ...         return ("ok", my_int + 1, my_int * 2.0)
    """
    _check_multiple_is_last(types)

    def decorator(handler: _Handler) -> _Handler:
        if not handler.__name__.startswith("request_"):
            raise ValueError("This decorator can only be used on a katcp request handler "
                             "(method name should start with 'request_').")
        make = planned(_ReplyMaker(convert_method_name("request_", handler.__name__), types,
                                   major))

        def raw_handler(self: Any, req: Any, *args: Any) -> Any:
            result = handler(self, req, *args)
            if result.__class__ is tuple or not _is_async(result):
                return make(result)
            return _resolve_reply(make, result)

        return _wrap(raw_handler, handler, "_return_reply_decorated")

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

    The callback may also return a Future or coroutine (an ``async def`` callback)
    resolving to that tuple; the decorated callback then returns a Future (or, for a
    coroutine, an awaitable) that resolves, to None, once the reply is sent.

    Examples
    --------
    >>> class MyDevice(DeviceServer):
    ...     @send_reply(Int(), Float())
    ...     def my_callback(self, req):
    ...         return (req, "ok", 5, 2.0)
    """
    _check_multiple_is_last(types)

    def decorator(handler: _Handler) -> _Handler:
        # Named after the request that req holds (a stand-in's text name), as in 0.9.3.
        make = planned(_ReplyMaker("", types, major))

        def send(reply_args: Any) -> None:
            req = reply_args[0]
            req.reply_with_message(make(reply_args[1:], getattr(req.msg, "name", None)))

        def raw_handler(self: Any, *args: Any) -> Any:
            reply_args = handler(self, *args)
            if reply_args.__class__ is not tuple and _is_async(reply_args):
                return _resolve_reply(send, reply_args)
            send(reply_args)
            return None

        return _wrap(raw_handler, handler)

    return decorator


def _marking(attribute: str, value: Any) -> _Decorator:
    """A decorator that sets `attribute` of the handler (which the server reads)."""
    def decorator(handler: _Handler) -> _Handler:
        setattr(handler, attribute, value)
        return handler

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
    ...     @request()
    ...     @concurrent_reply
    ...     @tornado.gen.coroutine
    ...     def request_myreq(self, req):
    ...         '''A slow request'''
    ...         result = yield self.slow_operation()
    ...         return ("ok", result)
    """
    return _marking("_concurrent_reply", True)(handler)


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
    ...     @request()
    ...     @request_timeout_hint(15)  # Set request timeout hint to 15 seconds
    ...     @tornado.gen.coroutine
    ...     def request_myreq(self, req):
    ...         '''A slow request'''
    ...         result = yield self.slow_operation()
    ...         return ("ok", result)
    """
    return _marking("request_timeout_hint", None if timeout_hint is None else float(timeout_hint))


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
    return _marking("_has_katcp_protocol_flags", list(protocol_flags))


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
    return _marking("_minimum_katcp_version", (major, minor))
