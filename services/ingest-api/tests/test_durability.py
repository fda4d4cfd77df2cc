"""Where acks=all is weaker than documented: the pure rule (the cluster side runs against a
real broker in tests/ingest/test_durability.py)."""

from ingest_api.durability import Shortfall, TopicDurability, shortfalls


def settings_of(found: list[Shortfall]) -> list[tuple[str, int, int]]:
    return [(s.setting, s.actual, s.required) for s in found]


def test_the_documented_minimum_passes() -> None:
    assert shortfalls(TopicDurability("t", 3, 2), 3, 2) == []
    assert shortfalls(TopicDurability("t", 5, 3), 3, 2) == []


def test_one_broker_falls_short_on_both_settings() -> None:
    found = shortfalls(TopicDurability("t", 1, 1), 3, 2)
    assert settings_of(found) == [("replication.factor", 1, 3), ("min.insync.replicas", 1, 2)]
    assert "losing 1 broker(s)" in found[0].message()


def test_three_replicas_with_one_in_sync_required_is_still_weak() -> None:
    found = shortfalls(TopicDurability("t", 3, 1), 3, 2)
    assert settings_of(found) == [("min.insync.replicas", 1, 2)]


def test_more_in_sync_replicas_than_replicas_refuses_every_send() -> None:
    found = shortfalls(TopicDurability("t", 2, 3), 2, 2)
    assert settings_of(found) == [("min.insync.replicas", 3, 2)]
    assert "every acks=all send is refused" in found[0].message()
