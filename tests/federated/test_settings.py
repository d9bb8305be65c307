"""The ``federated`` config section, the federated presets and the z = sigma * C / S mapping."""

from __future__ import annotations

import pytest

from disparate.config import (
    ConfigError,
    apply_overrides,
    config_hash,
    from_dict,
    load_experiment,
    to_dict,
)
from disparate.federated.dpfedavg import DPFedAvgSettings
from disparate.federated.settings import FederatedConfig
from disparate.federated.simulation import variant_configs


def error(func, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        func(*args, **kwargs)
    return str(info.value)


def test_paper_preset_is_section_4_4() -> None:
    cfg = load_experiment("reddit-fl")
    opts = cfg.data.options
    assert (cfg.data.dataset, opts["min_posts"], opts["max_posts"]) == ("reddit", 150, 500)
    assert (opts["vocab_size"], opts["seq_len"]) == (50000, 64)
    assert cfg.model.options["hidden_size"] == cfg.model.options["embedding_dim"] == 200
    assert cfg.model.options["tie_weights"] is True and cfg.model.options["dropout"] == 0.2
    t = cfg.training
    assert (t.optimizer, t.lr, t.batch_size, t.epochs) == ("sgd", 20.0, 20, 2)
    fed = cfg.federated
    assert (fed.rounds, fed.participants_per_round, fed.server_lr) == (2000, 100, 1.0)
    assert fed.clip_mode == "update"
    assert (cfg.privacy.max_grad_norm, cfg.privacy.noise_multiplier) == (10.0, 0.01)
    s8 = load_experiment("reddit-fl-s8")
    assert (s8.privacy.max_grad_norm, s8.privacy.noise_multiplier, s8.federated.rounds) == (
        8.0, 0.0125, 3000)


@pytest.mark.parametrize("name,sigma", [("reddit-fl", 0.001), ("reddit-fl-s8", 0.001),
                                        ("reddit-fl-small", 0.0003)])
def test_sigma_on_the_average_is_the_papers(name: str, sigma: float) -> None:
    """sigma = z * S / C: the paper's 0.001; the small preset scales S to 3 (and 2.4) and
    keeps the paper's noise relative to S / C (z / C), so sigma = 0.0003."""
    cfg = load_experiment(name)
    for variant in [cfg, *variant_configs(cfg).values()] if cfg.federated.variants else [cfg]:
        if variant.privacy.mode != "dp":
            continue
        settings = DPFedAvgSettings.from_config(variant, 80_000)
        assert settings.noise_std == pytest.approx(sigma)
        assert settings.noise_multiplier == pytest.approx(
            sigma * variant.federated.participants_per_round / variant.privacy.max_grad_norm)


def test_paper_variants() -> None:
    variants = variant_configs(load_experiment("reddit-fl"))
    assert list(variants) == ["non-private", "dp-S10", "dp-S8"]
    np_cfg = variants["non-private"]
    assert np_cfg.privacy.mode == "non-private" and np_cfg.federated.rounds == 1000
    assert variants["dp-S8"].federated.rounds == 3000
    assert all(not v.federated.variants for v in variants.values())
    # identical local training and data in every variant
    assert len({(v.data, v.model, v.training) for v in variants.values()}) == 1
    # command-line overrides win over a variant's own
    short = variant_configs(load_experiment("reddit-fl"), ["federated.rounds=6"])
    assert {v.federated.rounds for v in short.values()} == {6}
    assert short["dp-S8"].privacy.max_grad_norm == 8.0


def test_round_trip_and_hash() -> None:
    cfg = load_experiment("reddit-fl-small")
    data = to_dict(cfg)
    assert from_dict(data) == cfg
    assert isinstance(cfg.federated, FederatedConfig)
    again = apply_overrides(cfg, ["federated.rounds=7"])
    assert again.federated.rounds == 7 and config_hash(again) != config_hash(cfg)


def test_non_federated_configs_are_unchanged() -> None:
    cfg = load_experiment("mnist-underrep")
    assert cfg.federated is None
    assert "federated" not in to_dict(cfg)  # so its config_hash did not change
    assert from_dict(to_dict(cfg)) == cfg


def test_validation_messages() -> None:
    base = to_dict(load_experiment("reddit-fl-small"))

    def with_fed(**changes):
        data = {**base, "federated": {**base["federated"], **changes}}
        return from_dict(data)

    assert "federated.clip_mode='each'" in error(with_fed, clip_mode="each")
    assert "federated.rounds=0: expected >= 1" in error(with_fed, rounds=0)
    assert "strictly increasing" in error(with_fed, vocab_buckets=[0, 100, 50])
    assert "federated.server_lr" in error(with_fed, server_lr=0)
    assert "KEY=VALUE" in error(with_fed, variants={"x": ["nonsense"]})
    text = error(load_experiment, "reddit-fl-small", ["federated.roundz=3"])
    assert "unknown key 'federated.roundz'" in text and "rounds" in text


def test_bucket_names() -> None:
    fed = FederatedConfig(rounds=1, participants_per_round=1, vocab_buckets=(0, 100, 500))
    assert fed.bucket_names() == ["0-99", "100-499", "500+"]


def test_settings_refuse_inconsistent_configs() -> None:
    cfg = load_experiment("reddit-fl-small")
    with pytest.raises(ValueError, match="participants_per_round=10"):
        DPFedAvgSettings.from_config(cfg, 5)
    wor = apply_overrides(cfg, ["privacy.sampling=shuffle",
                                "privacy.shuffle_accounting=without_replacement"])
    with pytest.raises(ValueError, match="2S"):
        DPFedAvgSettings.from_config(wor, 1000)
    uniform = DPFedAvgSettings.from_config(apply_overrides(cfg, [
        "privacy.sampling=shuffle", "privacy.shuffle_accounting=poisson"]), 1000)
    assert uniform.sampling == "uniform"
    np_settings = DPFedAvgSettings.from_config(variant_configs(cfg)["non-private"], 1000)
    assert (np_settings.clip_norm, np_settings.noise_std, np_settings.noise_multiplier) == (
        None, 0.0, None)
