"""Which artifacts `inferops gc` collects (the pure choice)."""

from inferops.reconcile.retention import Artifact, to_collect

HOUR = 3600.0
NOW = 100 * HOUR


def art(model: str, h: str, hours_ago: float, ns: str = "ml", committed: bool = True) -> Artifact:
    return Artifact(ns, model, h, f"s3://a/{ns}/{model}/{h}", NOW - hours_ago * HOUR, committed)


def test_keeps_the_last_n_revisions_and_always_the_served_and_current_ones():
    arts = [art("digits", f"h{i}", hours_ago=10 - i) for i in range(6)]  # h5 newest
    status = {"artifactUri": "s3://a/ml/digits/h0", "jobName": "digits-opt-h1"}  # serving the oldest (a re-optimization failing since)
    chosen = {a.hash for a in to_collect(arts, {("ml", "digits"): status}, keep=3, now=NOW, min_age_s=HOUR)}
    assert chosen == {"h2"}, "h3-h5 are the last three; h0 serves; h1 is what the spec names"


def test_a_deleted_models_artifacts_go_but_not_the_young_ones():
    arts = [art("gone", "a", 5), art("gone", "b", 0.1), art("digits", "c", 5)]
    chosen = [a.uri for a in to_collect(arts, {("ml", "digits"): {"artifactUri": "s3://a/ml/digits/c"}}, keep=1, now=NOW, min_age_s=HOUR)]
    assert chosen == ["s3://a/ml/gone/a"], "b was committed minutes ago: maybe a model being created"


def test_uncommitted_leftovers_of_a_live_model_are_collected_once_old():
    arts = [art("digits", "ok", 5), art("digits", "half", 5, committed=False)]
    chosen = [a.hash for a in to_collect(arts, {("ml", "digits"): {"artifactUri": "s3://a/ml/digits/ok"}}, keep=3, now=NOW, min_age_s=HOUR)]
    assert chosen == ["half"]
