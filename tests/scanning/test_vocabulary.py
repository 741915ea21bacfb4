"""The probes' vocabularies are the one source: the models, exports and docs follow them."""

from __future__ import annotations

from scanning import models
from scanning.probes import base


def test_it_gives_the_models_exactly_the_probe_verdicts() -> None:
    assert {v.value for v in models.Verdict} == {v.value for v in base.Verdict}


def test_it_gives_the_models_the_probe_evidence_levels() -> None:
    assert {v.value for v in models.EvidenceLevel} == {v.value for v in base.EvidenceLevel}


def test_it_adds_only_unknown_to_the_probe_protocols() -> None:
    assert {v.value for v in models.Protocol} - {v.value for v in base.Protocol} == {"unknown"}
    assert {v.value for v in base.Protocol} <= {v.value for v in models.Protocol}


def test_it_labels_every_choice_in_words() -> None:
    for choices in (models.Verdict, models.EvidenceLevel, models.Protocol):
        for member in choices:
            assert member.label and member.label != member.value, member


def test_it_orders_verdicts_strongest_first() -> None:
    order = [str(v) for v in base.VERDICTS_STRONGEST_FIRST]
    assert order[0] == "confirmed-open"
    assert order.index("likely-open") < order.index("likely-open-weak") < order.index("closed")
    assert sorted(order) == sorted(v.value for v in base.Verdict)


def test_it_brackets_ipv6_in_host_port() -> None:
    assert base.host_port("2001:db8::1", 25) == "[2001:db8::1]:25"
    assert base.host_port("192.0.2.1", 3128) == "192.0.2.1:3128"
