"""Trees of sensors whose values are computed from other sensors.

A tree attaches itself as an observer to every sensor it holds; when a child changes,
each of its parents is recalculated (and a parent's change in turn propagates up).
"""

import functools
import threading
from typing import Any, Callable, Dict, Iterable, Set, Tuple, TypeVar, cast

from katcp.wire.sensor import Reading, Sensor
from katcp.wire.util import plain_callback

_Rule = Callable[[Sensor, Any], Any]
_Method = TypeVar("_Method", bound=Callable[..., Any])


def _one_at_a_time(method: _Method) -> _Method:
    """Run `method` under its tree's lock.

    Sensors are set from any thread (a server's handler and polling threads): a
    parent is recalculated from all its children, and its links and rules change, one
    thread at a time, so that no older result is written last and no rule goes while
    it is used. Reentrant, as a parent's update recalculates its own parents.
    """
    @functools.wraps(method)
    def locked(self: "GenericSensorTree", *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)
    return cast(_Method, locked)


def _for_each(items: Iterable[Any], step: Callable[[Any], None]) -> None:
    """``step(item)`` for each of `items`, all of them though one raises; then raise the
    first error: a rule that fails for one parent leaves no other parent behind."""
    failure = None
    for item in items:
        try:
            step(item)
        except Exception as exc:
            if failure is None:
                failure = exc
    if failure is not None:
        raise failure


class GenericSensorTree:
    """A tree of generic sensors.

    Subclasses define :meth:`recalculate`, which sets a parent's value from its
    children.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._child_to_parents: Dict[Sensor, Set[Sensor]] = {}
        self._parent_to_children: Dict[Sensor, Set[Sensor]] = {}

    def __contains__(self, sensor: Sensor) -> bool:
        return sensor in self._parent_to_children

    @_one_at_a_time
    def update(self, sensor: Sensor, reading: Reading) -> None:
        """Update callback used by sensors to notify observers of changes.

        Parameters
        ----------
        sensor : katcp.Sensor
            The sensor whose value has changed.
        reading : katcp.core.Reading
            The new reading, as returned by ``sensor.read()``.
        """
        _for_each(list(self._child_to_parents.get(sensor, ())),
                  lambda parent: self.recalculate(parent, (sensor,)))

    def recalculate(self, parent: Sensor, updates: Iterable[Sensor]) -> None:
        """Re-calculate the value of parent sensor.

        Parameters
        ----------
        parent : katcp.Sensor
            The sensor whose value should be recalculated.
        updates : sequence of katcp.Sensor
            The child sensors that changed (or were linked or unlinked).
        """
        raise NotImplementedError

    def _is_unlinked(self, sensor: Sensor) -> bool:
        return not self._parent_to_children[sensor] and not self._child_to_parents[sensor]

    @_one_at_a_time
    def add_links(self, parent: Sensor, children: Iterable[Sensor]) -> None:
        """Create dependency links from parent to child.

        Sensors not yet in the tree are added and observed. The parent is
        recalculated once all links exist. Existing links are ignored.

        Parameters
        ----------
        parent : katcp.Sensor
            The sensor that depends on the children.
        children : sequence of katcp.Sensor
            The sensors the parent depends on.
        """
        added = [sensor for sensor in dict.fromkeys((parent, *children)) if sensor not in self]
        for sensor in added:
            self._parent_to_children[sensor] = set()
            self._child_to_parents[sensor] = set()
        for child in children:
            self._parent_to_children[parent].add(child)
            self._child_to_parents[child].add(parent)
        try:
            self.recalculate(parent, children)
        finally:
            # Also when the first recalculation raised (a rule that fails on the values
            # the children have yet): the links are made, so the tree follows the
            # children's next changes, as it follows those of linked sensors.
            for sensor in added:
                sensor.attach(self)

    @_one_at_a_time
    def remove_links(self, parent: Sensor, children: Iterable[Sensor]) -> None:
        """Remove dependency links from parent to child.

        Sensors left without any link are removed from the tree and no longer
        observed. The parent is recalculated afterwards. Missing links are ignored.

        Parameters
        ----------
        parent : katcp.Sensor
            The sensor that depended on the children.
        children : sequence of katcp.Sensor
            The sensors to unlink from the parent.
        """
        if parent in self:
            for child in children:
                if child in self:
                    self._parent_to_children[parent].discard(child)
                    self._child_to_parents[child].discard(parent)
            for sensor in dict.fromkeys((*children, parent)):
                if sensor in self and self._is_unlinked(sensor):
                    del self._parent_to_children[sensor]
                    del self._child_to_parents[sensor]
                    sensor.detach(self)
        self.recalculate(parent, children)

    def children(self, parent: Sensor) -> Set[Sensor]:
        """Return set of children of parent (ValueError if it is not in the tree)."""
        return self._linked(self._parent_to_children, parent, "Parent")

    def parents(self, child: Sensor) -> Set[Sensor]:
        """Return set of parents of child (ValueError if it is not in the tree)."""
        return self._linked(self._child_to_parents, child, "Child")

    @staticmethod
    def _linked(links: Dict[Sensor, Set[Sensor]], sensor: Sensor, role: str) -> Set[Sensor]:
        if sensor not in links:
            raise ValueError("%s sensor %r not in tree." % (role, sensor))
        return set(links[sensor])


class BooleanSensorTree(GenericSensorTree):
    """A tree of boolean sensors.

    Non-leaf sensors have their values updated to be the logical AND of their child
    sensors.

    Examples
    --------
    >>> from katcp import Sensor
    >>> tree = BooleanSensorTree()
    >>> sensor1 = Sensor(Sensor.BOOLEAN, "sensor1", "First sensor", "")
    >>> sensor2 = Sensor(Sensor.BOOLEAN, "sensor2", "Second sensor", "")
    >>> tree.add(sensor1, sensor2)
    >>> sensor2.set_value(True)
    >>> sensor1.value()
    True
    """

    def __init__(self) -> None:
        super().__init__()
        self._parent_to_not_ok: Dict[Sensor, Set[Sensor]] = {}

    @_one_at_a_time
    def add(self, parent: Sensor, child: Sensor) -> None:
        """Add a pair of boolean sensors.

        Parent depends on child.

        Parameters
        ----------
        parent : katcp.Sensor
            Boolean sensor that becomes the AND of its children.
        child : katcp.Sensor
            Boolean sensor the parent depends on.

        Raises
        ------
        ValueError
            If either sensor is not boolean, or if `child` is `parent` or depends on it
            already (the link would make a cycle).
        """
        for sensor in (parent, child):
            if sensor.stype != "boolean":
                raise ValueError("Sensor %r is not boolean." % (sensor.name,))
        if self._depends_on(child, parent):
            # Each parent is set whenever it is recalculated, so a cycle would set its
            # sensors in turn for ever (a RecursionError, at once or at the next change).
            raise ValueError("Sensor %r depends on %r already: making %r depend on %r "
                             "would make a cycle." % (child.name, parent.name, parent.name,
                                                      child.name))
        self.add_links(parent, (child,))

    def _depends_on(self, sensor: Sensor, other: Sensor) -> bool:
        """Whether `sensor` is `other` or depends on it, through any number of links."""
        seen, todo = set(), [sensor]
        while todo:
            each = todo.pop()
            if each is other:
                return True
            if each not in seen:
                seen.add(each)
                todo.extend(self._parent_to_children.get(each, ()))
        return False

    @_one_at_a_time
    def remove(self, parent: Sensor, child: Sensor) -> None:
        """Remove a dependency between parent and child.

        Parameters
        ----------
        parent : katcp.Sensor
        child : katcp.Sensor
        """
        self.remove_links(parent, (child,))
        for sensor in (parent, child):
            if sensor not in self:
                self._parent_to_not_ok.pop(sensor, None)

    def recalculate(self, parent: Sensor, updates: Iterable[Sensor]) -> None:
        """Re-calculate the value of parent sensor: the boolean AND of its children."""
        not_ok = self._parent_to_not_ok.setdefault(parent, set())
        children = self._parent_to_children.get(parent, ())
        for sensor in updates:
            if sensor not in children or sensor.value():
                not_ok.discard(sensor)
            else:
                not_ok.add(sensor)
        parent.set_value(not not_ok)


class AggregateSensorTree(GenericSensorTree):
    """A collection of aggregate sensors.

    Each aggregate (parent) sensor has a rule ``rule_function(parent, children)`` that
    sets its value; the rule runs whenever one of the children changes.

    Examples
    --------
    >>> from katcp import Sensor
    >>> tree = AggregateSensorTree()
    >>> def add_rule(parent, children):
    ...     parent.set_value(sum(child.value() for child in children))
    >>> sensor1 = Sensor(Sensor.INTEGER, "sensor1", "First sensor", "", [-1000, 1000])
    >>> sensor2 = Sensor(Sensor.INTEGER, "sensor2", "Second sensor", "", [-1000, 1000])
    >>> agg = Sensor(Sensor.INTEGER, "sum", "The total", "", [-2000, 2000])
    >>> tree.add(agg, add_rule, (sensor1, sensor2))
    >>> sensor1.set_value(1)
    >>> agg.value()
    1
    """

    def __init__(self) -> None:
        super().__init__()
        self._aggregates: Dict[Sensor, Tuple[_Rule, Any]] = {}
        # parent -> (rule_function, names still missing, sensors found so far)
        self._incomplete_aggregates: Dict[Sensor, Tuple[_Rule, Set[str], Set[Sensor]]] = {}
        self._registered_sensors: Dict[str, Sensor] = {}

    def _check_no_rule(self, parent: Sensor) -> None:
        if parent in self._aggregates or parent in self._incomplete_aggregates:
            raise ValueError("Sensor %r already has an aggregate rule." % (parent.name,))

    @_one_at_a_time
    def add(self, parent: Sensor, rule_function: _Rule, children: Iterable[Sensor]) -> None:
        """Create an aggregation rule.

        Parameters
        ----------
        parent : katcp.Sensor
            The aggregate sensor.
        rule_function : callable
            ``rule_function(parent, children)`` updates the parent sensor value.
        children : sequence of katcp.Sensor
            The sensors the aggregate sensor depends on.

        Raises
        ------
        ValueError
            If the parent already has a rule.
        TypeError
            If `rule_function` is an ``async def`` function (its coroutines would never
            run).
        """
        self._check_no_rule(parent)
        self._aggregates[parent] = (plain_callback(rule_function, "rule_function"), children)
        self.add_links(parent, children)

    @_one_at_a_time
    def add_delayed(self, parent: Sensor, rule_function: _Rule,
                    child_names: Iterable[str]) -> None:
        """Create an aggregation rule before child sensors are present.

        As :meth:`add`, with the names of the children (`child_names`) instead of the
        sensors: the rule becomes active once every named child has been passed to
        :meth:`register_sensor`.
        """
        self._check_no_rule(parent)
        plain_callback(rule_function, "rule_function")
        missing = {name for name in child_names if name not in self._registered_sensors}
        found = {self._registered_sensors[name] for name in child_names
                 if name in self._registered_sensors}
        if missing:
            self._incomplete_aggregates[parent] = (rule_function, missing, found)
        else:
            self.add(parent, rule_function, found)

    @_one_at_a_time
    def register_sensor(self, child: Sensor) -> None:
        """Register a sensor required by an aggregate sensor registered with add_delayed.

        Parameters
        ----------
        child : katcp.Sensor
            A child sensor required by one or more delayed aggregate sensors.

        Raises
        ------
        ValueError
            If a sensor of that name is already registered.
        """
        name = child.name
        if name in self._registered_sensors:
            raise ValueError("Sensor %r already registered with aggregate tree." % (name,))
        self._registered_sensors[name] = child
        complete = []
        for parent, (rule_function, missing, found) in list(self._incomplete_aggregates.items()):
            if name in missing:
                missing.discard(name)
                found.add(child)
                if not missing:
                    del self._incomplete_aggregates[parent]
                    complete.append((parent, rule_function, found))
        _for_each(complete, lambda aggregate: self.add(*aggregate))

    @_one_at_a_time
    def deregister_sensor(self, child: Sensor) -> None:
        """Deregister a sensor previously passed to :meth:`register_sensor`.

        Every aggregate depending on the sensor is recalculated one last time from the
        children it still has, then waits (unlinked) until a sensor of that name is
        registered again, as after :meth:`add_delayed`.

        Parameters
        ----------
        child : katcp.Sensor

        Raises
        ------
        ValueError
            If the sensor is not registered.
        """
        name = child.name
        if self._registered_sensors.get(name) is not child:
            raise ValueError("Sensor %r not registered with aggregate tree." % (name,))
        del self._registered_sensors[name]
        for _rule, missing, found in self._incomplete_aggregates.values():
            if child in found:
                found.discard(child)
                missing.add(name)

        def wait_again(parent: Sensor) -> None:
            rule_function, children = self._aggregates[parent]
            remaining = set(children) - {child}
            # remove_links() recalculates with the rule's children: those left.
            self._aggregates[parent] = (rule_function, remaining)
            try:
                self.remove_links(parent, children)
            finally:
                # Also when the rule raised: the links are gone, and the aggregate
                # waits for the sensor as the others do.
                del self._aggregates[parent]
                self._incomplete_aggregates[parent] = (rule_function, {name}, remaining)
        _for_each([parent for parent, (_rule, children) in self._aggregates.items()
                   if child in children], wait_again)

    @_one_at_a_time
    def remove(self, parent: Sensor) -> None:
        """Remove an aggregation rule.

        Parameters
        ----------
        parent : katcp.Sensor
            The aggregate sensor.

        Raises
        ------
        ValueError
            If the parent has no rule.
        """
        if parent in self._incomplete_aggregates:
            del self._incomplete_aggregates[parent]
            return
        self.fetch(parent)  # a ValueError if it has no rule
        # Unlink first: remove_links recalculates the parent with its rule one last time.
        try:
            self.remove_links(parent, self.children(parent))
        finally:
            # Also when the rule raised: the links are gone, so the rule goes too.
            del self._aggregates[parent]

    def fetch(self, parent: Sensor) -> Tuple[_Rule, Any]:
        """Retrieve an aggregation rule.

        Parameters
        ----------
        parent : katcp.Sensor
            The aggregate sensor.

        Returns
        -------
        rule_function : callable
        children : sequence of katcp.Sensor
        """
        if parent not in self._aggregates:
            raise ValueError("Sensor %r has no aggregate rule." % (parent.name,))
        return self._aggregates[parent]

    def recalculate(self, parent: Sensor, updates: Iterable[Sensor]) -> None:
        """Re-calculate the value of parent sensor with its aggregation rule.

        The rule sees all the children, so `updates` is not used.
        """
        rule_function, children = self._aggregates[parent]
        rule_function(parent, children)
