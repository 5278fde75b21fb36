"""Tests for katcp.sensortree."""

import threading

import pytest

from katcp.core import Sensor
from katcp.sensortree import AggregateSensorTree, BooleanSensorTree, GenericSensorTree


def booleans(*names):
    return [Sensor.boolean(name, "%s." % name, "") for name in names]


class TestGenericSensorTree:

    class Counting(GenericSensorTree):
        def __init__(self):
            super().__init__()
            self.calls = []

        def recalculate(self, parent, updates):
            self.calls.append((parent, tuple(updates)))

    def test_links(self):
        tree = self.Counting()
        parent, a, b = booleans("p", "a", "b")
        tree.add_links(parent, (a, b))
        assert tree.children(parent) == {a, b}
        assert tree.parents(a) == {parent}
        assert tree.parents(parent) == set()
        assert a in tree and parent in tree
        assert tree.calls == [(parent, (a, b))]
        # The tree observes the sensors it holds.
        a.set_value(True)
        assert tree.calls[-1] == (parent, (a,))
        tree.remove_links(parent, (a,))
        assert a not in tree
        assert tree.children(parent) == {b}
        calls = len(tree.calls)
        a.set_value(False)
        assert len(tree.calls) == calls  # detached
        tree.remove_links(parent, (b,))
        assert parent not in tree and b not in tree
        with pytest.raises(ValueError):
            tree.children(parent)
        with pytest.raises(ValueError):
            tree.parents(b)

    def test_children_returns_a_copy(self):
        tree = self.Counting()
        parent, a = booleans("p", "a")
        tree.add_links(parent, (a,))
        tree.children(parent).clear()
        assert tree.children(parent) == {a}

    def test_base_recalculate_is_abstract(self):
        parent, a = booleans("p", "a")
        with pytest.raises(NotImplementedError):
            GenericSensorTree().add_links(parent, (a,))


class TestBooleanSensorTree:

    def test_and_of_children(self):
        tree = BooleanSensorTree()
        root, mid, leaf1, leaf2 = booleans("root", "mid", "leaf1", "leaf2")
        tree.add(root, mid)
        tree.add(mid, leaf1)
        tree.add(mid, leaf2)
        assert root.value() is False and mid.value() is False
        leaf1.set_value(True)
        assert mid.value() is False
        leaf2.set_value(True)
        assert mid.value() is True and root.value() is True
        leaf1.set_value(False)
        assert mid.value() is False and root.value() is False

    def test_docstring_example(self):
        tree = BooleanSensorTree()
        sensor1 = Sensor(Sensor.BOOLEAN, "sensor1", "First sensor", "")
        sensor2 = Sensor(Sensor.BOOLEAN, "sensor2", "Second sensor", "")
        tree.add(sensor1, sensor2)
        sensor2.set_value(True)
        assert sensor1.value() is True
        sensor2.set_value(False)
        assert sensor1.value() is False

    def test_remove(self):
        tree = BooleanSensorTree()
        parent, bad, good = booleans("p", "bad", "good")
        good.set_value(True)
        tree.add(parent, bad)
        tree.add(parent, good)
        assert parent.value() is False
        tree.remove(parent, bad)
        assert parent.value() is True
        assert bad not in tree
        bad.set_value(False)
        assert parent.value() is True
        tree.remove(parent, good)
        assert parent not in tree and good not in tree

    def test_rejects_non_boolean(self):
        tree = BooleanSensorTree()
        parent = Sensor.boolean("p")
        with pytest.raises(ValueError):
            tree.add(parent, Sensor.integer("i"))
        with pytest.raises(ValueError):
            tree.add(Sensor.integer("i"), parent)
        assert parent not in tree

    @pytest.mark.parametrize("link", [("root", "root"), ("leaf", "root"), ("mid", "root")])
    def test_a_link_that_would_make_a_cycle_is_refused_and_changes_nothing(self, link):
        tree = BooleanSensorTree()
        sensors = dict(zip(("root", "mid", "leaf"), booleans("root", "mid", "leaf")))
        tree.add(sensors["root"], sensors["mid"])
        tree.add(sensors["mid"], sensors["leaf"])
        parent, child = (sensors[name] for name in link)
        with pytest.raises(ValueError, match="would make a cycle"):
            tree.add(parent, child)
        assert tree.children(sensors["leaf"]) == set()
        assert tree.parents(sensors["root"]) == set()
        sensors["leaf"].set_value(True)
        assert sensors["root"].value() is True


def add_rule(parent, children):
    parent.set_value(sum(child.value() for child in children))


class TestAggregateSensorTree:

    def integers(self):
        return (Sensor.integer("sensor1", "First sensor", "", [-1000, 1000]),
                Sensor.integer("sensor2", "Second sensor", "", [-1000, 1000]),
                Sensor.integer("sum", "The total", "", [-2000, 2000]))

    def test_docstring_example(self):
        tree = AggregateSensorTree()
        sensor1, sensor2, agg = self.integers()
        sensor1.set_value(0)
        sensor2.set_value(0)
        tree.add(agg, add_rule, (sensor1, sensor2))
        assert agg.value() == 0
        sensor1.set_value(1)
        assert agg.value() == 1
        sensor2.set_value(2)
        assert agg.value() == 3
        assert tree.fetch(agg) == (add_rule, (sensor1, sensor2))

    def test_duplicate_rule_rejected(self):
        tree = AggregateSensorTree()
        sensor1, sensor2, agg = self.integers()
        tree.add(agg, add_rule, (sensor1,))
        with pytest.raises(ValueError):
            tree.add(agg, add_rule, (sensor2,))
        with pytest.raises(ValueError):
            tree.add_delayed(agg, add_rule, ["sensor2"])

    def test_an_async_def_rule_is_refused(self):
        # The tree calls the rule and moves on: its coroutines would never run, and the
        # aggregate would never be set.
        async def rule(parent, children):
            parent.set_value(sum(child.value() for child in children))

        tree = AggregateSensorTree()
        sensor1, sensor2, agg = self.integers()
        with pytest.raises(TypeError, match="rule_function .* is an async function"):
            tree.add(agg, rule, (sensor1,))
        with pytest.raises(TypeError, match="rule_function .* is an async function"):
            tree.add_delayed(agg, rule, ["sensor2"])
        assert agg not in tree and not tree._incomplete_aggregates

    def test_remove(self):
        tree = AggregateSensorTree()
        sensor1, sensor2, agg = self.integers()
        tree.add(agg, add_rule, (sensor1, sensor2))
        tree.remove(agg)
        assert agg not in tree and sensor1 not in tree
        assert agg.value() == 0  # sum of the children's defaults
        sensor1.set_value(5)
        assert agg.value() == 0  # no longer recomputed
        with pytest.raises(ValueError):
            tree.remove(agg)
        with pytest.raises(ValueError):
            tree.fetch(agg)

    def test_add_delayed(self):
        tree = AggregateSensorTree()
        sensor1, sensor2, agg = self.integers()
        sensor1.set_value(10)
        sensor2.set_value(20)
        tree.add_delayed(agg, add_rule, ["sensor1", "sensor2"])
        assert agg not in tree
        tree.register_sensor(sensor1)
        assert agg not in tree
        tree.register_sensor(sensor2)
        assert agg.value() == 30
        assert tree.children(agg) == {sensor1, sensor2}
        sensor2.set_value(-5)
        assert agg.value() == 5
        with pytest.raises(ValueError):
            tree.register_sensor(sensor1)

    def test_add_delayed_with_registered_children_is_immediate(self):
        tree = AggregateSensorTree()
        sensor1, sensor2, agg = self.integers()
        sensor1.set_value(4)
        tree.register_sensor(sensor1)
        tree.add_delayed(agg, add_rule, ["sensor1"])
        assert agg.value() == 4

    def test_deregister_and_remove_incomplete(self):
        tree = AggregateSensorTree()
        sensor1, sensor2, agg = self.integers()
        tree.register_sensor(sensor1)
        tree.deregister_sensor(sensor1)
        with pytest.raises(ValueError):
            tree.deregister_sensor(sensor1)
        tree.add_delayed(agg, add_rule, ["sensor1"])
        tree.remove(agg)
        tree.register_sensor(sensor1)
        assert agg not in tree


def test_a_rule_that_fails_on_the_first_values_leaves_its_children_observed():
    # The rule raises when the aggregate is added (a child has no usable value yet): the
    # error is the caller's, and the aggregate follows the children from then on.
    tree = AggregateSensorTree()
    parent = Sensor.float("ratio", "", "", [0, 100])
    numerator, denominator = (Sensor.integer(name, "", "", [0, 10])
                              for name in ("numerator", "denominator"))
    numerator.set_value(6)

    def ratio(parent, children):
        parent.set_value(numerator.value() / denominator.value())

    with pytest.raises(ZeroDivisionError):
        tree.add(parent, ratio, (numerator, denominator))
    denominator.set_value(3)
    assert parent.value() == 2.0
    numerator.set_value(9)
    assert parent.value() == 3.0


class _FailingRule:
    """A sum rule that raises while `failing`."""

    failing = False

    def __call__(self, parent, children):
        if self.failing:
            raise RuntimeError("the rule failed")
        parent.set_value(sum(child.value() for child in children))


class _FailingOnce(_FailingRule):
    """A sum rule that raises once, when next called after `failing` is set."""

    def __call__(self, parent, children):
        failing, self.failing = self.failing, False
        if failing:
            raise RuntimeError("the rule failed")
        super().__call__(parent, children)


def _summed():
    parent, first, second = (Sensor.integer(name, "", "", default=1)
                             for name in ("sum", "first", "second"))
    return parent, first, second


def test_a_rule_removed_while_it_fails_is_gone_and_may_be_added_again():
    tree, rule = AggregateSensorTree(), _FailingRule()
    parent, first, second = _summed()
    tree.add(parent, rule, (first, second))
    rule.failing = True
    with pytest.raises(RuntimeError):
        tree.remove(parent)  # its last recalculation raises
    rule.failing = False
    with pytest.raises(ValueError, match="has no aggregate rule"):
        tree.fetch(parent)
    tree.add(parent, rule, (first, second))
    first.set_value(5)
    assert parent.value() == 6


def test_a_child_deregistered_while_its_rule_fails_is_awaited_again():
    tree, rule = AggregateSensorTree(), _FailingRule()
    parent, first, second = _summed()
    for child in (first, second):
        tree.register_sensor(child)
    tree.add_delayed(parent, rule, ["first", "second"])
    rule.failing = True
    with pytest.raises(RuntimeError):
        tree.deregister_sensor(first)  # the recalculation without it raises
    rule.failing = False
    tree.register_sensor(first)
    first.set_value(10)
    assert parent.value() == 11


def test_a_child_deregistered_while_one_rule_fails_is_awaited_by_every_rule():
    tree, rule = AggregateSensorTree(), _FailingOnce()
    parent, first, second = _summed()
    child = Sensor.integer("child", "", "", default=2)
    for sensor in (first, child):
        tree.register_sensor(sensor)
    for aggregate in (parent, second):
        tree.add_delayed(aggregate, rule, ["first", "child"])
    rule.failing = True
    with pytest.raises(RuntimeError):
        tree.deregister_sensor(child)
    # The rule failed for the first aggregate (sum 3 kept); the second was recalculated
    # without `child` (1), and neither follows its children until `child` is back.
    first.set_value(5)
    assert (parent.value(), second.value()) == (3, 1)
    tree.register_sensor(child)
    assert (parent.value(), second.value()) == (7, 7)


def test_a_rule_that_fails_for_one_parent_leaves_no_other_parent_behind():
    # The rule fails for whichever parent is recalculated first; the error reaches the
    # caller of set_value() once the others are recalculated too.
    tree, rule = AggregateSensorTree(), _FailingOnce()
    parents = _summed()
    child = Sensor.integer("child", "", "", default=1)
    for parent in parents:
        tree.add(parent, rule, (child,))
    rule.failing = True
    with pytest.raises(RuntimeError):
        child.set_value(7)
    assert sorted(parent.value() for parent in parents) == [1, 7, 7]


def test_a_rule_that_fails_as_its_last_child_registers_leaves_no_other_rule_waiting():
    tree, failing = AggregateSensorTree(), _FailingRule()
    parent, first, second = _summed()
    child = Sensor.integer("child", "", "", default=2)
    tree.add_delayed(parent, failing, ["child"])
    tree.add_delayed(first, _FailingRule(), ["child"])
    tree.add_delayed(second, _FailingRule(), ["child"])
    failing.failing = True
    with pytest.raises(RuntimeError):
        tree.register_sensor(child)
    assert (first.value(), second.value()) == (2, 2)
    failing.failing = False
    child.set_value(3)
    assert (parent.value(), first.value(), second.value()) == (3, 3, 3)


def test_a_parent_that_cannot_be_set_when_linked_still_follows_its_child():
    class Refusing(Sensor):
        refuse = True

        def set_value(self, value, *args, **kwargs):
            if self.refuse:
                raise RuntimeError("not yet")
            super().set_value(value, *args, **kwargs)

    tree = BooleanSensorTree()
    parent = Refusing(Sensor.BOOLEAN, "parent", "", "")
    child, = booleans("child")
    with pytest.raises(RuntimeError):
        tree.add(parent, child)
    parent.refuse = False
    child.set_value(True)
    assert parent.value() is True


def test_a_parent_is_recalculated_by_one_thread_at_a_time():
    # Thread A's recalculation reads the children, then stalls; thread B, setting
    # another child meanwhile, must wait for it, or A would write its older sum last.
    tree = AggregateSensorTree()
    parent = Sensor.integer("sum", "", "", [0, 100])
    first, second = Sensor.integer("first", "", "", [0, 10]), Sensor.integer("second", "", "",
                                                                               [0, 10])
    children_read, proceed, b_done = threading.Event(), threading.Event(), threading.Event()

    def rule(parent, children):
        total = sum(child.value() for child in children)
        if threading.current_thread().name == "A":
            children_read.set()
            proceed.wait(5)
        parent.set_value(total)

    tree.add(parent, rule, (first, second))
    a = threading.Thread(target=first.set_value, args=(1,), name="A")
    b = threading.Thread(target=lambda: (second.set_value(2), b_done.set()), name="B")
    a.start()
    assert children_read.wait(5)
    b.start()
    assert not b_done.wait(0.2)  # B waits for A's recalculation
    proceed.set()
    for thread in (a, b):
        thread.join(5)
    assert b_done.is_set() and parent.value() == 3

