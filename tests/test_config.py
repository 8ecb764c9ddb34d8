"""Config files: every shipped config reads and builds its model; every mistake names the key and what it allows."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bayesmlm import ConfigError
from bayesmlm.app.config import build_model, load_config, load_data, parse_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BASE = {"data": "sleepstudy", "formula": "Reaction ~ Days + (Days | Subject)"}

FORMULAS = {
    "wvs7_m0": "tech ~ 1 + (1 | country)",
    "wvs7_m1": "tech ~ 1 + smu + (1 | country)",
    "wvs7_m2": "tech ~ 1 + smu + (1 + smu | country)",
    "sleepstudy": "Reaction ~ 1 + Days + (1 + Days | Subject)",
    "radon": "log_radon ~ 1 + floor + log_uranium + (1 + floor | county)",
    "hsb82": "mAch ~ 1 + meanses + sector + cses + cses:meanses + cses:sector + (1 + cses | school)",
    "ucb_admissions": "cbind(Admitted, Rejected) ~ 1 + Gender + (1 | Dept)",
}


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_shipped_config_builds_its_model(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.name == name and cfg.title
    model = build_model(cfg)
    assert model.formula == FORMULAS[name]
    assert cfg.fit["draws"] == 1000 and cfg.fit["chains"] == 4 and cfg.fit["method"] == "auto"


def test_configs_and_formulas_agree():
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == sorted(FORMULAS)


def test_to_dict_round_trips():
    cfg = load_config(CONFIGS / "hsb82.yaml")
    again = parse_config(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
    assert again.to_dict() == cfg.to_dict()
    assert again.level2 == {"1": "~ 1 + meanses + sector", "cses": "~ 1 + meanses + sector"}


def test_ucb_config_reads_the_bundled_counts_one_row_per_cell():
    cfg = load_config(CONFIGS / "ucb_admissions.yaml")
    wide = load_data(cfg)
    assert len(wide) == 12 and int(wide[["Admitted", "Rejected"]].to_numpy().sum()) == 4526
    assert wide.set_index(["Dept", "Gender"]).loc[("A", "Female"), "Admitted"] == 89


def test_subsample_is_seeded_and_sized():
    cfg = parse_config({"data": "wvs7_sim", "formula": "tech ~ 1 + (1 | country)"})
    a, b = load_data(cfg, subsample=3000, seed=4), load_data(cfg, subsample=3000, seed=4)
    assert len(a) == 3000 and a.equals(b)
    assert len(load_data(parse_config(BASE), subsample=10_000)) == 180  # no more rows than there are


@pytest.mark.parametrize("change, words", [
    ({"famly": "gaussian"}, ["Unknown key 'famly'", "Allowed: name, title", "family"]),
    ({"family": "gausian"}, ["'family'", "'gausian'", "gaussian, student, bernoulli, binomial, poisson, negbinomial, cumulative"]),
    ({"fit": {"draws": -5}}, ["'fit.draws'", "positive integer", "-5"]),
    ({"fit": {"drawz": 5}}, ["Unknown key 'fit.drawz'", "draws, tune, chains, seed, sampler, target_accept, method"]),
    ({"fit": {"sampler": "stan"}}, ["'fit.sampler'", "'stan'", "nutpie, pymc, numpyro, blackjax"]),
    ({"fit": {"method": "fast"}}, ["'fit.method'", "'fast'", "auto, full, collapsed"]),
    ({"fit": {"target_accept": 1.5}}, ["'fit.target_accept'", "between 0 and 1"]),
    ({"plots": {"which": ["bars"]}}, ["'plots.which'", "'bars'", "bar, slopes, forest, correlation, shrinkage"]),
    ({"plots": ["bar"]}, ["'plots'", "mapping", "which, term"]),
    ({"plots": {"wich": ["bar"]}}, ["Unknown key 'plots.wich'", "which, term"]),
    ({"level1": "Reaction ~ 1 + Days", "group": "Subject"}, ["either as 'formula'", "not both"]),
    ({"compare_frequentist": "yes"}, ["'compare_frequentist'", "true or false"]),
    ({"priors": {"sigma": 3}}, ["'priors'", "normal(0, 1)"]),
])
def test_bad_config_names_key_and_allowed_values(change, words):
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, **change}, source=Path("configs/x.yaml"))
    for w in words:
        assert w in str(err.value)
    assert "configs/x.yaml" in str(err.value)


def test_missing_data_and_model():
    with pytest.raises(ConfigError, match="Missing key 'data'"):
        parse_config({"formula": BASE["formula"]})
    with pytest.raises(ConfigError, match="none was given"):
        parse_config({"data": "sleepstudy"})
    with pytest.raises(ConfigError, match="Key 'group' .*missing"):
        parse_config({"data": "sleepstudy", "level1": "Reaction ~ 1 + Days"})


def test_data_that_is_neither_bundled_nor_a_file(tmp_path):
    cfg = parse_config({**BASE, "data": "no_such.csv"}, source=tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match=r"Key 'data'.*neither a bundled data set \(wvs7_sim, sleepstudy"):
        load_data(cfg)


def test_csv_path_is_relative_to_the_config(tmp_path):
    (tmp_path / "d.csv").write_text("y,g\n1,a\n2,a\n3,b\n4,b\n")
    path = tmp_path / "c.yaml"
    path.write_text("data: d.csv\nformula: y ~ 1 + (1 | g)\n")
    assert load_data(load_config(path))["y"].sum() == 10


def test_model_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"Key 'priors'.*sd_x"):
        build_model(parse_config({**BASE, "priors": {"sd_x": "half_normal(1)"}}))
    with pytest.raises(ConfigError, match=r"Key 'formula'.*Reactoin"):
        build_model(parse_config({**BASE, "formula": "Reactoin ~ Days + (Days | Subject)"}))


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="No config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
