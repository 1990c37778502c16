"""Entropy-Adv shaping (uec_recipe/algo/entropy_adv.py) on hand-made tensors, and its TransferQueue glue."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict

import uec_recipe.baselines as baselines
from uec_recipe.algo.entropy_adv import capped_fraction, shape_advantages, shaping_term
from uec_recipe.baselines import apply_entropy_advantage, check_baselines, entropy_adv_config

# alpha = 0.4, kappa = 2: a token's bonus is min(0.4 H, |A| / 2)
ADV = torch.tensor([[1.0, 1.0, -1.0, -1.0, 0.0]])
ENT = torch.tensor([[0.5, 3.0, 0.5, 3.0, 2.0]])
MASK = torch.ones_like(ADV)


def test_hand_computed_values():
    shaped, mean_term = shape_advantages(ADV, ENT, MASK, alpha=0.4, kappa=2.0)
    # 0.4*0.5 = 0.2 below the cap 0.5; 0.4*3 = 1.2 capped at 0.5; A = 0 caps the bonus at 0
    assert torch.allclose(shaped, torch.tensor([[1.2, 1.5, -0.8, -0.5, 0.0]]))
    assert mean_term == pytest.approx((0.2 + 0.5 + 0.2 + 0.5 + 0.0) / 5)
    # of the 4 tokens with A != 0, the two high-entropy ones are capped
    assert capped_fraction(ADV, ENT, MASK, alpha=0.4, kappa=2.0) == pytest.approx(0.5)


def test_sign_never_flips_and_bonus_is_capped():
    gen = torch.Generator().manual_seed(0)
    adv = torch.randn(64, 32, generator=gen) * 3
    adv[adv.abs() < 0.5] = 0.0  # zero advantages, as in all-correct or all-wrong GRPO groups
    entropy = 40 + torch.rand(64, 32, generator=gen) * 10  # alpha * H >= 16, far above any cap
    mask = torch.ones_like(adv)
    for kappa in (1.01, 2.0, 10.0):
        shaped, _ = shape_advantages(adv, entropy, mask, alpha=0.4, kappa=kappa)
        assert torch.equal(torch.sign(shaped), torch.sign(adv))
        bonus = shaped - adv
        assert (bonus >= 0).all()
        assert (bonus <= adv.abs() / kappa + 1e-6).all()
    # with this much entropy every token with A != 0 sits at the cap
    assert capped_fraction(adv, entropy, mask, alpha=0.4, kappa=2.0) == 1.0


def test_zero_entropy_leaves_advantages_unchanged():
    adv = torch.tensor([[2.0, -0.3, 0.0, 1.1]])
    shaped, mean_term = shape_advantages(adv, torch.zeros_like(adv), torch.ones_like(adv), alpha=0.4, kappa=2.0)
    assert torch.equal(shaped, adv)
    assert mean_term == 0.0
    # float noise below zero must not push the bonus negative
    shaped, _ = shape_advantages(adv, torch.full_like(adv, -1e-7), torch.ones_like(adv), alpha=0.4, kappa=2.0)
    assert torch.equal(shaped, adv)


def test_masked_tokens_untouched_and_excluded_from_the_mean():
    adv = torch.tensor([[1.0, 1.0, 1.0], [-2.0, -2.0, 5.0]])
    entropy = torch.tensor([[1.0, 1.0, 9.0], [1.0, 1.0, 9.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    shaped, mean_term = shape_advantages(adv, entropy, mask, alpha=0.4, kappa=2.0)
    assert torch.equal(shaped[:, 2], adv[:, 2])
    assert torch.allclose(shaped[:, :2], torch.tensor([[1.4, 1.4], [-1.6, -1.6]]))
    assert mean_term == pytest.approx(0.4)
    assert shape_advantages(adv, entropy, torch.zeros_like(mask), alpha=0.4, kappa=2.0)[1] == 0.0


def test_entropy_is_detached():
    entropy = ENT.clone().requires_grad_(True)
    shaped, _ = shape_advantages(ADV, entropy, MASK, alpha=0.4, kappa=2.0)
    assert not shaped.requires_grad


@pytest.mark.parametrize("alpha,kappa", [(0.4, 1.0), (0.4, 0.5), (-0.1, 2.0)])
def test_bad_hyperparameters_raise(alpha, kappa):
    with pytest.raises(ValueError, match="entropy_adv"):
        shaping_term(ADV, ENT, MASK, alpha=alpha, kappa=kappa)


# ---- the trainer glue on a stand-in TransferQueue ----------------------------------------------------------------


def jagged(rows):
    return torch.nested.as_nested_tensor([torch.tensor(r, dtype=torch.float32) for r in rows], layout=torch.jagged)


class FakeTQ:
    """Stores jagged response fields per key, as verl's trainer keeps them in TransferQueue."""

    def __init__(self, rows: dict[str, dict[str, list[float]]]):
        self.rows = rows

    def kv_batch_get(self, keys, partition_id, select_fields):
        assert partition_id == "train"
        return TensorDict({f: jagged([self.rows[k][f] for k in keys]) for f in select_fields}, batch_size=len(keys))

    def kv_batch_put(self, keys, partition_id, fields):
        for i, key in enumerate(keys):
            for name in fields.keys():
                self.rows[key][name] = fields[name][i].tolist()
        return ("written", tuple(keys))


def test_apply_entropy_advantage_round_trips_through_transfer_queue(monkeypatch):
    from transfer_queue import KVBatchMeta

    # two responses of different lengths; the second has a masked (e.g. tool) token
    store = FakeTQ(
        {
            "a_0": {"advantages": [1.0, 1.0, 1.0], "entropy": [0.5, 3.0, 0.0], "response_mask": [1, 1, 1]},
            "a_1": {"advantages": [-1.0, -1.0], "entropy": [3.0, 3.0], "response_mask": [1, 0]},
        }
    )
    monkeypatch.setattr(baselines, "tq", store)
    batch = KVBatchMeta(partition_id="train", keys=["a_0", "a_1"], tags=[{}, {}])
    config = OmegaConf.create({"entropy_adv": {"enable": True, "alpha": 0.4, "kappa": 2.0}})
    metrics = {}
    assert apply_entropy_advantage(batch, config, metrics) == ("written", ("a_0", "a_1"))
    assert store.rows["a_0"]["advantages"] == pytest.approx([1.2, 1.5, 1.0])
    assert store.rows["a_1"]["advantages"] == pytest.approx([-0.5, -1.0])  # lengths kept, masked token untouched
    assert metrics["entropy_adv/mean_shaping_term"] == pytest.approx((0.2 + 0.5 + 0.0 + 0.5) / 4)
    assert metrics["entropy_adv/capped_fraction"] == pytest.approx(2 / 4)


def full_config(entropy_adv=None, uec_enable=False, reward=None):
    return OmegaConf.create(
        {
            "algorithm": {"entropy_adv": entropy_adv or {"enable": False}},
            "uec": {"enable": uec_enable},
            "reward": reward or {"reward_manager": {"name": "naive"}},
        }
    )


def test_config_checks():
    settings = entropy_adv_config(full_config({"enable": True, "alpha": 0.4, "kappa": 2.0}))
    assert (settings.enable, settings.alpha, settings.kappa) == (True, 0.4, 2.0)
    assert entropy_adv_config(OmegaConf.create({"algorithm": {}})).enable is False
    with pytest.raises(ValueError, match="kappa=1"):
        entropy_adv_config(full_config({"enable": True, "kappa": 1}))
    with pytest.raises(ValueError, match="unknown key"):
        entropy_adv_config(full_config({"enable": True, "beta": 1}))
    with pytest.raises(ValueError, match="uec.enable=true"):
        entropy_adv_config(full_config({"enable": True}, uec_enable=True))


def test_dapo_overlong_buffer_must_fit_the_response_length():
    def dapo(buffer_len, max_len):
        return full_config(
            reward={
                "reward_manager": {"name": "dapo"},
                "reward_kwargs": {"overlong_buffer_cfg": {"enable": True, "len": buffer_len}, "max_resp_len": max_len},
            }
        )

    check_baselines(dapo(410, 2048))
    check_baselines(dapo(4, 16))
    with pytest.raises(ValueError, match="overlong_buffer_cfg.len=410"):
        check_baselines(dapo(410, 16))
