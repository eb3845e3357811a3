"""service.admission's preparation costs: decoding and face detection counted by megapixels.

The fit of preparation seconds to megapixels, and the refusals it makes at the door and
once an image's size is known, over a real batcher (``test_admission.scenario``).
"""

from __future__ import annotations

import pytest
from test_admission import Gated, scenario

from service.admission import Admission, LinearCost, PreparationCost
from service.errors import QueueWaitTooLongError


def test_the_preparation_cost_is_fitted_to_megapixels_with_and_without_detection() -> None:
    costs = PreparationCost()
    assert costs.estimate(10.0, detect=True) == 0.0  # unknown: nothing counted
    for megapixels in (0.1, 1.0, 4.0, 0.1, 1.0, 4.0):
        costs.observe(megapixels, detect=False, seconds=0.002 + 0.05 * megapixels)
    assert costs.estimate(40.0, detect=False) == pytest.approx(0.002 + 0.05 * 40.0, rel=1e-6)
    assert costs.estimate(40.0, detect=True) == 0.0  # the other kind has its own fit
    one_size = LinearCost()
    one_size.observe(0.5, 0.1)  # one size seen: all of it per megapixel, never cheaper
    assert one_size.estimate(5.0) == pytest.approx(1.0)


def test_preparation_ahead_refuses_at_the_door_and_once_the_size_is_known() -> None:
    async def test(admission: Admission[int, int], infer: Gated) -> None:
        admission.costs.observe(1.0, detect=True, seconds=0.2)
        admission.costs.observe(10.0, detect=True, seconds=2.0)
        big = admission.enter()  # idle: taken, however big
        admission.start_preparing(big, megapixels=40.0, detect=True)  # about 8 s, 2 threads
        assert admission.preparation_ahead() == pytest.approx(4.0, rel=1e-6)
        with pytest.raises(QueueWaitTooLongError, match=r"4\.000 s of their decoding"):
            admission.enter()
        admission.finish_preparing(big, seconds=6.0)  # measured: refits, no longer ahead
        assert admission.preparation_ahead() == 0.0
        small = admission.enter()
        admission.start_preparing(small, megapixels=0.1, detect=True)  # a cheap one ahead
        other = admission.enter()  # 0.01 s ahead: fine
        second_big = admission.enter()
        admission.start_preparing(second_big, megapixels=40.0, detect=True)
        with pytest.raises(QueueWaitTooLongError, match="once its image's size was known"):
            admission.start_preparing(other, megapixels=0.1, detect=True)
        for ticket in (big, small, other, second_big):
            admission.leave(ticket)
        assert admission.preparation_s == 0.0 and admission.pending == 0

    scenario(test, max_queue_wait_s=1.0, preparation_threads=2)
