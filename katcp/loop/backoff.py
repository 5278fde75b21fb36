"""Randomised exponential delays for retrying an action that keeps failing."""

import random

__all__ = ["ExponentialRandomBackoff"]


class ExponentialRandomBackoff:
    """Randomised exponential delays for retrying an action that keeps failing.

    Read :attr:`delay` for the wait before the next attempt; call :meth:`failed` after a
    failed attempt and :meth:`success` after a successful one.

    Parameters
    ----------
    delay_initial : float
        Delay (seconds) after a success and before the first retry.
    delay_max : float
        Upper bound of the delay.
    exp_fac : float
        Increase timeout by this factor for each consecutive failure.
    randomicity : float
        Fraction (0 to 1) of each delay that is random: a delay with nominal value
        `d` lies in [(1 - randomicity) * d, d], so that many clients retrying the
        same server spread out. The nominal delay starts at `delay_initial` and is
        multiplied by `exp_fac` on each failure, up to `delay_max`; a zero one becomes
        :attr:`delay_floor` instead.
    """

    delay: float
    """The delay (seconds) to wait before the next attempt."""

    delay_floor: float = 0.01
    """The nominal delay (seconds) after a failure where it was zero: a zero (or
    negative) `delay_initial` retries at once, then backs off from here; multiplied, zero
    would stay zero and the retries would be a busy loop. A positive delay doubles as
    in 0.9.3, however small."""

    _nominal: float

    def __init__(self, delay_initial: float = 1.0, delay_max: float = 90.0,
                 exp_fac: float = 3.0, randomicity: float = 0.95) -> None:
        self.delay_initial = delay_initial
        self.delay_max = delay_max
        self.exp_fac = exp_fac
        self.randomicity = randomicity
        self.success()

    def _randomise(self) -> None:
        # One random draw scales the whole nominal delay, so that a fixed draw
        # gives delays that grow by exactly exp_fac.
        randomicity = self.randomicity
        self.delay = self._nominal * (1.0 - randomicity + randomicity * random.random())

    def failed(self) -> None:
        """Call whenever an action has failed, grows delay exponentially.

        After calling failed(), the delay property contains the next delay.
        """
        grown = self._nominal * self.exp_fac if self._nominal > 0 else self.delay_floor
        self._nominal = min(grown, self.delay_max)
        self._randomise()

    def success(self) -> None:
        """Call whenever an action has succeeded, resets delay to minimum."""
        self._nominal = max(self.delay_initial, 0.0)
        self._randomise()
