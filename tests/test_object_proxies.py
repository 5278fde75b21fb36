"""Tests for katcp.object_proxies."""

import math

import pytest

from katcp.object_proxies import (
    CallbackProxy,
    CallbackWrapper,
    LazyProxy,
    LazyWrapper,
    ObjectProxy,
    ObjectWrapper,
)


class Subject:
    kind = "subject"

    def __init__(self):
        self.value = 1

    def method(self):
        return "subject method"

    def __repr__(self):
        return "Subject()"


def test_object_proxy_delegates_everything():
    subject = Subject()
    proxy = ObjectProxy(subject)
    assert proxy.__subject__ is subject
    assert proxy.value == 1 and proxy.method() == "subject method"
    assert isinstance(proxy, Subject)
    assert repr(proxy) == "Subject()" and str(proxy) == "Subject()"
    proxy.value = 2
    assert subject.value == 2
    del proxy.value
    assert not hasattr(subject, "value")
    assert "method" in dir(proxy)


def test_operators_and_containers():
    numbers = ObjectProxy([1, 2, 3])
    assert len(numbers) == 3 and numbers[0] == 1 and 2 in numbers
    assert list(numbers) == [1, 2, 3] and list(reversed(numbers)) == [3, 2, 1]
    assert numbers + [4] == [1, 2, 3, 4] and [0] + numbers == [0, 1, 2, 3]
    numbers[0] = 10
    del numbers[1]
    assert numbers.__subject__ == [10, 3]
    five = ObjectProxy(5)
    assert five + 1 == 6 and 1 + five == 6 and five * 2 == 10 and -five == -5
    assert five == 5 and five < 6 and hash(five) == hash(5) and int(five) == 5
    assert divmod(five, 2) == (2, 1) and 7 % five == 2 and "%s" % five == "5"
    assert format(five, "03d") == "005" and bool(ObjectProxy(0)) is False
    five += 1
    assert isinstance(five, ObjectProxy) and five == 6
    assert ObjectProxy(len)("abc") == 3


def test_callback_and_lazy_proxies():
    calls = []

    def make():
        calls.append(1)
        return [len(calls)]

    dynamic = CallbackProxy(make)
    assert dynamic[0] == 1 and dynamic[0] == 2
    calls.clear()
    lazy = LazyProxy(make)
    assert calls == []
    assert lazy[0] == 1 and lazy[0] == 1 and calls == [1]


class Wrapper(ObjectWrapper):
    extra = None

    def method(self):
        return "wrapper method"


def test_wrappers_keep_their_own_attributes():
    subject = Subject()
    wrapper = Wrapper(subject)
    assert wrapper.method() == "wrapper method"
    assert wrapper.value == 1 and wrapper.kind == "subject"
    wrapper.extra = "mine"
    assert wrapper.extra == "mine" and not hasattr(subject, "extra")
    wrapper.value = 5
    assert subject.value == 5
    assert isinstance(wrapper, Subject) and repr(wrapper) == "Subject()"
    with pytest.raises(AttributeError):
        wrapper.missing
    assert CallbackWrapper(lambda: subject).value == 5
    assert LazyWrapper(lambda: subject).method() == "subject method"


def test_numeric_protocols_take_their_optional_arguments():
    assert pow(ObjectProxy(3), 2, 5) == 4
    assert round(ObjectProxy(2.567), 1) == 2.6 and round(ObjectProxy(2.567)) == 3
    assert (math.trunc(ObjectProxy(-2.5)), math.floor(ObjectProxy(2.5)),
            math.ceil(ObjectProxy(2.5))) == (-2, 2, 3)


def test_in_place_operators_change_a_mutable_subject_in_place():
    items, flags = [1, 2], {1}
    proxy, flag_proxy = ObjectProxy(items), ObjectProxy(flags)
    proxy += [3]
    flag_proxy |= {2}
    assert items == [1, 2, 3] and proxy.__subject__ is items
    assert flags == {1, 2} and flag_proxy.__subject__ is flags
    number = ObjectProxy(5)
    number -= 1
    assert isinstance(number, ObjectProxy) and number.__subject__ == 4
