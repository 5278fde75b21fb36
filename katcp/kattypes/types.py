"""The KATCP types of :mod:`katcp.kattypes`: Python values <-> arguments, with checks."""

import abc
import copyreg
import math
import numbers
import re
import struct
import weakref
from typing import Any, Dict, Iterable, List, Optional

from katcp.wire import types as wire_types
from katcp.wire.errors import FailReply
from katcp.wire.flags import DEFAULT_KATCP_MAJOR
from katcp.wire.text import as_str, show


# ---------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------

# The methods of a type that the decorators' plans of a handler's unpacking and packing
# are made of (see katcp.kattypes.decorators).
_PLANNED_METHODS = frozenset(["check", "pack", "unpack", "encode", "decode"])


# The objects _method_changed() visits (the plans, the types made) are kept in weak
# dictionaries keyed by id(), as katcp.wire.handlers keeps its table copies: not in a
# WeakSet, whose members must be hashable (a type subclass defining __eq__ is not) and
# whose iteration fails while another thread adds one.
def _register(registry: "weakref.WeakValueDictionary[int, Any]", obj: Any) -> None:
    registry[id(obj)] = obj


def _alive(registry: "weakref.WeakValueDictionary[int, Any]") -> List[Any]:
    """The objects of `registry` alive now (its references copied in one call)."""
    alive = [ref() for ref in registry.valuerefs()]
    return [obj for obj in alive if obj is not None]


# The objects whose plan() made such a plan, kept current by _method_changed().
_plans: "weakref.WeakValueDictionary[int, Any]" = weakref.WeakValueDictionary()


def planned(plan: Any) -> Any:
    """Have ``plan.plan()`` called again whenever a type's check(), pack(), unpack(),
    encode() or decode() is set or deleted on its class, or on a type.

    For the unpacking and packing of a decorated handler, planned once from its types'
    methods: 0.9.3 called them by name at each request, so that one patched later
    (``mock.patch.object(Int, "check", ...)``, or on a type a module keeps) was heard,
    and so is it here, at no cost per request.

    Parameters
    ----------
    plan : object
        Its ``plan()`` takes the types' methods as they are then; kept weakly.

    Returns
    -------
    plan : object
        `plan`.
    """
    _register(_plans, plan)
    return plan


# The types made, whose encode() and decode() _take_rule_methods() keeps current.
_types: "weakref.WeakValueDictionary[int, Any]" = weakref.WeakValueDictionary()
_RULE_METHODS = ("encode", "decode")


def _uses_rule(cls: type, name: str) -> bool:
    """Whether method `name` of a type of class `cls` is its wire rule's: no class from
    `cls` up to the one naming the rule has one of its own (or one patched on)."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return False
        if "_rule" in klass.__dict__:
            return klass.__dict__["_rule"] is not None
    return False


def _is_rule_method(method: Any) -> bool:
    return isinstance(getattr(method, "__self__", None), wire_types.WireType)


def _take_rule_methods(kattype: Any) -> None:
    """Have `kattype` call its rule's encode() and decode() directly, as attributes of
    its own, where it uses them (pack and unpack are hot), and no longer where a class
    has since got one of its own (a patch): then it calls that, as 0.9.3 did."""
    # Asked of the attributes, not of kattype.__dict__, which once made slows every later
    # attribute access on the type (see katcp.wire.util.uses_own). One that is neither
    # its class's nor its rule's was set on the type itself (a patch of it), and stays.
    for name in _RULE_METHODS:
        method = getattr(kattype, name)
        if _uses_rule(type(kattype), name):
            of_class = getattr(type(kattype), name)
            if method is of_class or getattr(method, "__func__", None) is of_class:
                object.__setattr__(kattype, name, getattr(kattype._rule, name))
        elif _is_rule_method(method):
            object.__delattr__(kattype, name)


def _method_changed(name: str) -> None:
    """Attribute `name` was set or deleted on a type or its class: take the rules'
    methods again if it is one, and plan again if the plans are made of it."""
    if name in _RULE_METHODS:
        for kattype in _alive(_types):
            _take_rule_methods(kattype)
    if name in _PLANNED_METHODS:
        for plan in _alive(_plans):
            plan.plan()


class _KatcpTypeClass(abc.ABCMeta):
    """The class of :class:`KatcpType` classes: a method the decorators plan with set on
    one, or deleted (as ``mock.patch.object`` does and undoes), has the plans made
    again (see :func:`planned`).

    An ABCMeta, not a plain type: a type may then mix in an abstract base class, as
    0.9.3's plain classes could (two unrelated metaclasses conflict).
    """

    def __setattr__(cls, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        _method_changed(name)

    def __delattr__(cls, name: str) -> None:
        super().__delattr__(name)
        _method_changed(name)


class KatcpType(metaclass=_KatcpTypeClass):
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
        _register(_types, self)
        _take_rule_methods(self)

    # Copies (copy, deepcopy, pickle) take the rule's methods afresh, as made types do:
    # not copies of them, which a patch on the class would not reach.
    # The state is the default one (a dict, and the slots of a subclass having some).
    def __getstate__(self) -> Any:
        state = self._dict_state()
        # The names the default state takes (pickle's own helper: mangled, inherited).
        slot_names = copyreg._slotnames(type(self))  # type: ignore[attr-defined]
        slots = {name: getattr(self, name) for name in slot_names if hasattr(self, name)}
        return (state, slots) if slots else state

    def __setstate__(self, state: Any) -> None:
        state, slots = state if isinstance(state, tuple) else (state, {})
        self.__dict__.update(state)
        for name, value in slots.items():
            object.__setattr__(self, name, value)
        _register(_types, self)
        _take_rule_methods(self)

    def _dict_state(self) -> Dict[str, Any]:
        """The attributes of :meth:`__getstate__`'s state (a copy)."""
        return {name: value for name, value in self.__dict__.items()
                if name not in _RULE_METHODS or not _is_rule_method(value)}

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

    def __setattr__(self, name: str, value: Any) -> None:
        # A method set on this type (mock.patch.object(GAIN, "check", ...)): see planned().
        # Tested here, as every attribute a type's __init__ sets comes this way.
        object.__setattr__(self, name, value)
        if name in _PLANNED_METHODS:
            _method_changed(name)

    def __delattr__(self, name: str) -> None:
        object.__delattr__(self, name)
        _method_changed(name)

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

        NaN is between no minimum and maximum: with either given it is refused.
        """
        # "not >=" rather than "<": NaN compares false both ways, so it fails here.
        if self._min is not None and not value >= self._min:
            raise ValueError(self._refusal(value, "lower than minimum", self._min))
        if self._max is not None and not value <= self._max:
            raise ValueError(self._refusal(value, "higher than maximum", self._max))

    def _refusal(self, value: Any, relation: str, bound: Any) -> str:
        if value != value:
            return "%s %s is not a number, which no minimum or maximum allows." % (
                self._label, self._fmt % value)
        try:
            shown, limit = self._fmt % value, self._fmt % bound
        except OverflowError:  # %g of an integer beyond the range of floats
            shown = limit = ""
        if shown == limit:
            # Float's six digits (as 0.9.3 wrote them) do not tell these two apart: all
            # of theirs, not "Float 1 is higher than maximum 1.".
            shown, limit = str(value), str(bound)
        return "%s %s is %s %s." % (self._label, shown, relation, limit)


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
        self._valid_values = frozenset(value.lower() if case_insensitive else value
                                       for value in self._values)

    def check(self, value: Any, major: int) -> None:
        """Check whether the value in the set of allowed values.
        """
        text = as_str(value)
        if self._case_insensitive and isinstance(text, str):
            text = text.lower()
        if text not in self._valid_values:
            # str(): values given as other objects (ints) are listed too, not a TypeError.
            raise wire_types.DISCRETE.not_one_of(value, map(str, self._values))


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
        """Check whether the value is positive and finite (XXXX.YYY has no NaN or inf).
        """
        if not isinstance(value, numbers.Real):
            raise ValueError("Strict timestamp %r is not a number." % (value,))
        if value < 0:
            raise ValueError("Strict timestamp %s may not be negative." % (value,))
        if not value < math.inf:  # inf, or NaN
            raise ValueError("Strict timestamp %s is not finite." % (value,))


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

    # A struct.Struct can be neither copied nor pickled: copies make their own from _fmt.
    def _dict_state(self) -> Dict[str, Any]:
        state = super()._dict_state()
        del state["_struct"]
        return state

    def __setstate__(self, state: Any) -> None:
        super().__setstate__(state)
        self._struct = struct.Struct(self._fmt)

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
        Regular expression that values should match (of str: TypeError for bytes).
    """

    name = "regex"

    def __init__(self, regex: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # A compiled pattern is returned as it is.
        self._compiled = re.compile(regex)
        self._pattern = self._compiled.pattern
        if isinstance(self._pattern, bytes):
            # Values are matched as text (bytes arguments are decoded first): a bytes
            # pattern would fail every pack and unpack.
            raise TypeError("Regex pattern must be str, not bytes: %r." % (self._pattern,))

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

    def check(self, value: Any, major: int) -> None:
        """Check that the port is None or a port number, as an address sensor does.
        """
        try:
            _host, port = value
        except (TypeError, ValueError):
            return  # not a pair: encode() says so
        wire_types.check_address_port(port)


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
