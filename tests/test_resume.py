"""A resume keeps its word: it may change how a search runs (its limits, workers and
the like), never what fitness means, and a store of an earlier version is refused with a
way forward."""

import pytest

from primer_search.search.config import ConfigError, config_to_dict, load_config, resume_overrides

# ---- a resume keeps its word ----------------------------------------------------------

@pytest.fixture()
def stored():
    return config_to_dict(load_config("tiny_cpu"))


@pytest.mark.parametrize("override, key", [
    ({"fitness": {"budget": {"steps": 200}}}, "fitness.budget.steps"),
    ({"fitness": {"model": {"d_model": 128}}}, "fitness.model.d_model"),
    ({"seeding": {"blocks": ["primer_ez"]}}, "seeding.blocks"),
    ({"evolution": {"tournament_size": 2}}, "evolution.tournament_size"),
    ({"seeding": {"heads": 8}}, "seeding.heads"),
    ({"hurdles": {"min_history": 1}}, "hurdles.min_history"),
])
def test_resume_refuses_changes_to_what_fitness_means(stored, override, key):
    with pytest.raises(ConfigError, match=f"a resume cannot change {key}") as e:
        resume_overrides(stored, override, "s.sqlite")
    assert "start a new search from this one's best" in str(e.value)
    assert "primer-search export s.sqlite ID --out DIR" in str(e.value)


def test_resume_merges_allowed_overrides_key_by_key(stored):
    merged = resume_overrides(stored, {"limits": {"max_candidates": 80},
                                       "pool": {"workers": 1}}, "s.sqlite")
    assert merged["limits"]["max_candidates"] == 80 and merged["pool"]["workers"] == 1
    assert merged["limits"]["max_hours"] == stored["limits"]["max_hours"]
    assert merged["fitness"] == stored["fitness"]
    # Restating a stored value is no change.
    same = resume_overrides(stored, {"fitness": {"budget": {"steps": 100}}}, "s.sqlite")
    assert same["fitness"] == stored["fitness"]


def test_a_store_of_the_first_version_is_refused_with_a_way_forward(stored):
    old = {**stored, "hurdle_quantile": 0.5}
    with pytest.raises(ConfigError, match="written by an earlier version") as e:
        resume_overrides(old, {}, "old.sqlite")
    assert "primer-search export old.sqlite ID --out DIR" in str(e.value)
