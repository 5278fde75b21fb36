"""KATCP protocol versions: the version constants, :class:`ProtocolFlags` and the table of
what differs between the v4 and v5 dialects of the wire.
"""

import re
from typing import Iterable, NamedTuple, Optional, Union

from katcp.wire.text import as_bytes


SEC_TO_MS_FAC = 1000
MS_TO_SEC_FAC = 1.0 / 1000
DEFAULT_KATCP_MAJOR = 5
SEC_TS_KATCP_MAJOR = 5
FLOAT_TS_KATCP_MAJOR = 4
MID_KATCP_MAJOR = 5
VERSION_CONNECT_KATCP_MAJOR = 5
INTERFACE_CHANGED_KATCP_MAJOR = 5


class Dialect(NamedTuple):
    """What one KATCP major version puts on the wire."""

    major: int
    #: Timestamps are seconds (v5) rather than milliseconds (v4).
    seconds_timestamps: bool
    #: Requests may carry message ids.
    message_ids: bool
    #: Servers announce themselves with ``#version-connect``.
    version_connect: bool
    #: Servers send ``#interface-changed``.
    interface_changed: bool


_V4 = Dialect(4, seconds_timestamps=False, message_ids=False, version_connect=False,
              interface_changed=False)
_V5 = Dialect(5, seconds_timestamps=True, message_ids=True, version_connect=True,
              interface_changed=True)


def dialect(major: int) -> Dialect:
    """The :class:`Dialect` of KATCP major version `major` (an int): v5's for v5 and any
    later version, v4's before."""
    return _V5 if major >= SEC_TS_KATCP_MAJOR else _V4


class ProtocolFlags:
    """Utility class for handling KATCP protocol flags.

    Parameters
    ----------
    major : int
        Major version number.
    minor : int
        Minor version number.
    flags : iterable of bytes (or str), optional
        One-character protocol flags, e.g. ``ProtocolFlags.MULTI_CLIENT`` (or a bytes
        string of them, such as ``b"MI"``); they are stored as bytes, as on the wire.
        None given means no flags, as in ``ProtocolFlags(5, 1)``.

    Raises
    ------
    ValueError
        If a flag needs a newer KATCP version than `major`.`minor`.
    """

    MULTI_CLIENT = b"M"
    MESSAGE_IDS = b"I"
    REQUEST_TIMEOUT_HINTS = b"T"
    BULK_SET_SENSOR_SAMPLING = b"B"

    # The first (major, minor) that defines each flag.
    _FLAG_SINCE = {MESSAGE_IDS: (MID_KATCP_MAJOR, 0), REQUEST_TIMEOUT_HINTS: (5, 1),
                   BULK_SET_SENSOR_SAMPLING: (5, 1)}

    VERSION_RE = re.compile(rb"^(?P<major>\d+)\.(?P<minor>\d+)(?:-(?P<flags>.*))?$")

    def __init__(self, major: Optional[int], minor: Optional[int],
                 flags: Iterable[Union[bytes, str, int]] = ()) -> None:
        self.major = major
        self.minor = minor
        self.flags = {self._as_flag(flag) for flag in flags}
        if major is not None:
            for flag in self.flags:
                since = self._FLAG_SINCE.get(flag)
                if since is not None and (major, minor or 0) < since:
                    raise ValueError("Protocol flag %r needs KATCP %d.%d or later, not "
                                     "%s.%s." % (flag.decode("latin-1"), since[0], since[1],
                                                 major, minor))
        self.multi_client = self.MULTI_CLIENT in self.flags
        self.message_ids = self.MESSAGE_IDS in self.flags
        self.request_timeout_hints = self.REQUEST_TIMEOUT_HINTS in self.flags
        self.bulk_set_sensor_sampling = self.BULK_SET_SENSOR_SAMPLING in self.flags

    @staticmethod
    def _as_flag(flag: Union[bytes, str, int]) -> bytes:
        # Flags given as text (as this library took them before) mean the same bytes;
        # iterating a bytes string such as b"MI" gives ints.
        if isinstance(flag, str):
            return flag.encode("ascii")
        if isinstance(flag, int):
            return bytes((flag,))
        return bytes(flag)

    def supports(self, flag: Union[bytes, str]) -> bool:
        """Return True if `flag` is set.

        Parameters
        ----------
        flag : bytes or str
            One-character protocol flag.
        """
        return self._as_flag(flag) in self.flags

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProtocolFlags):
            return NotImplemented
        return (self.major, self.minor, self.flags) == (other.major, other.minor, other.flags)

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        flags = b"".join(sorted(self.flags)).decode("latin-1")
        return "%s.%s%s" % (self.major, self.minor, "-" + flags if flags else "")

    def __repr__(self) -> str:
        return "<ProtocolFlags %s>" % (self,)

    @classmethod
    def parse_version(cls, version_str: Union[str, bytes]) -> "ProtocolFlags":
        """Create a ProtocolFlags object from a version string.

        Parameters
        ----------
        version_str : bytes or str
            The version string from a ``#version-connect katcp-protocol`` inform,
            e.g. ``b'5.0-IM'``.

        Returns
        -------
        flags : ProtocolFlags
            Major and minor are None when the string cannot be parsed. Flags that need a
            newer version than the string's are left out (a device announcing ``5.0-BIM``
            speaks 5.0 with message ids and multiple clients, without bulk sampling).
        """
        match = cls.VERSION_RE.match(as_bytes(version_str))
        if match is None:
            return cls(None, None, set())
        version = int(match.group("major")), int(match.group("minor"))
        # A peer's greeting is taken liberally: an unknown version-flag pairing is no
        # reason to ignore the whole greeting, but a flag its version lacks is not used.
        flags = [flag for flag in map(cls._as_flag, match.group("flags") or b"")
                 if cls._FLAG_SINCE.get(flag, version) <= version]
        return cls(version[0], version[1], flags)

