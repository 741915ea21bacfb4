from __future__ import annotations

import pytest

from campaign.models import Case


@pytest.mark.django_db
def test_it_measures_a_sweep_that_claims_exactly_the_due_cases() -> None:
    from bench import schedule_bench

    result = schedule_bench.run(cases=300)
    assert (result["open_cases"], result["due"]) == (300, 30)
    assert result["sweep_idle_queries"] <= 3  # the select, inside its savepoint
    assert not Case.objects.exists()  # rolled back
