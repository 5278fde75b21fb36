"""The state coroutine of an inspecting client: connect, sync, resync."""

from typing import Any, Callable

from katcp.core import AttrDict, Message, until_any
from katcp.inspecting_client.inspection import _Inspector
from katcp.inspecting_client.parts import (_CONNECTED, _DISCONNECTED, _SYNCED,
                                           InspectingClientStateType, SyncError,
                                           _PendingChanges)
from katcp.inspecting_client.states import _StateReport
from katcp.loop.backoff import ExponentialRandomBackoff
from katcp.loop.futures import expire_after, give_up


class _StateCoroutine:
    """Keeps a client's model in step with its device, one connection after another.

    On each connection it inspects everything, then whatever ``#interface-changed``
    informs name, retrying a failed inspection with a backoff, and reports each step as
    a state. It is woken by connection changes, interface changes and stop().

    Parameters
    ----------
    client : InspectingClientAsync
        Whose connection it follows; its documented resync settings
        (``resync_delay`` and the like) are read from it.
    states : _StateReport
        Where the states go.
    inspector : _Inspector
        What inspects the device.
    """

    def __init__(self, client: Any, states: _StateReport, inspector: _Inspector) -> None:
        self._client = client
        self._states = states
        self._inspector = inspector
        self.running = False
        # Counts runs: a run whose client was stopped and connected again meanwhile (its
        # user callback still running, say) is over, and the new one waits for its end.
        self._run_count = 0
        self._last_run_over: Any = None
        self._wakeup: Any = None
        # Counts connections, so a sync can tell that its connection was replaced.
        self.connection_count = 0
        self._pending = _PendingChanges()
        # Changes found by inspections that failed half-way (even on an earlier
        # connection), not yet reported through a data-synced state.
        self._unreported_changes = AttrDict()

    def wake(self) -> None:
        """Wake the coroutine, to look at the connection and at what is pending."""
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def _until_woken(self) -> Any:
        """Future resolving on the next connection change, interface change or stop."""
        if self._wakeup is None or self._wakeup.done():
            self._wakeup = self._client._create_future()
        return self._wakeup

    def on_connection_state(self, connected: bool) -> None:
        """Note that the KATCP client (dis)connected."""
        if connected:
            # A new connection needs a full resync even if the state loop never
            # saw the old one drop.
            self.connection_count += 1
        self.wake()

    def on_interface_changed(self, msg: Message) -> None:
        """Note what the device says has changed (see the KATCP spec) and resync."""
        self._pending.add_from_inform(msg)
        self.wake()

    def _resync_backoff(self) -> ExponentialRandomBackoff:
        client = self._client
        if client.resync_delay is None:
            client.resync_delay = ExponentialRandomBackoff(
                delay_initial=client.initial_resync_timeout,
                delay_max=client.max_resync_timeout)
        return client.resync_delay

    async def run(self) -> None:
        """Follow the connection until stopped (or the KATCP client stops on its own)."""
        self._run_count += 1
        run = self._run_count
        previous, over = self._last_run_over, self._client._create_future()
        self._last_run_over = over

        def live() -> bool:
            return self.running and self._run_count == run

        self._resync_backoff()
        report = self._states.report
        katcp_client = self._client.katcp_client
        try:
            if previous is not None:
                # The run of an earlier connect() ends, with its final state, first.
                await previous
            while live():
                if katcp_client.is_connected():
                    await report(_CONNECTED)
                    await self._sync_connection(live)
                    if not live():
                        break
                await report(_DISCONNECTED)
                stopped = katcp_client.until_stopped()
                try:
                    while live() and not katcp_client.is_connected() and not stopped.done():
                        await until_any(self._until_woken(), stopped)
                finally:
                    client_stopped = stopped.done() and not stopped.cancelled()
                    give_up(stopped)
                if client_stopped and not katcp_client.is_connected() and live():
                    # The KATCP client stopped on its own (no auto_reconnect), and so
                    # does the inspection: until_stopped() resolves, connect() may
                    # start both again.
                    self.running = False
        except Exception:
            self._client._logger.exception("State loop of inspecting client for %s failed",
                                           katcp_client.bind_address_string)
        finally:
            try:
                await report(_DISCONNECTED)
            finally:
                over.set_result(None)

    async def _sync_connection(self, live: Callable[[], bool]) -> None:
        """Keep the model in sync for as long as the current connection lasts (and the
        run is `live`)."""
        katcp_client = self._client.katcp_client
        report = self._states.report
        connection = self.connection_count

        def same_connection() -> bool:
            return (live() and katcp_client.is_connected()
                    and self.connection_count == connection)

        while same_connection() and katcp_client.protocol_flags is None:
            protocol = katcp_client.until_protocol()
            try:
                await until_any(protocol, self._until_woken())
            finally:
                # Each connection closed before its greeting left one, until a device
                # ever greeted.
                give_up(protocol)
        self._pending.add_all()
        model_changes = self._unreported_changes
        while same_connection():
            if self._pending:
                pending, self._pending = self._pending, _PendingChanges()
                if self._states.state.synced:
                    await report(_CONNECTED)
                try:
                    await self._inspector.pending(pending, model_changes)
                except Exception as exc:
                    if same_connection():
                        await self._sync_failed(pending, exc)
                    if same_connection():
                        # Each retry is a new sync attempt, and says so.
                        await report(_CONNECTED)
                    continue
                self._unreported_changes = AttrDict()
                await report(InspectingClientStateType(
                    True, False, bool(model_changes), True), model_changes or None)
                model_changes = self._unreported_changes
            elif not self._states.state.synced:
                await report(_SYNCED)
                self._resync_backoff().success()
            else:
                await self._until_woken()

    async def _sync_failed(self, pending: _PendingChanges, exc: Exception) -> None:
        client = self._client
        if isinstance(exc, SyncError):
            client._logger.warning("Error syncing with device %s: %s",
                                   client.katcp_client.bind_address_string, exc)
        else:
            client._logger.exception("Unexpected error syncing with device %s",
                                     client.katcp_client.bind_address_string)
        # Retry what is left of the failed inspection along with whatever changed since.
        self._pending.update(pending)
        backoff = self._resync_backoff()
        delay = backoff.delay
        backoff.failed()
        # The retry's timer goes with its wait: a stop (or a wake) during a long backoff
        # leaves no timer and future behind, one per connect() of a failing device.
        retry = until_any(self._until_woken(), ioloop=client.ioloop)
        expire_after(retry, delay, None)
        await retry
