"""The HLS writer's per-packet time arithmetic in integers (outputs/hls/writer.py).

The writer used to compute a packet's time and the step between two packets
as Python Fractions (`float(dts * packet.time_base)`); it now computes them
from the time base's numerator and denominator in integers. The property: on
any timestamps and any time base FFmpeg can express (an AVRational: 32-bit
numerator and denominator), the integer results equal the Fraction ones, to
the bit for the seconds and exactly for the jump decision.
"""

from __future__ import annotations

from fractions import Fraction

from hypothesis import example, given
from hypothesis import strategies as st

from camstream_worker.outputs.hls import writer
from camstream_worker.outputs.hls.writer import (
    JUMP_AHEAD_SECONDS,
    JUMP_BACK_SECONDS,
    ticks_to_seconds,
)

# AVRational is two C ints; a time base is positive.
time_bases = st.builds(
    Fraction, st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1)
) | st.sampled_from([Fraction(1, 1000), Fraction(1, 90000), Fraction(1, 48000), Fraction(1, 25)])
# int64 timestamps, as AVPacket's.
timestamps = st.integers(-(2**63), 2**63 - 1)


def fraction_jumped(step: int, base: Fraction) -> bool:
    """The writer's former rule, verbatim: a float of a Fraction."""
    seconds = float(step * base)
    return seconds < -JUMP_BACK_SECONDS or seconds > JUMP_AHEAD_SECONDS


def exact_jumped(step: int, base: Fraction) -> bool:
    """The same rule with no rounding at all."""
    seconds = step * base
    return seconds < Fraction(-JUMP_BACK_SECONDS) or seconds > Fraction(JUMP_AHEAD_SECONDS)


@given(timestamps, time_bases)
@example(2**63 - 1, Fraction(1, 1000))
@example(-(2**63), Fraction(2**31 - 1, 1))
@example(1, Fraction(1, 3))
def test_seconds_equal_the_fraction_ones_bit_for_bit(dts: int, base: Fraction) -> None:
    seconds = ticks_to_seconds(dts, base.numerator, base.denominator)
    assert seconds == float(dts * base)
    assert seconds.hex() == float(dts * base).hex()  # -0.0 and 0.0 alike, NaN impossible


@given(timestamps, timestamps, time_bases)
def test_jump_decision_equals_the_fraction_one(dts: int, previous: int, base: Fraction) -> None:
    step = dts - previous
    jumped = writer._timeline_jumped(step, base.numerator, base.denominator)
    assert jumped == exact_jumped(step, base)
    assert jumped == fraction_jumped(step, base)


@given(time_bases, st.integers(-3, 3))
def test_jump_decision_at_its_limits(base: Fraction, nudge: int) -> None:
    """Steps within a few ticks of each limit, where rounding would show."""
    for limit in (Fraction(-JUMP_BACK_SECONDS), Fraction(JUMP_AHEAD_SECONDS)):
        step = int(limit / base) + nudge
        jumped = writer._timeline_jumped(step, base.numerator, base.denominator)
        assert jumped == exact_jumped(step, base)
        assert jumped == fraction_jumped(step, base)


def test_jump_limits_are_the_documented_ones() -> None:
    """The rule is a real one: a step just past a limit jumps, one at it does not."""
    ms = (1, 1000)
    assert not writer._timeline_jumped(-1000, *ms)  # back exactly 1 s: reordering
    assert writer._timeline_jumped(-1001, *ms)
    assert not writer._timeline_jumped(10_000, *ms)  # ahead exactly 10 s
    assert writer._timeline_jumped(10_001, *ms)
    assert not writer._timeline_jumped(0, 1, 90000)
